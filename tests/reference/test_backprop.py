"""The one backward pass: its steps, and the variants built by overriding one of them."""

from __future__ import annotations

import numpy as np

from gradparity.check.textbook import Textbook
from gradparity.compare.probes import AbsoluteBackprop
from gradparity.reference import BACKPROP, Backprop, forward
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem

CASE = Case((3, 5, 4, 2), "tanh", loss="mse")


def _cache(case: Case = CASE):
    problem = make_problem(case)
    return forward(problem.params, problem.x, problem.y, case.activations, case.loss)


def test_the_textbook_runs_the_reference_pass() -> None:
    problem = make_problem(CASE)
    loss, grads = Textbook().gradients(dict(problem.params), problem.x, problem.y, CASE)
    cache = _cache()
    expected = BACKPROP.backward(cache).params
    assert loss == float(cache.loss)
    assert list(grads) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for name in expected:
        np.testing.assert_array_equal(grads[name], expected[name])


def test_one_overridden_step_changes_only_what_lies_below_it() -> None:
    """A pass that propagates nothing leaves the output layer's gradients exact and zeroes
    every layer below: the walk reads each step through its method."""

    class Stopped(Backprop):
        def propagate(self, delta, weight):
            return np.zeros((delta.shape[0], weight.shape[0]))

    cache = _cache()
    right, stopped = BACKPROP.backward(cache).params, Stopped().backward(cache).params
    np.testing.assert_array_equal(stopped["W3"], right["W3"])
    np.testing.assert_array_equal(stopped["b3"], right["b3"])
    for name in ("W1", "b1", "W2", "b2"):
        assert not stopped[name].any() and right[name].any()


def test_the_absolute_pass_sums_the_absolute_terms() -> None:
    """Against the sums written out for a two-layer network: |a0|^T |d1| and sum |d1|,
    with |d1| = (|d2| |W2|^T) * |f'(z1)| and |d2| the output delta in absolute value."""
    case = Case((3, 6, 2), "tanh", loss="mse")
    cache = _cache(case)
    delta2 = BACKPROP.backward(cache).deltas[1]
    slope = 1 - np.tanh(cache.pre_activations[0]) ** 2
    delta1 = (np.abs(delta2) @ np.abs(cache.weights[1]).T) * np.abs(slope)
    sums = AbsoluteBackprop().backward(cache).params
    np.testing.assert_allclose(sums["W2"], np.abs(cache.inputs[1]).T @ np.abs(delta2),
                               rtol=1e-15)
    np.testing.assert_allclose(sums["b1"], delta1.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(sums["W1"], np.abs(cache.inputs[0]).T @ delta1, rtol=1e-14)
    # a sum of absolute values bounds the absolute value of the sum
    grads = BACKPROP.backward(cache).params
    assert all(np.all(sums[n] >= np.abs(grads[n]) * (1 - 1e-12)) for n in grads)
