"""Who is right and where it broke: oracles, localisation, rounding-or-bug, trajectories."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gradparity.compare.derivation import clear_caches, derive, floors
from gradparity.compare.finite_differences import check_against_finite_differences
from gradparity.compare.pairwise import compare_results, first_backward_divergence
from gradparity.compare.tolerances import FixedTolerance
from gradparity.harness.runner import ORACLE, compare_pair, rounding_or_bug, run_case
from gradparity.harness.workers import sweep_seeds
from gradparity.reference import activations
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.matrix import default_cases
from tests.conftest import require


def _broken(monkeypatch, name: str) -> None:
    """The reference's derivative of ``name`` loses its factor (replaced by ones)."""
    broken = dataclasses.replace(activations.ACTIVATIONS[name],
                                 derivative=lambda z, a: np.ones_like(z))
    monkeypatch.setitem(activations.ACTIVATIONS, name, broken)
    clear_caches()


@pytest.fixture(autouse=True)
def _fresh_tolerances():
    clear_caches()
    yield
    clear_caches()


@pytest.mark.parametrize("case", [c for c in default_cases() if c.dtype == "float64"],
                         ids=lambda c: c.id)
def test_reference_matches_finite_differences_on_every_default_case(case: Case) -> None:
    problem = make_problem(case)
    outcome = run_case(case, ("numpy",), explain=False)
    rows = check_against_finite_differences(case, problem, outcome.results["numpy"])
    assert rows and all(row.passed for row in rows), [r.message() for r in rows if not r.passed]


def test_finite_differences_alone_catch_a_wrong_derivative_without_any_framework() -> None:
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None   # importing either now fails: not installed
        sys.modules["jax"] = None
        import dataclasses
        import numpy as np
        from gradparity.adapters import get_adapter
        from gradparity.spec.case import Case
        from gradparity.reference import activations
        from gradparity.harness.runner import run_case

        assert not get_adapter("torch").availability().available
        assert not get_adapter("jax").availability().available
        broken = dataclasses.replace(activations.ACTIVATIONS["tanh"],
                                     derivative=lambda z, a: np.ones_like(z))
        activations.ACTIVATIONS["tanh"] = broken
        outcome = run_case(Case((4, 8, 8, 3), "tanh", loss="softmax_cross_entropy"))
        failed = sorted(d.parameter for d in outcome.checks if not d.passed)
        print(sorted(outcome.skipped), failed)
        assert failed == ["W1", "W2", "b1", "b2"], failed
        assert all(d.baseline == "finite differences" for d in outcome.checks if not d.passed)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "['jax', 'torch']" in run.stdout


def test_a_wrong_hidden_derivative_is_localised_to_its_layer(monkeypatch) -> None:
    require("torch")
    case = Case((4, 8, 8, 8, 3), ("tanh", "sigmoid", "tanh"), loss="softmax_cross_entropy")
    problem = make_problem(case)
    from gradparity.adapters import get_adapter

    good = get_adapter("torch").run(case, problem)
    _broken(monkeypatch, "sigmoid")  # only layer 2 uses sigmoid
    bad = get_adapter("numpy").run(case, problem)
    assert first_backward_divergence(good, bad, case, floors(case)) == (0, 2)
    deltas = {d.parameter: d.passed for d in compare_pair(good, bad, case)
              if d.quantity == "delta"}
    # layers 3 and 4 are still right; the error enters at 2 and propagates to 1
    assert deltas == {"z1": False, "z2": False, "z3": True, "z4": True}


def test_float32_report_names_the_implementation_furthest_from_the_oracle(monkeypatch) -> None:
    require("jax")
    import jax.numpy as jnp

    from gradparity.adapters import jax_adapter

    monkeypatch.setitem(jax_adapter.ACTIVATIONS, "tanh",
                        lambda z, o: jnp.tanh(z.astype(jnp.bfloat16)).astype(z.dtype))
    jax_adapter._compiled.cache_clear()
    try:
        outcome = run_case(Case((4, 16, 16, 3), "tanh", dtype="float32"))
    finally:
        jax_adapter._compiled.cache_clear()
    worst = outcome.worst_against_oracle()
    assert (worst.framework, worst.baseline) == ("jax", ORACLE)
    numpy_error = max(d.normwise for d in outcome.oracle_differences
                      if d.framework == "numpy" and d.baseline == ORACLE)
    assert worst.normwise > 100 * numpy_error


def test_rounding_is_told_apart_from_a_logic_difference(monkeypatch) -> None:
    require("torch")
    case = Case((4, 16, 16, 3), "tanh", dtype="float32")
    outcome = run_case(case, ("numpy", "torch"), explain=False)
    # a tolerance far below rounding turns rounding into failures
    tight = [d for d in compare_results(outcome.results["torch"], outcome.results["numpy"],
                                        case, FixedTolerance(1e-12)) if not d.passed]
    assert tight
    verdicts = rounding_or_bug(case, tight, ("numpy", "torch"))
    assert all(v.startswith("rounding: ") for v in verdicts.values()), verdicts
    _broken(monkeypatch, "tanh")
    broken = run_case(case, ("numpy", "torch"))
    logic = [v for (fw, base, q, p), v in broken.verdicts.items() if q == "gradient"]
    assert logic and all(v.startswith("logic difference") for v in logic), broken.verdicts


