"""A network of layers' sums of its gradient terms in absolute value (the componentwise
probe's first estimate), against two oracles: the dense MLP's own
:class:`AbsoluteBackprop` for the same network spelled out as layers, and, per layer, the
layer's Jacobian (its ordinary backward of each unit signal) weighted by the bound
arriving from above."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.compare.absolute_layers import RULES, _walk, absolute_gradients
from gradparity.compare.probes import AbsoluteBackprop
from gradparity.reference import forward
from gradparity.reference.layers import LAYERS, ActivationLayer, Stack, build
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.evaluation import evaluate
from tests.reference.test_layers import SPECS, _id

CHAINED = {"dense", "flatten"} | {kind for kind, layer in LAYERS.items()
                                  if issubclass(layer, ActivationLayer)}
"""Layers that pass the bound down as an MLP passes its deltas; every other one passes
|dL/dx| of the exact signal."""


def test_every_layer_type_has_a_rule() -> None:
    """The registry is the list: a new layer type without a rule fails here (a residual
    block has none of its own: the walk adds its skip to its block's signals)."""
    assert set(LAYERS) - set(RULES) == {"residual"}


def test_a_dense_stack_sums_as_the_same_mlp() -> None:
    """16-32-32-4 tanh, softmax cross-entropy, spelled out as layers: the same sums as the
    dense MLP's absolute backward (its own code) from the same weights and data."""
    layers = Case(layers=[{"type": "dense", "features": 32}, {"type": "tanh"},
                          {"type": "dense", "features": 32}, {"type": "relu"},
                          {"type": "dense", "features": 4}],
                  input_shape=(16,), loss="softmax_cross_entropy", dtype="float64")
    problem = make_problem(layers)
    params = dict(problem.params)
    x, y, _ = problem.batch(0)
    held = evaluate(layers, params, problem.batch(0), problem.state, keep_forward=True)
    sums = absolute_gradients(layers.network(), params, held.forward)
    mlp_params = {f"{part}{index}": params[f"dense{index}.{part}"]
                  for index in (1, 2, 3) for part in "Wb"}
    cache = forward(mlp_params, x, y, ("tanh", "relu", "identity"), "softmax_cross_entropy")
    expected = AbsoluteBackprop().backward(cache).params
    assert set(sums) == {f"dense{i}.{p}" for i in (1, 2, 3) for p in "Wb"}
    for name, value in expected.items():
        np.testing.assert_allclose(sums[f"dense{name[1]}.{name[0]}"], value, rtol=1e-13,
                                   err_msg=name)
    # and more than the gradient wherever its terms cancel
    assert any(np.any(sums[n] > np.abs(g) * 1.5) for n, g in held.gradients.items())


def _inputs(spec, shape, rng):
    batch = (2, *shape)
    if spec["type"] == "embedding":
        return rng.integers(0, spec["vocab"], batch)
    return rng.standard_normal(batch)


def _single_terms(spec) -> set[str]:
    """The parameters of a layer whose every Jacobian entry is one term of its sums (a
    product of an input and the signal, a 0/1 route): there the sums are exactly the
    Jacobian's absolute values weighted by the bound. Attention's query, key and value
    weights sum the exact signals inside the layer instead."""
    if spec["type"] == "residual":
        return set()
    if spec["type"] == "attention":
        return {"Wo", "bo"}
    return set(build(spec).PARAMETERS)


EVERY_KIND = [*SPECS, ({"type": "tanh"}, (6,)), ({"type": "silu"}, (2, 3, 3))]


@pytest.mark.parametrize(("spec", "shape"), EVERY_KIND, ids=[_id(e) for e in EVERY_KIND])
def test_the_sums_weigh_the_jacobian_by_the_bound(spec, shape) -> None:
    rng = np.random.default_rng(7)
    stack = Stack([build(spec)], shape)
    params, state = stack.init(rng), stack.init_state()
    x = _inputs(spec, shape, rng)
    out, run = stack.forward(params, x, state)
    dy = rng.standard_normal(out.shape)
    bound = np.abs(dy) * (1 + rng.random(out.shape))  # a bound from above: >= |dy|
    dx, dx_bound, sums = _walk(stack, params, run, dy, bound)
    exact_dx, exact_grads, _ = stack.backward(params, run, dy)
    np.testing.assert_allclose(dx, exact_dx, rtol=1e-15, atol=1e-300)
    # the oracle: each output entry's Jacobian row (the ordinary backward of a unit signal)
    jacobian_x, jacobian_p = np.zeros(dx.shape), {n: np.zeros(p.shape) for n, p in params.items()}
    for m in range(out.size):
        unit = np.zeros(out.size)
        unit[m] = 1.0
        row_x, row_p, _ = stack.backward(params, run, unit.reshape(out.shape))
        weight = bound.reshape(-1)[m]
        jacobian_x += np.abs(row_x) * weight
        for name in params:
            jacobian_p[name] += np.abs(row_p[name]) * weight
    own = stack.names[0] + "."
    for name in params:
        if name.removeprefix(own) in _single_terms(spec):
            np.testing.assert_allclose(sums[name], jacobian_p[name], rtol=1e-12, atol=1e-300,
                                       err_msg=name)
        else:  # each Jacobian entry is a sum of terms: the terms' sums are at least it
            assert np.all(sums[name] >= np.abs(exact_grads[name]) * (1 - 1e-12)), name
    if spec["type"] in CHAINED:
        np.testing.assert_allclose(dx_bound, jacobian_x, rtol=1e-12, atol=1e-300)
    elif spec["type"] == "residual":  # the skip's bound plus the block's exact signal
        assert np.all(dx_bound >= np.abs(exact_dx) * (1 - 1e-12))
    else:
        np.testing.assert_array_equal(dx_bound, np.abs(exact_dx))
