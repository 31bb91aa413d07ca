"""The measurements of one pass that the tolerance model needs besides its trajectories: the
effective sum length ``n_eff`` and each layer's cancellation ``kappa`` (:func:`mlp_sums`,
:func:`sequence_sums`), how much rounding every elementwise step by one eps moves each
quantity (``Gamma``), the reference's own float32 rounding (``Rho``), the size of a logit
loss's cancelling terms (``Lambda``), per gradient entry the conditioning probe's change
(the componentwise trajectory probe's second estimate), and an MLP's sums of its gradient
terms' absolute values (:class:`AbsoluteBackprop`, the componentwise probe's first
estimate; a network of layers': :mod:`gradparity.compare.absolute_layers`). The formulas
that use them are in :mod:`gradparity.compare.tolerances`;
:mod:`gradparity.compare.derivation` runs them."""

from __future__ import annotations

import numpy as np

from gradparity.compare import random_signs
from gradparity.compare.branches import KinkFlip
from gradparity.compare.metrics import machine_epsilon
from gradparity.compare.tolerances import (
    CONDITIONING_DRAWS,
    CONDITIONING_SAFETY,
    REFERENCE_ROUNDING_SAFETY,
    cancellation,
)
from gradparity.reference import forward
from gradparity.reference.blocks import elementwise
from gradparity.reference.losses import LOSSES
from gradparity.reference.namespace import namespace
from gradparity.reference.network import Backprop, backward_deltas
from gradparity.reference.sequence import RUNNING_SLOT, flat
from gradparity.spec.case import Case
from gradparity.spec.data import Batch, Problem
from gradparity.spec.evaluation import Pass, evaluate


def _normwise_change(perturbed: np.ndarray, exact: np.ndarray) -> float:
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    change = float(np.abs(perturbed - exact).max()) if exact.size else 0.0
    if not np.isfinite(change):
        return 1.0
    return change / scale if scale > 0 else 0.0


def conditioning(case: Case, wide: Problem, exact: Pass) -> dict[str, float]:
    """Gamma: how much rounding each elementwise step by one eps moves the loss, every
    gradient and every delta, in eps (see :mod:`gradparity.compare.tolerances`); and
    how much taking the other side of every kink within rounding moves them
    (:mod:`gradparity.compare.branches`), where that is more."""
    eps = machine_epsilon(case.dtype)
    rng = np.random.default_rng([case.seed, 1])  # its own stream: no other probe shifts
    found: dict[str, float] = {}

    def measure(moved: Pass) -> None:
        changes = {"loss": _normwise_change(np.asarray(moved.loss), np.asarray(exact.loss))}
        changes.update({name: _normwise_change(moved.gradients[name], value)
                        for name, value in exact.gradients.items()})
        changes.update({name: _normwise_change(moved.deltas[name], value)
                        for name, value in exact.deltas.items()})
        changes.update({f"{RUNNING_SLOT}/{name}": _normwise_change(moved.state[name], value)
                        for name, value in exact.state.items()})
        for name, change in changes.items():
            # a quantity that one eps can move by its own size is not determined in this
            # dtype: cap there (the report flags the loose tolerance), never inf or NaN
            found[name] = max(found.get(name, 0.0), min(change, 1.0) / eps)

    for _ in range(CONDITIONING_DRAWS):
        def rounded(values: np.ndarray) -> np.ndarray:
            return values * (1 + eps * np.where(rng.random(values.shape) < 0.5, -1.0, 1.0))

        rounded.rounds_intermediates = True  # inside an activation's formula too
        measure(evaluate(case, wide.params, wide.batch(0), wide.state, perturb=rounded))
    kinks = KinkFlip(case)
    if kinks.active:
        flipped = evaluate(case, wide.params, wide.batch(0), wide.state, perturb=kinks)
        if kinks.found:
            measure(flipped)
    return found


def loss_terms(case: Case, exact: Pass) -> float:
    """Lambda: for a loss of logits, how large the terms that cancel in it are, relative to
    the loss, in eps. Cross-entropy is computed as log-sum-exp minus the picked logit
    (optax, torch) or as log1p(e^-|z|) + max(z, 0) - z y: each term is the size of the
    logits, so where the loss is small (confident, correct predictions) its absolute
    rounding, about eps times the logits, is large relative to it."""
    if not LOSSES[case.loss].takes_logits:
        return 0.0
    logits = np.abs(flat(exact.output))
    terms = float(np.mean(logits.max(axis=1))) if logits.size else 0.0
    loss = abs(float(exact.loss))
    eps = machine_epsilon(case.dtype)
    if terms == 0.0:
        return 0.0
    return min(terms / loss, 1.0 / eps) if loss > 0 else 1.0 / eps


