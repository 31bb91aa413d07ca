"""Deriving the tolerance model for one case: the measurements behind every ``K``.

The model's formulas and constants are in :mod:`gradparity.compare.tolerances`; this
module measures, in float64 on the case's own weights and data, what they need:

* one forward and backward pass: ``n_eff`` and the cancellation ``kappa`` per layer
  (:func:`floors`, enough for the loss, gradient and delta tolerances);
* the reference trajectory rerun with perturbed gradients, updates and optimizer
  state (:func:`derive`): the sensitivities ``S_t``, ``S^c_t``, ``U_t``, ``R_t`` and
  the step sizes ``D_t``.

Both are cached per case for generated data.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from gradparity import reference
from gradparity.compare.metrics import machine_epsilon
from gradparity.compare.tolerances import (
    CONDITIONING_DRAWS,
    CONDITIONING_SAFETY,
    PERTURBATION,
    SUM_SAFETY,
    Tolerances,
    cancellation,
)
from gradparity.reference.losses import LOSSES
from gradparity.reference.network import Backprop
from gradparity.reference.optimizers import state_arrays
from gradparity.reference.schedules import step_hyperparameters
from gradparity.spec.case import Case
from gradparity.spec.data import Problem, make_problem


def clear_caches() -> None:
    """Forget every derived model (after the reference was patched, or to time a run)."""
    for cached in (_derived, _static):
        cached.cache_clear()


def derived_cases() -> int:
    """How many cases' full models are cached (since the last :func:`clear_caches`)."""
    return _derived.cache_info().currsize


def floors(case: Case, problem: Problem | None = None) -> Tolerances:
    """The model without its trajectory terms: every ``K`` here is at most the one
    :func:`derive` gives (``S_t``, ``S^c_t``, ``U_t``, ``R_t``, ``D_t`` and the loss
    sensitivities all enter as non-negative terms or as ``max(1, .)``), and the loss,
    gradient and delta tolerances are exactly the derived ones.

    It costs one forward and backward pass instead of up to five trajectories, so a check
    that passes its floor passes the full model too: screening (``tolerances=
    "screened"`` in :func:`gradparity.harness.runner.run_case`) derives the full model only for
    a pair where some check exceeds its floor. Verdicts are the same either way.

    ``problem``: the weights and data the case really ran on, where they are not the
    generated ones (:func:`gradparity.spec.data.problem_from_arrays`)."""
    return _static(case) if problem is None else _static_of(case, problem)


def derive(case: Case, problem: Problem | None = None) -> Tolerances:
    """Evaluate the model on the case's weights and data (``problem``, or the generated
    ones), in float64. Cached per case for generated data."""
    if problem is None:
        return _derived(case)
    return _with_trajectories(case, _static_of(case, problem), problem.as_float64())


@functools.lru_cache(maxsize=512)
def _derived(case: Case) -> Tolerances:
    return _with_trajectories(case, _static(case), make_problem(case).as_float64())


@functools.lru_cache(maxsize=512)
def _static(case: Case) -> Tolerances:
    return _static_of(case, make_problem(case))


def _static_of(case: Case, problem: Problem) -> Tolerances:
    """n_eff, kappa and the constants A and B: one forward and backward pass."""
    wide = problem.as_float64()
    params = wide.params
    x, y, masks = wide.batch(0)
    cache = reference.forward(params, x, y, case.activations, case.loss, case.all_options, masks)
    deltas = reference.backward_deltas(cache)
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
    hp = case.hparams
    bias = (hp["beta1"] / (1 - hp["beta1"]) + hp["beta2"] / (2 * (1 - hp["beta2"]))
            if case.optimizer in ("adam", "adamw", "amsgrad") else 0.0)
    return Tolerances(dtype=case.dtype, n_eff=n_eff, kappa=per_layer,
                      conditioning={**_conditioning(case, wide, cache),
                                    "loss terms": _loss_terms(case, cache)},
                      rounding=_reference_rounding(case, wide, cache), sensitivity={},
                      componentwise={}, moved={}, bias_correction_eps=bias, state_rounding={},
                      step_size={}, loss_sensitivity=(0.0, 0.0, 0.0),
                      stored_bias_eps=hp["beta2"] / (1 - hp["beta2"])
                      if hp.get("max_of_bias_corrected") else 0.0,
                      steps=case.steps, floor=True)


