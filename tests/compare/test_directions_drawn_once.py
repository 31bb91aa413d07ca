"""A large network's random directions are drawn from their seed whenever read; the
reference's gradient is projected on them while they are drawn for the estimate, not in
a second draw, and the check's row is the same."""

from __future__ import annotations

import numpy as np

from gradparity.adapters import get_adapter
from gradparity.compare import directions
from gradparity.compare.directions import RandomDirections
from gradparity.compare.finite_differences import (
    check_against_finite_differences,
    compare_with_estimate,
    estimate_for,
)
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem

# 2,634 parameters: past MAX_FULL_PARAMETERS, so random directions
CASE = Case((30, 64, 10), "tanh", loss="softmax_cross_entropy", batch_size=16)


def _counted_draws(monkeypatch) -> list[int]:
    # nothing kept, as for a network of millions of parameters
    monkeypatch.setattr(directions, "STACK_PARAMETERS", 1000)
    draws = []
    drawn = RandomDirections._drawn

    def counted(self):
        draws.append(self.seed)
        return drawn(self)

    monkeypatch.setattr(RandomDirections, "_drawn", counted)
    return draws


def test_the_reference_is_projected_in_the_estimates_draw(monkeypatch) -> None:
    problem = make_problem(CASE)
    reference = get_adapter("numpy").run(CASE, problem)
    draws = _counted_draws(monkeypatch)
    rows = check_against_finite_differences(CASE, problem, reference)
    assert len(draws) == 1
    assert rows[0].parameter == "16 random directions" and rows[0].passed
    # projected after the estimate instead: the directions drawn again, the same row
    estimate = estimate_for(CASE, problem)
    again = compare_with_estimate(CASE, estimate, reference.gradients, reference.framework)
    assert len(draws) == 3
    assert repr(again) == repr(rows)


def test_a_wrong_gradient_still_fails_through_the_projection(monkeypatch) -> None:
    problem = make_problem(CASE)
    reference = get_adapter("numpy").run(CASE, problem)
    wrong = {**reference.gradients, "W2": reference.gradients["W2"] * 1.001}
    _counted_draws(monkeypatch)
    estimate = estimate_for(CASE, problem, against=wrong)
    assert estimate.projected is not None and estimate.projected[0] is wrong
    row = compare_with_estimate(CASE, estimate, wrong, "numpy")[0]
    assert not row.passed and row.normwise > 1e-5
    # another gradient than the projected one is projected afresh
    right = compare_with_estimate(CASE, estimate, reference.gradients, "numpy")[0]
    assert right.passed


def test_a_wrongly_shaped_gradient_is_not_projected_but_reported() -> None:
    problem = make_problem(CASE)
    reference = get_adapter("numpy").run(CASE, problem)
    transposed = {**reference.gradients, "W1": reference.gradients["W1"].T}
    estimate = estimate_for(CASE, problem, against=transposed)
    assert estimate.projected is None
    rows = compare_with_estimate(CASE, estimate, transposed, "numpy")
    assert [row.parameter for row in rows] == ["W1"] and not rows[0].passed
    assert "shape" in rows[0].note
    assert np.isinf(rows[0].normwise)