FLOAT32 = np.dtype(np.float32)
EPS32 = machine_epsilon("float32")
REPRESENTABLE32 = float(np.finfo(np.float32).tiny) / EPS32
"""Values below this carry no float32 relative precision (subnormal range)."""


def _in_float32(case: Case, params, batch: Batch, state) -> Pass:
    """The reference's forward and backward pass in float32, from float32-rounded inputs
    (overflow and underflow allowed: they are measured, not raised), in the namespace of
    the arrays."""
    def narrow(values: np.ndarray) -> np.ndarray:
        xp = namespace(values)
        return values if xp.isdtype(values.dtype, "integral") else xp.astype(values,
                                                                             xp.float32)

    with np.errstate(all="ignore"):
        return evaluate(case, {n: narrow(p) for n, p in params.items()},
                        Batch(narrow(batch.x), narrow(batch.y),
                              tuple(narrow(m) for m in batch.masks)),
                        {n: narrow(v) for n, v in state.items()})


def _float32_deviation(mine: np.ndarray, exact: np.ndarray) -> float:
    """Normwise deviation in float32 eps; 0 where float32 cannot represent the quantity."""
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    if scale < REPRESENTABLE32:
        return 0.0
    with np.errstate(all="ignore"):
        change = float(np.abs(np.asarray(mine, np.float64) - exact).max())
    if not np.isfinite(change):
        return 0.0  # float32 overflows here: the case's own dtype decides (float64)
    return min(change / scale, 1.0) / EPS32


def reference_rounding(case: Case, wide: Problem, exact: Pass) -> dict[str, float]:
    """Rho: the reference's own rounding error, in eps, for the loss, every gradient,
    every delta and every running statistic after the pass (``running/bn1.running_mean``):
    the same pass run in float32 from float32-rounded inputs against float64.

    It measures what no model of sums sees: rounding inside the loss (log-sum-exp minus
    the picked logit, 1 - p for a probability near 1) and in saturated elementwise steps.
    Rounding error in units of eps hardly depends on the dtype for the same formulas, so
    the float32 measurement stands for float64 cases too."""
    narrow = _in_float32(case, wide.params, wide.batch(0), wide.state)
    found = {"loss": _float32_deviation(np.asarray(narrow.loss), np.asarray(exact.loss))}
    found.update({name: _float32_deviation(narrow.gradients[name], value)
                  for name, value in exact.gradients.items()})
    found.update({name: _float32_deviation(narrow.deltas[name], value)
                  for name, value in exact.deltas.items()})
    # a running mean is a batch mean that can cancel (a mean near 0 of values near 1)
    found.update({f"{RUNNING_SLOT}/{name}": _float32_deviation(narrow.state[name], value)
                  for name, value in exact.state.items()})
    return found


def entry_rounding(case: Case, current, batch: Batch, state, grads,
                    rng) -> dict[str, np.ndarray]:
    """Per gradient entry, the componentwise probe's second estimate of its rounding: the
    larger of the conditioning probe's change (every z and a moved by one eps of the case
    dtype, random signs) times G and the reference's own rounding of the entry (the same
    pass in float32 against float64, in the case's eps) times G. The first sees what the
    sum model cannot, such as 1 - tanh^2 where tanh saturates; the second the rounding
    inside a formula, such as an entry made of differences that vanish below their own
    rounding (``p - 1`` of a saturated softmax: about 1e-12 in float64, 0 in float32),
    which the sums of the differences' absolute values miss and Adam divides by
    ``sqrt(v) + eps``. Both keep
    every kink's side; :mod:`gradparity.compare.branches` takes the other side."""
    eps = machine_epsilon(case.dtype)

    def rounded(values: np.ndarray) -> np.ndarray:
        # values * (1 +- eps), drawn and applied a cache-sized block at a time
        return random_signs.scaled(values, eps, rng)

    rounded.rounds_intermediates = True  # inside an activation's formula too
    moved = evaluate(case, current, batch, state, perturb=rounded)
    # measured in every network: the sums of the terms' absolute values miss a loss
    # gradient that is a difference below its own rounding (raw 0..255 pixels, relu,
    # Adam: the float32 runs were 25 times their tolerance from the float64 oracle after
    # one step)
    narrow = _in_float32(case, current, batch, state)
    def larger(probe: np.ndarray, value: np.ndarray, float32: np.ndarray) -> np.ndarray:
        xp = namespace(value)
        probed = xp.abs(probe - value)
        own = xp.abs(xp.astype(float32, xp.float64) - value) * (eps / EPS32)
        return xp.maximum(CONDITIONING_SAFETY * xp.where(xp.isfinite(probed), probed, 0.0),
                          REFERENCE_ROUNDING_SAFETY * xp.where(xp.isfinite(own), own, 0.0))

    with np.errstate(all="ignore"):
        # a cache-sized block at a time: the entries of a large model's gradient
        return {name: elementwise(larger, moved.gradients[name], value,
                                  narrow.gradients[name])
                for name, value in grads.items()}