def _normwise_change(perturbed: np.ndarray, exact: np.ndarray) -> float:
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    change = float(np.abs(perturbed - exact).max()) if exact.size else 0.0
    if not np.isfinite(change):
        return 1.0
    return change / scale if scale > 0 else 0.0


def _conditioning(case: Case, wide: Problem, cache) -> dict[str, float]:
    """Gamma: how much rounding each elementwise step by one eps moves the loss, every
    gradient and every delta, in eps (see :mod:`gradparity.compare.tolerances`)."""
    eps = machine_epsilon(case.dtype)
    rng = np.random.default_rng([case.seed, 1])  # its own stream: no other probe shifts
    x, y, masks = wide.batch(0)
    exact = reference.BACKPROP.backward(cache)
    found: dict[str, float] = {}
    for _ in range(CONDITIONING_DRAWS):
        def rounded(values: np.ndarray) -> np.ndarray:
            return values * (1 + eps * np.where(rng.random(values.shape) < 0.5, -1.0, 1.0))

        moved = reference.forward(wide.params, x, y, case.activations, case.loss,
                                  case.all_options, masks, perturb=rounded)
        backward = reference.BACKPROP.backward(moved)
        changes = {"loss": _normwise_change(np.asarray(moved.loss), np.asarray(cache.loss))}
        changes.update({name: _normwise_change(backward.params[name], value)
                        for name, value in exact.params.items()})
        changes.update({f"z{layer}": _normwise_change(mine, value) for layer, (mine, value)
                        in enumerate(zip(backward.deltas, exact.deltas, strict=True), start=1)})
        for name, change in changes.items():
            # a quantity that one eps can move by its own size is not determined in this
            # dtype: cap there (the report flags the loose tolerance), never inf or NaN
            found[name] = max(found.get(name, 0.0), min(change, 1.0) / eps)
    return found


def _loss_terms(case: Case, cache) -> float:
    """Lambda: for a loss of logits, how large the terms that cancel in it are, relative to
    the loss, in eps. Cross-entropy is computed as log-sum-exp minus the picked logit
    (optax, torch) or as log1p(e^-|z|) + max(z, 0) - z y: each term is the size of the
    logits, so where the loss is small (confident, correct predictions) its absolute
    rounding, about eps times the logits, is large relative to it."""
    if not LOSSES[case.loss].takes_logits:
        return 0.0
    logits = np.abs(cache.output)
    terms = float(np.mean(logits.max(axis=1))) if logits.size else 0.0
    loss = abs(float(cache.loss))
    eps = machine_epsilon(case.dtype)
    if terms == 0.0:
        return 0.0
    return min(terms / loss, 1.0 / eps) if loss > 0 else 1.0 / eps


FLOAT32 = np.dtype(np.float32)
EPS32 = machine_epsilon("float32")
REPRESENTABLE32 = float(np.finfo(np.float32).tiny) / EPS32
"""Values below this carry no float32 relative precision (subnormal range)."""


def _in_float32(params, x, y, masks, case: Case):
    """The reference's forward and backward pass in float32, from float32-rounded inputs
    (overflow and underflow allowed: they are measured, not raised)."""
    with np.errstate(all="ignore"):
        cache = reference.forward(
            {n: np.asarray(p).astype(FLOAT32) for n, p in params.items()}, x.astype(FLOAT32),
            y if y.dtype.kind == "i" else y.astype(FLOAT32), case.activations, case.loss,
            case.all_options, tuple(m.astype(FLOAT32) for m in masks))
        return cache, reference.BACKPROP.backward(cache)


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


def _reference_rounding(case: Case, wide: Problem, cache) -> dict[str, float]:
    """Rho: the reference's own rounding error, in eps, for the loss, every gradient and
    every delta: the same pass run in float32 from float32-rounded inputs against float64.

    It measures what no model of sums sees: rounding inside the loss (log-sum-exp minus
    the picked logit, 1 - p for a probability near 1) and in saturated elementwise steps.
    Rounding error in units of eps hardly depends on the dtype for the same formulas, so
    the float32 measurement stands for float64 cases too."""
    x, y, masks = wide.batch(0)
    cache32, backward32 = _in_float32(wide.params, x, y, masks, case)
    exact = reference.BACKPROP.backward(cache)
    found = {"loss": _float32_deviation(np.asarray(cache32.loss), np.asarray(cache.loss))}
    found.update({name: _float32_deviation(backward32.params[name], value)
                  for name, value in exact.params.items()})
    found.update({f"z{layer}": _float32_deviation(mine, value) for layer, (mine, value)
                  in enumerate(zip(backward32.deltas, exact.deltas, strict=True), start=1)})
    return found


