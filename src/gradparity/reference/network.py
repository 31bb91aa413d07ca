"""A dense multilayer perceptron: forward with a cache, backward by the chain rule.

Layer l (1-based) computes

    z_l = a_{l-1} W_l + b_l        W_l: (fan_in, fan_out), b_l: (fan_out,)  (or no b_l)
    a_l = f_l(z_l)

with a_0 = x, f_l the hidden activation for l < L and the output activation
for l = L. The loss is L(a_L, y). With dropout, a hidden layer's output is
a_l = f_l(z_l) * m_l, where the mask m_l (0 or 1 / (1 - p)) comes from the data
generator, never from a random draw here.

Backward walks the layers from L down to 1 using only the cache:

    delta_L   = dL/da_L * f_L'(z_L)                 (dL/dz_L)
    dL/dW_l   = a_{l-1}^T delta_l
    dL/db_l   = sum over the batch of delta_l
    dL/da_l-1 = delta_l W_l^T
    delta_l-1 = dL/da_{l-1} * m_{l-1} * f_{l-1}'(z_{l-1})     (m = 1 without dropout)

The cache holds the weights that the forward pass used, so backward cannot
accidentally read parameters that changed after the forward pass.

:class:`Backprop` is that walk as small overridable steps. It is the one
backward pass of the project: the reference runs it as it is, the plug-in
textbook (``gradparity.check.textbook``) and every known bug
(``gradparity.check.bugs``) override single steps of it, and the tolerance model
runs it on absolute values (``gradparity.compare.probes.AbsoluteBackprop``).

The arrays may be NumPy's or any other array API namespace's (CuPy on a GPU): every
step computes in the namespace of its inputs (:mod:`gradparity.reference.namespace`).
Only NumPy arrays can be marked read-only; the cache of another namespace keeps a copy
of each weight.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradparity.reference.activations import ACTIVATIONS, rounds_intermediates
from gradparity.reference.losses import LOSSES
from gradparity.reference.namespace import namespace

Params = Mapping[str, np.ndarray]


def parameter_names(num_layers: int, bias: bool = True) -> tuple[str, ...]:
    """``("W1", "b1", ..., "WL", "bL")`` for ``num_layers`` dense layers (without the
    ``b`` for a network without biases)."""
    names: list[str] = []
    for layer in range(1, num_layers + 1):
        names += [f"W{layer}", f"b{layer}"] if bias else [f"W{layer}"]
    return tuple(names)


def _frozen(array: np.ndarray) -> np.ndarray:
    """A read-only view of a NumPy array; any other namespace's array as it is."""
    if not isinstance(array, (np.ndarray, np.generic)):
        return array
    view = np.asarray(array).view()
    view.setflags(write=False)
    return view


def _kept(weight: np.ndarray) -> np.ndarray:
    """The weight as the forward cache keeps it: itself where nothing can write to it,
    otherwise a read-only copy (any other namespace's: a copy)."""
    if unchangeable(weight):
        return weight
    if isinstance(weight, np.ndarray):
        return _frozen(np.array(weight, copy=True))
    return namespace(weight).asarray(weight, copy=True)


def unchangeable(array: np.ndarray) -> bool:
    """Whether nothing can write to ``array`` without first marking an array writeable
    again: it is read-only, and so is every array it views, down to the NumPy array that
    owns the memory (memory from elsewhere, a framework's buffer, may change)."""
    while isinstance(array, np.ndarray):
        if array.flags.writeable:
            return False
        if array.flags.owndata:
            return True
        array = array.base
    return False


def freeze(params: Mapping[str, np.ndarray]) -> Params:
    """``params``, each array that owns its memory marked read-only (in place), so that a
    forward pass keeps it without a copy; for arrays nobody will write to again (an
    optimizer's new values: the reference's updates never work in place)."""
    for value in params.values():
        if isinstance(value, np.ndarray) and value.flags.owndata:
            value.setflags(write=False)
    return params