def mlp_sums(case: Case, wide: Problem) -> tuple[int, dict[int, float]]:
    """n_eff and the cancellation kappa per layer of a dense MLP, from its sums of
    absolute values (|A|^T |delta| against A^T delta, and so on)."""
    x, y, masks = wide.batch(0)
    cache = forward(wide.params, x, y, case.activations, case.loss,
                    case.all_options, masks)
    deltas = backward_deltas(cache)
    layers = case.num_layers
    local: dict[int, float] = {}
    for index in range(layers):
        a, delta = cache.inputs[index], deltas[index]
        kappas = [
            cancellation(np.abs(a).T @ np.abs(delta), a.T @ delta),
            cancellation(np.abs(delta).sum(axis=0), delta.sum(axis=0)),
        ]
        if index + 1 < layers:
            upper, weight = deltas[index + 1], cache.weights[index + 1]
            kappas.append(cancellation(np.abs(upper) @ np.abs(weight).T, upper @ weight.T))
        local[index + 1] = max(kappas)
    # an error entering at layer k reaches every layer below it
    per_layer = {layer: max(local[k] for k in range(layer, layers + 1)) for layer in local}
    n_eff = case.batch_size + sum(
        fan_in + fan_out for fan_in, fan_out in zip(case.layer_sizes[:-1], case.layer_sizes[1:],
                                                    strict=True)
    )
    return n_eff, per_layer


def sequence_sums(case: Case) -> tuple[int, dict[int, float]]:
    """n_eff of a sequence network: a parameter gradient sums ``batch x positions`` terms
    (a conv kernel's over every output pixel of every example), and a signal passes every
    layer's forward sum and the matching backward sum. Cancellation is not modelled by
    kappa here (kappa = 1): the measured terms Gamma and Rho, per quantity and per entry,
    carry it (the calibration bounds hold with them, ``nox -s slow``)."""
    stack = case.network().stack
    n_eff = case.batch_size * stack.gradient_terms() + 2 * stack.reduction_length()
    return n_eff, {index: 1.0 for index in range(1, len(stack.layers) + 1)}


class AbsoluteBackprop(Backprop):
    """The reference's backward pass on absolute values: every gradient entry's terms
    summed in absolute value, |a_{l-1}|^T |delta_l| and sum |delta_l|, with the deltas
    below the output propagated as (|delta_l| |W_l|^T) * |f'(z_{l-1})| * m.

    Rounding errors scale with these sums, not with the entry itself: where terms
    cancel, a tiny gradient carries an absolute error of the size of its terms (which
    RMSprop and Adam, dividing by sqrt(v), amplify)."""

    def delta(self, grad_output, layer, cache):
        xp = namespace(grad_output)
        if layer == cache.num_layers:
            return xp.abs(super().delta(grad_output, layer, cache))
        slope = xp.abs(self.activation_derivative(layer, cache))
        if cache.masks:
            slope = slope * cache.masks[layer - 1]
        return grad_output * slope

    def propagate(self, delta, weight):
        return delta @ namespace(weight).abs(weight).T

    def weight_gradient(self, a_prev, delta):
        return namespace(a_prev).abs(a_prev).T @ delta


ABSOLUTE_BACKPROP = AbsoluteBackprop()