def _entry_rounding(current, x, y, masks, case: Case, grads, rng) -> dict[str, np.ndarray]:
    """Per gradient entry, the conditioning probe's change (every z and a moved by one eps
    of the case dtype, random signs), times G: the componentwise probe's second estimate
    of each entry's rounding. It sees what the sum model cannot, such as 1 - tanh^2 where
    tanh saturates. (It keeps every kink's side: a relative move never crosses zero.)"""
    eps = machine_epsilon(case.dtype)

    def rounded(values: np.ndarray) -> np.ndarray:
        return values * (1 + eps * np.where(rng.random(values.shape) < 0.5, -1.0, 1.0))

    moved = reference.BACKPROP.backward(reference.forward(
        current, x, y, case.activations, case.loss, case.all_options, masks, perturb=rounded))
    found = {}
    with np.errstate(all="ignore"):
        for name, value in grads.items():
            probed = np.abs(moved.params[name] - value)
            found[name] = CONDITIONING_SAFETY * np.where(np.isfinite(probed), probed, 0.0)
    return found


def _with_trajectories(case: Case, static: Tolerances, wide) -> Tolerances:
    params, n_eff, bias = wide.params, static.n_eff, static.bias_correction_eps
    sensitivity, moved, componentwise = {}, {}, {}
    clean, clean_losses = _trajectory(case, wide, noise=None)
    by_gradient, gradient_losses = _trajectory(case, wide, noise="gradient")
    # U_t only ever multiplies the bias-correction term A, which is zero outside the
    # Adam family and in float64; R_t exists only for optimizers that keep state
    by_update, update_losses = (_trajectory(case, wide, noise="update")
                                if bias and case.dtype == "float32" else (None, clean_losses))
    # at the size rounding really has in this dtype: RMSprop's g / sqrt(v) is far from
    # linear where v is tiny, so a 1e-7 probe would underestimate float32
    entry_size = SUM_SAFETY * np.sqrt(n_eff) * machine_epsilon(case.dtype)
    by_entry, entry_losses = _trajectory(case, wide, noise="componentwise", size=entry_size)
    has_state = any("/" in name for name in clean[0]) if clean else False
    by_state = _trajectory(case, wide, noise="state")[0] if has_state else clean
    state_rounding, step_size, largest = {}, {}, {n: 0.0 for n in params}
    for step in range(1, case.steps + 1):
        exact = clean[step - 1]
        # parameters and optimizer state slots alike: "W1", "first_moment/W1", ...
        scale = {n: max(float(np.abs(exact[n]).max()), np.finfo(float).tiny) for n in exact}
        sensitivity[step] = {n: float(np.abs(by_gradient[step - 1][n] - exact[n]).max())
                             / (PERTURBATION * scale[n]) for n in exact}
        if by_update is not None:
            moved[step] = {n: float(np.abs(by_update[step - 1][n] - exact[n]).max())
                           / (PERTURBATION * scale[n]) for n in exact}
        componentwise[step] = {n: float(np.abs(by_entry[step - 1][n] - exact[n]).max())
                               / (machine_epsilon(case.dtype) * scale[n]) for n in exact}
        state_rounding[step] = {n: float(np.abs(by_state[step - 1][n] - exact[n]).max())
                                / (PERTURBATION * scale[n]) for n in exact if "/" in n}
        before = params if step == 1 else clean[step - 2]
        largest = {n: max(largest[n], float(np.abs(exact[n] - before[n]).max())) for n in params}
        # rounding an update d is relative to d: where updates exceed the parameters
        # (RMSprop's first steps), one rounding per step is more than one eps of p
        step_size[step] = {n: largest[n] / scale[n] for n in params}

    def loss_sensitivity(losses: np.ndarray) -> float:
        if not len(losses):
            return 0.0
        change = np.abs(losses - clean_losses) / np.maximum(np.abs(clean_losses), 1e-300)
        return float(change.max() / PERTURBATION)

    return replace(static, sensitivity=sensitivity, componentwise=componentwise, moved=moved,
                   state_rounding=state_rounding, step_size=step_size, floor=False,
                   loss_sensitivity=(loss_sensitivity(gradient_losses),
                                     loss_sensitivity(update_losses),
                                     loss_sensitivity(entry_losses) * PERTURBATION
                                     / machine_epsilon(case.dtype)))