@dataclass(frozen=True)
class ForwardCache:
    """Everything backward needs, read-only.

    ``inputs[l-1]`` is a_{l-1} (the input of layer l, after dropout),
    ``pre_activations[l-1]`` is z_l, ``activations[l-1]`` is f_l(z_l) (before
    dropout), ``weights[l-1]`` is the W_l used, ``masks[l-1]`` the dropout mask
    of hidden layer l (empty without dropout), ``options`` the case options
    that parametrise the activations and the loss.
    """

    activation_names: tuple[str, ...]
    loss_name: str
    inputs: tuple[np.ndarray, ...]
    pre_activations: tuple[np.ndarray, ...]
    activations: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]
    targets: np.ndarray
    loss: np.ndarray
    masks: tuple[np.ndarray, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    bias: bool = True  # False: a network without biases (z = a W)
    # the conditioning probe's rounding, for the derivatives of activations that round
    # an intermediate of their own (``Activation.rounds_inside``); None in a plain pass
    rounding: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def output(self) -> np.ndarray:
        return self.activations[-1]  # the output layer never has dropout

    @property
    def num_layers(self) -> int:
        return len(self.activation_names)


def forward(
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    activation_names: tuple[str, ...],
    loss_name: str,
    options: Mapping[str, Any] | None = None,
    masks: Sequence[np.ndarray] = (),
    perturb: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ForwardCache:
    """Run the network on ``x`` and evaluate the loss against ``y``.

    ``activation_names`` has one entry per layer; the last is the output
    activation. ``options`` (case options such as ``negative_slope``) set the
    parameters of activations and loss; ``masks`` holds one dropout mask per
    hidden layer, or nothing. ``perturb``, when given, is applied to every z_l and
    a_l as it is computed, the way rounding would disturb it (the tolerance model's
    conditioning probe, :mod:`gradparity.compare.derivation`).

    The parameters may also be stacks, ``W_l`` shaped ``(..., fan_in, fan_out)`` and
    ``b_l`` ``(..., 1, fan_out)``: the forward pass then runs every network of the
    stack at once and the loss has one entry per network (finite differences).
    """
    options = dict(options or {})
    if masks and len(masks) != len(activation_names) - 1:
        raise ValueError(f"masks: invalid value (length {len(masks)}); allowed: one mask per "
                         f"hidden layer ({len(activation_names) - 1}) or none")
    inputs, pre_activations, activations, weights = [], [], [], []
    inside = rounds_intermediates(perturb)  # rounding inside an activation's formula too
    a = x
    bias = "b1" in params
    for layer, activation_name in enumerate(activation_names, start=1):
        weight = params[f"W{layer}"]
        z = a @ weight + params[f"b{layer}"] if bias else a @ weight
        if perturb is not None:
            z = perturb(z)
        inputs.append(_frozen(a))
        # the cache keeps the weights of this pass, so an optimizer that later updates
        # them in place cannot change the backward pass; an unchangeable array is kept
        # without a copy
        weights.append(_kept(weight))
        activation = ACTIVATIONS[activation_name].bound(options)
        if inside is not None and activation.rounds_inside:
            a = activation.forward(z, rounding=inside)
        else:
            a = activation.forward(z)
        if perturb is not None:
            a = perturb(a)
        pre_activations.append(_frozen(z))
        activations.append(_frozen(a))
        if masks and layer < len(activation_names):
            a = a * masks[layer - 1]
    loss = LOSSES[loss_name].bound(options).value(a, y)
    return ForwardCache(
        activation_names=tuple(activation_names),
        loss_name=loss_name,
        inputs=tuple(inputs),
        pre_activations=tuple(pre_activations),
        activations=tuple(activations),
        weights=tuple(weights),
        targets=_frozen(y),
        loss=loss,
        masks=tuple(_frozen(m) for m in masks),
        options=options,
        bias=bias,
        rounding=inside,
    )


@dataclass(frozen=True)
class Gradients:
    """What one backward pass gives: ``params`` (``{"W1": dL/dW1, "b1": ...}``) and
    ``deltas`` (dL/dz_l for l = 1..L)."""

    params: dict[str, np.ndarray]
    deltas: tuple[np.ndarray, ...]


class Backprop:
    """The backward pass of the module docstring, one overridable method per step.

    Each step gets the forward cache; ``layer`` is 1-based (``L`` is the output
    layer). Subclasses change one step and inherit the rest, so a variant
    (a known bug, the absolute-value pass of the tolerance model) is exactly the
    textbook with that step replaced.
    """

    def output_gradient(self, cache: ForwardCache) -> np.ndarray:
        """dL/da_L, the loss gradient with respect to the network output."""
        return LOSSES[cache.loss_name].bound(cache.options).gradient(cache.output,
                                                                     cache.targets)

    def activation_derivative(self, layer: int, cache: ForwardCache) -> np.ndarray:
        """f_l'(z_l), from the cached z_l and a_l = f_l(z_l)."""
        activation = ACTIVATIONS[cache.activation_names[layer - 1]].bound(cache.options)
        z, a = cache.pre_activations[layer - 1], cache.activations[layer - 1]
        if cache.rounding is not None and activation.rounds_inside:
            return activation.derivative(z, a, rounding=cache.rounding)
        return activation.derivative(z, a)

    def masked(self, grad_output: np.ndarray, layer: int, cache: ForwardCache) -> np.ndarray:
        """dL/df(z_l) = dL/da_l * m_l: dropout's mask scales the gradient too."""
        if cache.masks and layer < cache.num_layers:
            return grad_output * cache.masks[layer - 1]
        return grad_output

    def delta(self, grad_output: np.ndarray, layer: int, cache: ForwardCache) -> np.ndarray:
        """delta_l = dL/dz_l = dL/df(z_l) * f_l'(z_l): the chain rule through the activation."""
        return self.masked(grad_output, layer, cache) * self.activation_derivative(layer, cache)

    def weight_gradient(self, a_prev: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """dL/dW_l = a_{l-1}^T delta_l, shaped (fan_in, fan_out)."""
        return a_prev.T @ delta

    def bias_gradient(self, delta: np.ndarray) -> np.ndarray:
        """dL/db_l = the sum of delta_l over the batch (dz/db is 1 per row)."""
        return namespace(delta).sum(delta, axis=0)

    def weight_for_propagation(self, layer: int, weight_gradient: np.ndarray,
                               cache: ForwardCache) -> np.ndarray:
        """The W_l that carries the error to layer l - 1: the one the forward pass used."""
        return cache.weights[layer - 1]

    def propagate(self, delta: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """dL/da_{l-1} = delta_l W_l^T, the gradient fed to the layer below."""
        return delta @ weight.T

    def backward(self, cache: ForwardCache) -> Gradients:
        """Walk from layer L down to 1: every parameter gradient and every delta."""
        grads: dict[str, np.ndarray] = {}
        deltas: list[np.ndarray] = [None] * cache.num_layers  # type: ignore[list-item]
        grad_output = self.output_gradient(cache)
        for layer in range(cache.num_layers, 0, -1):
            delta = self.delta(grad_output, layer, cache)
            deltas[layer - 1] = delta
            grads[f"W{layer}"] = self.weight_gradient(cache.inputs[layer - 1], delta)
            if cache.bias:
                grads[f"b{layer}"] = self.bias_gradient(delta)
            if layer > 1:
                weight = self.weight_for_propagation(layer, grads[f"W{layer}"], cache)
                grad_output = self.propagate(delta, weight)
        ordered = {name: grads[name] for name in parameter_names(cache.num_layers,
                                                                   cache.bias)}
        return Gradients(ordered, tuple(deltas))


BACKPROP = Backprop()
"""The reference's backward pass."""


def backward_deltas(cache: ForwardCache) -> tuple[np.ndarray, ...]:
    """dL/dz_l for every layer l = 1..L, from the cache alone."""
    return BACKPROP.backward(cache).deltas


def backward(cache: ForwardCache) -> dict[str, np.ndarray]:
    """Parameter gradients ``{"W1": dL/dW1, "b1": dL/db1, ...}`` from the cache."""
    return BACKPROP.backward(cache).params


def loss_and_gradients(
    params: Params,
    x: np.ndarray,
    y: np.ndarray,
    activation_names: tuple[str, ...],
    loss_name: str,
    options: Mapping[str, Any] | None = None,
    masks: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Forward then backward: ``(loss, grads)``."""
    cache = forward(params, x, y, activation_names, loss_name, options, masks)
    return cache.loss, backward(cache)
