"""A network of layers' sums of every gradient entry's terms in absolute value (the
componentwise probe's first estimate, as :class:`gradparity.compare.probes.AbsoluteBackprop`
is an MLP's).

Rounding errors scale with these sums, not with the entry itself: where a gradient's
terms cancel, the entry is small while its absolute rounding is the size of its terms,
and an optimizer that divides by ``sqrt(v)`` (RMSprop, Adam) turns that into a step.

The backward pass is walked with two signals: the exact ``dL/dy`` and its absolute
bound ``|dL/dy|_abs``. Each layer's parameters sum their terms in absolute value from
the bound arriving from above:

    dense, conv, transposed conv   dW = |x|^T |dy|_abs,  db = sum |dy|_abs
    embedding                      the rows of |dy|_abs added up by id
    layer / batch norm             dgamma = sum |dy|_abs |x_hat|,  dbeta = sum |dy|_abs
    attention                      dWo = |o|^T |dy|_abs; dWq, dWk, dWv from |x| and the
                                   exact dq, dk, dv in absolute value

A chain of dense and elementwise layers passes the bound down as an MLP's deltas are
(``|dy|_abs |W|^T``, then ``|dy|_abs |f'(z)|``), so a network of layers that is an MLP
is judged as that MLP (``tests/compare/test_absolute_layers.py``). Every other layer
passes ``|dL/dx|`` of the exact signal down instead: a bound carried through every path
of a convolution, a normalisation or attention adds up the rounding of every path at
once, where the errors of different paths largely cancel, and overshoots the differences
frameworks show by a factor that grows with every such layer. In the networks of layers of
the default matrix, seeds 0 and 1 (a one-off count), the checks allowing over 1000 times
what they observe were 30 of 5,464 without sums, 718 with the bound carried through every
layer, and 47 as here; over 20 seeds, networks and MLPs together, 799 of 317,080 against
582 before networks of layers had sums (``nox -s slow``; docs/tolerances.md). A
residual block adds its skip's signals to its block's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradparity.reference.layers import LAYERS, ActivationLayer, Stack
from gradparity.reference.layers.attention import MultiHeadAttention
from gradparity.reference.layers.norm import BatchNorm
from gradparity.reference.layers.stack import StackPass
from gradparity.reference.losses import LOSSES
from gradparity.reference.sequence import SequenceCache, flat

Rule = Callable[[Any, Mapping[str, np.ndarray], Any, np.ndarray, np.ndarray],
                tuple[np.ndarray | None, dict[str, np.ndarray]]]
"""``rule(layer, params, cache, dy, bound) -> (the bound below or None, sums)``: None
passes ``|dL/dx|`` of the exact signal down."""


def _absolute(values: Any) -> Any:
    """Every array in a cache (a tuple of arrays, shapes and numbers) in absolute value."""
    if isinstance(values, np.ndarray):
        return np.abs(values)
    if isinstance(values, tuple):
        return tuple(_absolute(value) for value in values)
    return values


def _bilinear(layer, params, cache, bound):
    # every entry is a sum of products of x (or its patches), W and dy: the same sums
    # of the absolute values
    return layer.backward({n: np.abs(p) for n, p in params.items()}, _absolute(cache), bound)


def _dense(layer, params, cache, dy, bound):
    return _bilinear(layer, params, cache, bound)


def _convolution(layer, params, cache, dy, bound):
    return None, _bilinear(layer, params, cache, bound)[1]


def _reshape(layer, params, cache, dy, bound):
    return layer.backward(params, cache, bound)  # flatten: the same entries


def _activation(layer, params, cache, dy, bound):
    return np.abs(layer.backward(params, cache, bound)[0]), {}  # |dy|_abs |f'(z)|


def _route(layer, params, cache, dy, bound):
    return None, {}  # pools: no parameters


def _embedding(layer, params, cache, dy, bound):
    return None, layer.backward(params, cache, bound)[1]  # rows added up by id: >= 0


def _layer_norm(layer, params, cache, dy, bound):
    if not layer.affine:
        return None, {}
    x_hat, _ = cache
    leading = tuple(range(bound.ndim - 1))
    return None, {"gamma": (bound * np.abs(x_hat)).sum(axis=leading),
                  "beta": bound.sum(axis=leading)}


def _batch_norm(layer: BatchNorm, params, cache, dy, bound):
    x_hat = cache[0]
    axes = layer._axes(bound)
    return None, {"gamma": (bound * np.abs(x_hat)).sum(axis=axes), "beta": bound.sum(axis=axes)}


def _attention(layer: MultiHeadAttention, params, cache, dy, bound):
    x, merged = cache[0], cache[5]
    grads = {"Wo": np.abs(merged.reshape(-1, merged.shape[-1])).T
             @ bound.reshape(-1, bound.shape[-1])}
    rows = np.abs(x.reshape(-1, x.shape[-1]))
    # the exact signals inside the layer, as its backward computes them
    for name, d in layer.projection_signals(params, cache, dy).items():
        d = np.abs(layer._merge(d)).reshape(-1, x.shape[-1])
        grads[f"W{name}"] = rows.T @ d
        if layer.bias:
            grads[f"b{name}"] = d.sum(axis=0)
    if layer.bias:
        grads["bo"] = bound.reshape(-1, bound.shape[-1]).sum(axis=0)
    return None, {name: grads[name] for name in layer.PARAMETERS}


RULES: dict[str, Rule] = {
    "dense": _dense,
    "flatten": _reshape,
    "conv2d": _convolution,
    "conv_transpose2d": _convolution,
    "max_pool2d": _route,
    "avg_pool2d": _route,
    "embedding": _embedding,
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
    "attention": _attention,
    # "residual": none of its own: the walk adds its skip to its block's signals
    **{kind: _activation for kind, layer in LAYERS.items()
       if issubclass(layer, ActivationLayer)},
}
"""Every layer type's rule, by name (a residual block's are its inner layers')."""


def _walk(stack: Stack, params: Mapping[str, np.ndarray], run: StackPass, dy: np.ndarray,
          bound: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(dL/dx, its bound, the sums)`` of a stack, from the top layer down."""
    sums: dict[str, np.ndarray] = {}
    for index in range(len(stack.layers) - 1, -1, -1):
        name, layer, cache = stack.names[index], stack.layers[index], run.caches[index]
        own = stack._own(params, index)
        if layer.kind == "residual":  # y = x + f(x): the skip adds both signals as they are
            inner, inner_run = cache
            dx, dx_bound, layer_sums = _walk(inner, own, inner_run, dy, bound)
            dy, bound = dy + dx, bound + dx_bound
        else:
            below, layer_sums = RULES[layer.kind](layer, own, cache, dy, bound)
            dy = layer.backward(own, cache, dy)[0]
            bound = np.abs(dy) if below is None else below
        sums.update({f"{name}.{p}": value for p, value in layer_sums.items()})
    return dy, bound, sums


def absolute_gradients(network, params: Mapping[str, np.ndarray],
                       cache: SequenceCache) -> dict[str, np.ndarray]:
    """Every parameter's gradient entries as the sums of their terms' absolute values, from
    one forward pass of the network (``evaluate(..., keep_forward=True)``)."""
    loss = LOSSES[cache.loss_name].bound(cache.options)
    dy = loss.gradient(flat(cache.output), cache.targets).reshape(cache.output.shape)
    sums = _walk(network.stack, params, cache.run, dy, np.abs(dy))[2]
    return {name: sums[name] for name in network.stack.parameter_shapes()}