class AbsoluteBackprop(Backprop):
    """The reference's backward pass on absolute values: every gradient entry's terms
    summed in absolute value, |a_{l-1}|^T |delta_l| and sum |delta_l|, with the deltas
    below the output propagated as (|delta_l| |W_l|^T) * |f'(z_{l-1})| * m.

    Rounding errors scale with these sums, not with the entry itself: where terms
    cancel, a tiny gradient carries an absolute error of the size of its terms (which
    RMSprop and Adam, dividing by sqrt(v), amplify)."""

    def delta(self, grad_output, layer, cache):
        if layer == cache.num_layers:
            return np.abs(super().delta(grad_output, layer, cache))
        slope = np.abs(self.activation_derivative(layer, cache))
        if cache.masks:
            slope = slope * cache.masks[layer - 1]
        return grad_output * slope

    def propagate(self, delta, weight):
        return delta @ np.abs(weight).T

    def weight_gradient(self, a_prev, delta):
        return np.abs(a_prev).T @ delta


ABSOLUTE_BACKPROP = AbsoluteBackprop()


def _absolute_sums(cache) -> dict[str, np.ndarray]:
    """Per gradient entry, the sum of the absolute values of its terms (see
    :class:`AbsoluteBackprop`)."""
    return ABSOLUTE_BACKPROP.backward(cache).params


def _trajectory(case, problem, noise, size=PERTURBATION):
    """The float64 reference trajectory (parameters and optimizer state slots after every
    step), optionally with every gradient entry multiplied by ``1 +- PERTURBATION``
    (random signs, like rounding), moved by ``+- size`` times the absolute sum of its
    terms (``componentwise``), every optimizer state entry multiplied by
    ``1 +- PERTURBATION`` after each step (``state``), or every update scaled by
    ``1 + PERTURBATION`` (one sign, like a misrounded constant)."""
    optimizer = reference.OPTIMIZERS[case.optimizer]
    rng = np.random.default_rng(case.seed)
    probe_rng = np.random.default_rng([case.seed, 2])  # its own stream: the signs stay
    state, current = optimizer.init(problem.params), dict(problem.params)
    trajectory, losses = [], []
    activations, options = case.activations, case.all_options

    def signs(shape):
        return np.where(rng.random(shape) < 0.5, -1.0, 1.0)

    x, y, masks = problem.batch(0)
    cache = reference.forward(current, x, y, activations, case.loss, options, masks)
    for step in range(case.steps):
        grads = reference.backward(cache)
        if noise == "gradient":
            grads = {n: g * (1 + PERTURBATION * signs(g.shape)) for n, g in grads.items()}
        elif noise == "componentwise":
            scales = _absolute_sums(cache)
            # each entry's rounding: the sum model, or the reference's own measured
            # rounding where that is larger (saturation, cancellation inside the loss)
            measured = _entry_rounding(current, *problem.batch(step), case, grads, probe_rng)
            # unclipped: an entry smaller than its own rounding level has no reliable
            # sign, and an optimizer that normalises by sqrt(v) turns that into a full step
            # either way; the tolerance must (and the report flags it when it is loose)
            grads = {n: g + np.maximum(size * scales[n], measured[n]) * signs(g.shape)
                     for n, g in grads.items()}
        hp = step_hyperparameters(case.hparams, options, step, case.steps)
        new, state = optimizer.update(current, grads, state, hp)
        if noise == "update":
            # systematic, like a misrounded constant: every update scaled by 1 + delta
            new = {n: current[n] + (new[n] - current[n]) * (1 + PERTURBATION) for n in new}
        elif noise == "state":
            # every state entry rounded once per step, relative to itself
            state = state._replace(**{
                slot: {n: v * (1 + PERTURBATION * signs(v.shape)) for n, v in value.items()}
                for slot, value in state._asdict().items() if isinstance(value, dict)})
        current = new
        trajectory.append({**current, **state_arrays(case.optimizer, state, case.hparams)})
        # the loss after this step is the next step's forward pass
        x, y, masks = problem.batch(step + 1)
        cache = reference.forward(current, x, y, activations, case.loss, options, masks)
        losses.append(float(cache.loss))
    return trajectory, np.array(losses)