def test_teacher_forcing_separates_per_step_error_from_drift(monkeypatch) -> None:
    require("torch")
    import torch

    from gradparity.adapters import torch_adapter

    # torch takes a 1% larger step than the case says: a constant per-step error
    monkeypatch.setitem(torch_adapter.OPTIMIZERS, "sgd",
                        lambda params, hp: torch.optim.SGD(params, lr=hp["lr"] * 1.01))
    case = Case((4, 16, 16, 3), "tanh", steps=10)
    errors = run_case(case, ("numpy", "torch")).trajectories["torch"]
    forced, free = np.array(errors.teacher_forced), np.array(errors.free_running)
    # one step's error stays of one size (it follows the shrinking gradient) ...
    assert forced.max() < 5 * forced.min()
    # ... and accumulates when nothing resets the parameters
    assert free[-1] > 4 * forced[-1]
    assert errors.growth_per_step > 1.05


def test_derived_tolerances_follow_the_model() -> None:
    small, large = derive(Case((3, 4, 2))), derive(Case((30, 64, 64, 20), batch_size=64))
    assert large.eps_multiple("loss", "loss") > small.eps_multiple("loss", "loss")
    assert large.n_eff == 64 + (30 + 64) + (64 + 64) + (64 + 20)
    model = derive(Case((4, 16, 16, 3), steps=10))
    assert model.eps_multiple("params@10", "W1") > model.eps_multiple("params@1", "W1")
    assert model.eps_multiple("gradient", "W1") >= model.eps_multiple("gradient", "W3")
    sgd = derive(Case((4, 16, 16, 3), hyperparameters={"lr": 0.01}))
    adam = derive(Case((4, 16, 16, 3), optimizer="adam", hyperparameters={"lr": 0.01}))
    # Adam divides by sqrt(v): a relative gradient error barely moves its step
    assert adam.sensitivity[1]["b2"] < sgd.sensitivity[1]["b2"] / 100
    # U_t multiplies only A (float32 Adam): measured there, and after one step it is the
    # step's size relative to the parameters, which D_1 measures from the clean trajectory
    adam32 = derive(Case((4, 16, 16, 3), optimizer="adam", dtype="float32",
                         hyperparameters={"lr": 0.01}))
    assert adam32.moved[1]["b2"] == pytest.approx(adam32.step_size[1]["b2"], rel=1e-5)
    assert adam32.moved[1]["b2"] > 0.01
    assert adam.moved == {} and sgd.moved == {}
    assert adam.bias_correction_eps == pytest.approx(0.9 / 0.1 + 0.999 / 0.002)
    assert sgd.bias_correction_eps == 0
    with pytest.raises(ValueError, match="quantity: invalid value 'hessian'"):
        model.eps_multiple("hessian", "W1")


def test_seed_sweep_distribution() -> None:
    ratios, failures = sweep_seeds(Case((3, 8, 2), "tanh"), 4, ("numpy",))
    assert ratios.shape == (4,) and failures == 0
    assert (ratios < 1).all()


def test_large_networks_use_random_directions(monkeypatch) -> None:
    case = Case((64, 64, 64, 3), "tanh", loss="softmax_cross_entropy")
    problem = make_problem(case)
    reference = run_case(case, ("numpy",), explain=False, finite_differences=False)
    (row,) = check_against_finite_differences(case, problem, reference.results["numpy"])
    assert row.parameter.startswith("16 random directions") and row.passed, row.message()
    _broken(monkeypatch, "tanh")
    broken = run_case(case, ("numpy",), explain=False, finite_differences=False)
    (row,) = check_against_finite_differences(case, problem, broken.results["numpy"])
    assert not row.passed


def test_kink_entries_are_reported_not_compared() -> None:
    # a relu unit whose pre-activation is exactly 0 for the only example
    case = Case((1, 2, 1), "relu", batch_size=1, steps=1)
    problem = make_problem(case)
    params = dict(problem.params)
    params["b1"] = (-problem.x[0, 0] * params["W1"][0]).astype(params["b1"].dtype)
    from gradparity.spec.data import Problem

    pinned = Problem(params=params, x=problem.x, y=problem.y)
    outcome = run_case(case, ("numpy",), explain=False, finite_differences=False)
    from gradparity.adapters import get_adapter

    result = get_adapter("numpy").run(case, pinned)
    rows = check_against_finite_differences(case, pinned, result)
    assert any("kink entries skipped" in row.parameter for row in rows), [r.parameter for r in rows]
    assert all(row.passed for row in rows)
    assert outcome.results  # the unpinned case runs as usual
