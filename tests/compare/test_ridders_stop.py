"""Ridders' tableau stops evaluating smaller steps once every stencil has its answer,
and the answers are the same as those of the full tableau (``stop_early=False``)."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.compare.ridders import STEP_LEVELS, ridders

CENTRES = np.array([-1.3, -0.2, 0.0, 0.4, 2.5, 7.0])


def _smooth(steps):
    return np.sin(CENTRES + steps), np.sin(CENTRES - steps), np.zeros(steps.size, bool)


def _steep(steps):
    above, below = np.exp(3 * (CENTRES + steps)), np.exp(3 * (CENTRES - steps))
    return above, below, np.zeros(steps.size, bool)


def _kinked(steps):
    # |x - 0.001|: a stencil that straddles the kink is flagged, as the reference does
    centre = CENTRES * 1e-3
    up, down = centre + steps, centre - steps
    crossed = np.sign(up - 0.001) != np.sign(down - 0.001)
    return np.abs(up - 0.001), np.abs(down - 0.001), crossed


def _flat(steps):
    # a loss flat in floating point: every difference is exactly 0
    return np.full(steps.size, 1e20), np.full(steps.size, 1e20), np.zeros(steps.size, bool)


SLOPES = np.array([1.2e-3, -7e-4])


def _rounded_loss(offsets):
    # a loss of size 2.3 whose directional slopes are tiny, with rounding of a few ulps
    # (a deterministic function of the offset, so both tableaus see the same values):
    # the tableau soon reaches its rounding floor, as on a large network's loss
    exact = 2.3 + SLOPES * offsets + 0.7 * offsets * offsets
    return exact * (1 + 8 * np.finfo(float).eps * np.sin(1e7 * offsets + np.arange(2)))


def _rounded(steps):
    return _rounded_loss(steps), _rounded_loss(-steps), np.zeros(steps.size, bool)


def _not_finite(steps):
    above, below, crossed = _smooth(steps)
    above[1] = np.nan
    below[3] = np.inf
    return above, below, crossed


@pytest.mark.parametrize("function", [_smooth, _steep, _kinked, _flat, _not_finite, _rounded],
                         ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("first", [1.0, 1e-1, 1e-2, 3e-3, 1e-3])
def test_stopping_early_gives_the_full_tableaus_answers(function, first):
    steps = np.full(SLOPES.size if function is _rounded else CENTRES.size, first)
    early = ridders(function, steps)
    full = ridders(function, steps, stop_early=False)
    for mine, theirs in zip(early, full, strict=True):
        np.testing.assert_array_equal(mine, theirs)


def _counted(function):
    calls = []

    def evaluate(steps):
        calls.append(steps.copy())
        return function(steps)

    return evaluate, calls


@pytest.mark.parametrize("first", [1e-2, 3e-3])
def test_a_loss_at_its_rounding_floor_needs_fewer_steps_and_is_right(first):
    evaluate, calls = _counted(_rounded)
    estimate, error, crossed = ridders(evaluate, np.full(SLOPES.size, first))
    assert len(calls) < STEP_LEVELS
    # the slopes the loss was built with: an oracle independent of the tableau
    np.testing.assert_allclose(estimate, SLOPES, rtol=0, atol=1e-11)
    assert np.all(error < 1e-11) and not crossed.any()
    evaluate, calls = _counted(_rounded)
    ridders(evaluate, np.full(SLOPES.size, first), stop_early=False)
    assert len(calls) == STEP_LEVELS


def test_a_smooth_loss_far_from_its_rounding_floor_runs_every_step():
    # steps from 1: the tableau improves on truncation error at every level
    evaluate, calls = _counted(_smooth)
    estimate, _, _ = ridders(evaluate, np.full(CENTRES.size, 1.0))
    assert len(calls) == STEP_LEVELS
    np.testing.assert_allclose(estimate, np.cos(CENTRES), rtol=0, atol=1e-12)


def test_a_loss_whose_errors_sit_at_the_noise_floor_stops_after_three_steps():
    # a quadratic's central differences are exact but for rounding, so every error is
    # the noise floor 4 eps L / h of the first extrapolation; no stencil "stops" (its
    # drift stays below twice its error), but no later, smaller step has a lower floor
    def quadratic(steps):
        loss = lambda t: 2.3 + SLOPES * t + 0.7 * t * t  # noqa: E731
        return loss(steps), loss(-steps), np.zeros(steps.size, bool)

    evaluate, calls = _counted(quadratic)
    estimate, error, _ = ridders(evaluate, np.full(SLOPES.size, 1e-3))
    assert len(calls) == 3
    np.testing.assert_allclose(estimate, SLOPES, rtol=0, atol=1e-11)
    full = ridders(quadratic, np.full(SLOPES.size, 1e-3), stop_early=False)
    np.testing.assert_array_equal(estimate, full[0])
    np.testing.assert_array_equal(error, full[1])


def test_a_stencil_without_an_answer_keeps_the_tableau_going():
    # NaN everywhere in one stencil: it never stops, so every level is evaluated
    def evaluate(steps):
        above, below, crossed = _smooth(steps)
        above[0] = np.nan
        return above, below, crossed

    counted, calls = _counted(evaluate)
    estimate, _, _ = ridders(counted, np.full(CENTRES.size, 1e-2))
    assert len(calls) == STEP_LEVELS
    assert np.isnan(estimate[0]) and np.isfinite(estimate[1:]).all()
