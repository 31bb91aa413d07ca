"""Confirming a disagreement against more draws of the tolerance model's probes: the
draws are the model's own streams or new ones, the widest of them allows at least what
each draw allows, a pair that passes never pays for them, and a planted bug still fails."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gradparity.adapters import get_adapter
from gradparity.compare import derivation
from gradparity.compare.confirmation import (
    CONFIRMING_DRAWS,
    OUT_OF_REACH,
    widest,
    worth_another_draw,
)
from gradparity.compare.pairwise import compare_results
from gradparity.harness import runner
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem

CASE = Case((4, 8, 8, 3), "tanh", loss="softmax_cross_entropy", optimizer="adam",
            dtype="float32", batch_size=8, steps=4, hyperparameters={"lr": 0.1})


def test_draw_zero_is_the_model_and_other_draws_move_only_the_trajectory_terms():
    derivation.clear_caches()
    model = derivation.derive(CASE)
    assert derivation.derive(CASE, draw=0) is model  # the cached model itself
    other = derivation.derive(CASE, draw=1)
    assert derivation.derive(CASE, draw=1) is other  # cached, as the model is
    assert derivation.derived_cases() == 1  # the draws are not counted as cases
    assert other.componentwise != model.componentwise  # its own stream
    assert other.sensitivity != model.sensitivity
    # what no random sign enters is the same in every draw
    for field in ("n_eff", "kappa", "step_size", "branched", "conditioning", "rounding"):
        assert getattr(other, field) == getattr(model, field), field
    # a draw is reproducible on a user's data too (not cached), and one that reuses
    # the model's terms without a trajectory is the same draw
    problem = make_problem(CASE)
    mine = derivation.derive(CASE, problem, draw=1)
    assert mine == derivation.derive(CASE, problem, draw=1) == other
    assert derivation.derive(CASE, problem, draw=1,
                             like=derivation.derive(CASE, problem)) == mine


def test_the_widest_draw_allows_at_least_what_each_draw_allows():
    derivation.clear_caches()
    problem = make_problem(CASE)
    numpy_run = get_adapter("numpy").run(CASE, problem)
    oracle = runner.float64_oracle(CASE, problem)
    draws = [derivation.derive(CASE, draw=k) for k in range(3)]
    assert widest(draws[:1]) is draws[0]
    each = [compare_results(numpy_run, oracle, CASE, model) for model in draws]
    combined = compare_results(numpy_run, oracle, CASE, widest(draws))
    grew = 0
    for position, check in enumerate(combined):
        where = (check.quantity, check.parameter)
        assert check.headroom <= min(checks[position].headroom for checks in each), where
        if check.quantity in ("trajectory", "state"):
            continue  # the worst step's tolerance, and the worst step can move
        allowed = [checks[position].tolerance for checks in each]
        assert check.tolerance >= max(allowed), where
        grew += check.tolerance > allowed[0]
        if check.quantity in ("loss", "gradient", "delta"):
            assert check.tolerance == allowed[0]
    assert grew  # the other draws widened some trajectory tolerance


def _difference(quantity: str, headroom: float, note: str = ""):
    return runner.Difference(
        case_id="c", dtype="float32", framework="torch", baseline="numpy",
        quantity=quantity, parameter="W1", max_abs=1.0, max_rel=1.0, normwise=headroom * 1e-3,
        normwise_eps=0.0, tolerance=1e-3, worst_index=(0,), value=0.0, baseline_value=0.0,
        passed=headroom <= 1.0 and not note, note=note)


@pytest.mark.parametrize("quantity, headroom, note, expected", [
    ("params@3", 1.5, "", True),
    ("trajectory", 12.0, "", True),
    ("state", 1.1, "", True),
    ("losses", 1.1, "", True),
    ("params@3", OUT_OF_REACH, "", False),  # far over: another draw cannot save it
    ("gradient", 1.5, "", False),  # the first pass's tolerances take no draw
    ("loss", 1.5, "", False),
    ("delta", 1.5, "", False),
    ("params@3", 0.9, "", False),  # passes
    ("params@3", 0.5, "non-finite", False),  # a note is no number a draw can reach
])
def test_which_failures_take_another_draw(quantity, headroom, note, expected):
    assert worth_another_draw([_difference(quantity, headroom, note)]) is expected


def test_a_pair_that_fails_a_check_no_draw_can_change_takes_no_draw():
    within = _difference("params@3", 1.5)
    assert worth_another_draw([within, _difference("params@2", 0.5)])
    assert not worth_another_draw([within, _difference("gradient", 1.5)])
    assert not worth_another_draw([within, _difference("trajectory", OUT_OF_REACH)])
    assert not worth_another_draw([within, _difference("params@1", 0.5, "non-finite")])


def _derivations(monkeypatch) -> list[int]:
    calls = []
    derive = derivation.derive

    def counted(case, problem=None, clean=None, draw=0, like=None, namespace="numpy"):
        calls.append(draw)
        return derive(case, problem, clean, draw, like, namespace)

    monkeypatch.setattr(runner, "derive", counted)
    return calls


def test_a_pair_that_passes_takes_no_other_draw(monkeypatch):
    derivation.clear_caches()
    calls = _derivations(monkeypatch)
    outcome = runner.run_case(CASE, ("numpy", "torch"), explain=False,
                              finite_differences=False)
    assert outcome.passed
    assert calls == [0]


@pytest.mark.parametrize("passes_from, headroom, draws", [
    (3, 1.5, 3),  # drawn until the widened model lets it pass
    (None, 1.5, CONFIRMING_DRAWS),  # never: every draw, and the failure stands
    (None, OUT_OF_REACH, 1),  # far over: no draw could change it
])
def test_a_failure_within_reach_takes_draws_until_it_passes(monkeypatch, passes_from,
                                                             headroom, draws):
    derivation.clear_caches()
    calls = _derivations(monkeypatch)
    judged_by = []

    def compare(result, baseline, case, model, steps=None):
        judged_by.append(model)
        passing = passes_from is not None and len(judged_by) >= passes_from
        return [_difference("params@2", 0.9 if passing else headroom)]

    monkeypatch.setattr(runner, "compare_results", compare)
    checks, model = runner._judged(None, None, CASE, "full", runner._Models(CASE, None))
    assert calls == list(range(draws))
    assert model is judged_by[-1] and len(judged_by) == draws
    assert checks[0].passed is (passes_from is not None)


def test_a_planted_bug_still_fails_after_every_draw():
    """Adam's first moment decay 0.89999 for 0.9: a logic difference of 1e-5 that no
    rounding pattern explains. It fails within reach of the draws (3.7 to 10 times its
    tolerance), takes every draw, and still fails."""
    derivation.clear_caches()
    problem = make_problem(CASE)
    oracle = runner.float64_oracle(CASE, problem)
    buggy = get_adapter("numpy").run(
        replace(CASE, hyperparameters={"lr": 0.1, "beta1": 0.89999}), problem)
    models = runner._Models(CASE, None)
    judged, _ = runner._judged(buggy, oracle, CASE, "full", models)
    failing = [d for d in judged if not d.passed]
    assert len(models._draws) == CONFIRMING_DRAWS
    assert len(failing) >= 5
    assert all(np.isfinite(d.headroom) and d.headroom > 3 for d in failing)
