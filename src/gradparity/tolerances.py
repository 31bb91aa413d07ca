"""Tolerances derived from the dtype and the case, one per checked quantity.

Every tolerance is ``K * eps(dtype)`` on the normwise relative difference
``max|a - b| / max|b|``. ``K`` comes from a rounding-error model of the
network, evaluated on the case's own weights and data (in float64):

* **Size.** A length-n sum carries a rounding error of about ``sqrt(n) * eps``
  relative to the sum of the absolute values of its terms (the probabilistic
  bound of Higham & Mary, SIAM J. Sci. Comput. 41(5), 2019; the worst case is
  ``n * eps``). A gradient passes through every layer's forward product, the
  backward products and a sum over the batch, so
  ``n_eff = batch + sum over layers of (fan_in + fan_out)``.
* **Conditioning.** What is compared is the result, not the sum of absolute
  values: where terms cancel, the relative error can grow by up to
  ``kappa = max(|A|^T |delta|) / max|A^T delta|`` (per layer, for dW, db and
  the propagated delta; the largest over the layer and the layers above it).
  Rounding errors of different terms partly cancel too, so the model uses
  ``sqrt(kappa)`` (calibrated below; ``kappa`` itself overshoots by 100x and more).
* **Steps.** How much a gradient error moves the parameters is measured on the
  case: the reference trajectory is rerun with every gradient entry multiplied
  by ``1 +- delta`` (random signs, like rounding; ``delta = 1e-7``), and
  ``S_t = max|p'_t - p_t| / (delta max|p_t|)`` per parameter. For SGD that is
  how far the parameters moved; for Adam it also captures the division by
  ``sqrt(v_hat)``, which amplifies errors in gradients near zero (for example
  where coupled weight decay cancels the gradient). On top, one rounding per
  step of ``p - lr * d``, accumulating like a random walk: ``sqrt(t)``, relative
  to the larger of the parameter and the largest update so far (``D_t``:
  RMSprop's first updates are several times larger than the parameters).
* **Amplified entries.** Rounding errors scale with the absolute sum of a
  gradient entry's terms (``|a|^T |delta|``, the deltas propagated with
  absolute values), not with the entry: where terms cancel, a tiny gradient
  carries an absolute error of the size of its terms, and RMSprop, Adagrad and
  AMSGrad (``g / sqrt(v)`` with a small ``v``) amplify it far more than a
  relative probe shows. So the trajectory is also rerun with every gradient
  entry moved by ``+- C sqrt(n_eff) eps`` times that absolute sum (at most half
  the entry the optimizer sees, so the probe measures amplification, not a
  sign flip); ``S^c_t`` is the parameters' change in eps, doubled because one
  random draw of a finite perturbation of a nonlinear update is not its
  worst case. The larger of the two gradient terms counts.
* **Adam's constants.** Adam divides by the bias corrections ``1 - beta^t``;
  computed in float32 they carry a relative error of about
  ``beta / (1 - beta)`` eps, e.g. 999 eps for ``beta2 = 0.999``, halved by
  the square root: the update may differ by
  ``A = beta1/(1 - beta1) + beta2/(2 (1 - beta2))`` eps. Only a pair with a
  framework in ``CONSTANTS_IN_PARAMETER_DTYPE`` in a float32 case gets this
  term (optax with x64 off computes the constants in float32; torch.optim and
  the reference use Python floats). It reaches the parameters as
  ``U_t``: measured like ``S_t``, with every *update* scaled by ``1 + delta``
  instead (one sign: the error of a constant is systematic; for SGD about
  ``max|p_t - p_0| / max|p_t|``).
* **The loss trajectory** uses the same two measurements on the loss itself
  (``S_L``, ``U_L``: relative change of the loss per unit relative error).
* **Optimizer state** (momentum buffers, moments, averages, sums) is compared
  after every step with the parameters' model measured on each state slot,
  plus ``8 max(1, R_t)`` where ``R_t`` is measured with every state entry
  multiplied by ``1 +- delta`` after every step (a state entry is a sum of
  terms that can cancel), plus ``B = beta2 / (1 - beta2)`` on optax's
  bias-corrected AMSGrad maximum (float32, jax: the stored ``v_hat`` carries
  the float32 bias correction).
* **Safety.** ``C = 4`` on the sums and ``8`` on the per-step rounding.
  Calibration (``python -m nox -s slow``, README): over the default matrix
  and 20 seeds the largest observed/allowed ratio is below 0.5, and fewer
  than 0.2% of the checks have a tolerance more than 1000x their observed
  difference (observed floored at one eps; the report flags each of them).

    K_loss          = C sqrt(n_eff)
    K_grad(l)       = C sqrt(n_eff) sqrt(kappa_l)
    K_delta(l)      = C sqrt(n_eff) sqrt(kappa_l)
    K_params(t, l)  = max(K_grad(l) S_t(l), 2 S^c_t(l)) + A U_t(l) + 8 sqrt(t) max(1, D_t(l))
                      (A = 0 unless Adam, float32, jax)
    K_state(t, s)   = K_params(t, s) measured on state slot s + 8 max(1, R_t(s)) + B
    K_losses        = K_loss + max(K_grad,max S_L, 2 S^c_L) + A U_L + 8 sqrt(steps) max(1, D)

Only the probes that can matter run: ``U_t`` for float32 Adam-family cases (the only
ones where ``A`` counts), ``R_t`` for optimizers with state. :func:`floors` drops every
trajectory term, a lower bound of each ``K`` that costs one forward and backward pass;
screening (``tolerances="screened"``) derives the full model only where a floor is
exceeded.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from gradparity import reference
from gradparity.case import Case
from gradparity.compare import machine_epsilon
from gradparity.data import Problem, make_problem
from gradparity.reference.optimizers import state_arrays
from gradparity.reference.schedules import step_hyperparameters

SUM_SAFETY = 4.0
STEP_SAFETY = 8.0
PERTURBATION = 1e-7
CONSTANTS_IN_PARAMETER_DTYPE = frozenset({"jax"})
"""Frameworks that compute optimizer constants (Adam's 1 - beta^t) in the parameter
dtype when that is float32: optax does, with jax_enable_x64 off."""
KAPPA_CAP = 1e6
NONLINEAR_SAFETY = 2.0
"""On the componentwise probe: one random draw of a finite perturbation, where the
response can be far from linear (RMSprop's g / sqrt(v) near v = 0)."""


def _kappa(absolute: np.ndarray, exact: np.ndarray) -> float:
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    if scale == 0.0:
        return 1.0
    return float(min(max(float(absolute.max()) / scale, 1.0), KAPPA_CAP))


@dataclass(frozen=True)
class Tolerances:
    """The derived ``K`` (in eps) for every quantity of one case."""

    dtype: str
    n_eff: int
    kappa: dict[int, float]  # per layer
    sensitivity: dict[int, dict[str, float]]  # S_t per step and parameter
    componentwise: dict[int, dict[str, float]]  # S^c_t per step and parameter
    moved: dict[int, dict[str, float]]  # U_t per step and parameter
    bias_correction_eps: float  # A
    state_rounding: dict[int, dict[str, float]]  # R_t per step and state slot
    step_size: dict[int, dict[str, float]]  # D_t: largest update so far / max|p_t|
    loss_sensitivity: tuple[float, float, float]  # gradient, update errors; amplified (eps)
    stored_bias_eps: float = 0.0  # B: a bias-corrected moment kept in the state
    steps: int = 0
    floor: bool = False  # only the terms known without a trajectory (see floors())
    _memo: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def eps_multiple(self, quantity: str, parameter: str,
                     frameworks: tuple[str, ...] = ()) -> float:
        """K for one check; ``frameworks`` are the two sides (they decide Adam's A term)."""
        reduced = self._reduced(frameworks)
        bias = self.bias_correction_eps if reduced else 0.0
        base = SUM_SAFETY * math.sqrt(self.n_eff)
        if quantity == "loss":
            return float(base)
        if quantity in ("gradient", "delta"):
            return float(base * math.sqrt(self.kappa[int(parameter[1:])]))
        if quantity.startswith("params@"):
            return self._params(int(quantity.split("@")[1]), parameter, bias)
        if quantity.startswith("state@"):
            step = int(quantity.split("@")[1])
            stored = self.stored_bias_eps if reduced and parameter.startswith(
                "max_second_moment/") else 0.0
            rounding = STEP_SAFETY * max(
                self.state_rounding.get(step, {}).get(parameter, 0.0), 1.0)
            return self._params(step, parameter, bias) + stored + rounding
        if quantity == "losses":
            steps = self.steps
            by_gradient, by_update, amplified = self.loss_sensitivity
            gradient = base * math.sqrt(max(self.kappa.values()))
            largest_step = max((v for by_name in self.step_size.values()
                                for v in by_name.values()), default=0.0)
            return float(base + max(gradient * by_gradient, NONLINEAR_SAFETY * amplified)
                         + bias * by_update
                         + STEP_SAFETY * math.sqrt(steps) * max(1.0, largest_step))
        raise ValueError(f"quantity: invalid value {quantity!r}; allowed: loss, gradient, "
                         "delta, params@<step>, state@<step>, losses")

    def _params(self, step: int, parameter: str, bias: float) -> float:
        layer = int(parameter.rsplit("/", 1)[-1][1:])  # "W2" or a state slot "first_moment/W2"
        base = SUM_SAFETY * math.sqrt(self.n_eff)
        gradient = base * math.sqrt(self.kappa[layer])
        # two estimates of how gradient rounding reaches the parameters; the larger counts
        propagated = max(gradient * self.sensitivity.get(step, {}).get(parameter, 0.0),
                         NONLINEAR_SAFETY * self.componentwise.get(step, {}).get(parameter, 0.0))
        return float(propagated
                     + bias * self.moved.get(step, {}).get(parameter, 0.0)
                     + STEP_SAFETY * math.sqrt(step)
                     * max(1.0, self.step_size.get(step, {}).get(parameter, 0.0)))

    def _reduced(self, frameworks: tuple[str, ...]) -> bool:
        """Whether the pair gets the terms A and B (which are zero for most cases)."""
        return (self.dtype == "float32" and bool(self.bias_correction_eps or self.stored_bias_eps)
                and bool(CONSTANTS_IN_PARAMETER_DTYPE.intersection(frameworks)))

    def step_limits(self, prefix: str, names: tuple[str, ...], steps: int,
                    frameworks: tuple[str, ...] = ()) -> np.ndarray:
        """``normwise("<prefix>@<t>", name)`` for t = 1..steps (rows) and ``names``."""
        key = ("step_limits", prefix, names, steps, self._reduced(frameworks))
        if key not in self._memo:
            limits = np.array([[self.normwise(f"{prefix}@{t}", name, frameworks)
                                for name in names] for t in range(1, steps + 1)])
            limits.setflags(write=False)
            self._memo[key] = limits
        return self._memo[key]

    def normwise(self, quantity: str, parameter: str, frameworks: tuple[str, ...] = ()) -> float:
        key = (quantity, parameter, self._reduced(frameworks))
        if key not in self._memo:  # every pair of a case asks for the same tolerances
            self._memo[key] = (self.eps_multiple(quantity, parameter, frameworks)
                               * machine_epsilon(self.dtype))
        return self._memo[key]


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
    "screened"`` in :func:`gradparity.runner.run_case`) derives the full model only for
    a pair where some check exceeds its floor. Verdicts are the same either way.

    ``problem``: the weights and data the case really ran on, where they are not the
    generated ones (:func:`gradparity.data.problem_from_arrays`)."""
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
            _kappa(np.abs(a).T @ np.abs(delta), a.T @ delta),
            _kappa(np.abs(delta).sum(axis=0), delta.sum(axis=0)),
        ]
        if index + 1 < layers:
            upper, weight = deltas[index + 1], cache.weights[index + 1]
            kappas.append(_kappa(np.abs(upper) @ np.abs(weight).T, upper @ weight.T))
        local[index + 1] = max(kappas)
    # an error entering at layer k reaches every layer below it
    kappa = {layer: max(local[k] for k in range(layer, layers + 1)) for layer in local}
    n_eff = case.batch_size + sum(
        fan_in + fan_out for fan_in, fan_out in zip(case.layer_sizes[:-1], case.layer_sizes[1:],
                                                    strict=True)
    )
    hp = case.hparams
    bias = (hp["beta1"] / (1 - hp["beta1"]) + hp["beta2"] / (2 * (1 - hp["beta2"]))
            if case.optimizer in ("adam", "adamw", "amsgrad") else 0.0)
    return Tolerances(dtype=case.dtype, n_eff=n_eff, kappa=kappa, sensitivity={},
                      componentwise={}, moved={}, bias_correction_eps=bias, state_rounding={},
                      step_size={}, loss_sensitivity=(0.0, 0.0, 0.0),
                      stored_bias_eps=hp["beta2"] / (1 - hp["beta2"])
                      if hp.get("max_of_bias_corrected") else 0.0,
                      steps=case.steps, floor=True)


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


def _absolute_sums(cache) -> dict[str, np.ndarray]:
    """Per entry, the sum of the absolute values of the terms of each gradient entry:
    |a_{l-1}|^T |delta_l| and sum |delta_l|. Rounding errors scale with these, not with
    the entry itself: where terms cancel, a tiny gradient carries an absolute error of
    the size of its terms (which RMSprop and Adam, dividing by sqrt(v), amplify)."""
    deltas = reference.backward_deltas(cache)
    # |delta_l| propagated with absolute values: the error a delta inherits from the
    # products above it scales with those, not with the delta itself
    absolute = [np.abs(d) for d in deltas]
    for index in range(len(deltas) - 1, 0, -1):
        activation = reference.ACTIVATIONS[cache.activation_names[index - 1]].bound(cache.options)
        slope = np.abs(activation.derivative(cache.pre_activations[index - 1],
                                             cache.activations[index - 1]))
        if cache.masks:
            slope = slope * cache.masks[index - 1]
        absolute[index - 1] = (absolute[index] @ np.abs(cache.weights[index]).T) * slope
    sums = {}
    for index, delta in enumerate(absolute):
        sums[f"W{index + 1}"] = np.abs(cache.inputs[index]).T @ delta
        sums[f"b{index + 1}"] = delta.sum(axis=0)
    return sums


def _trajectory(case, problem, noise, size=PERTURBATION):
    """The float64 reference trajectory (parameters and optimizer state slots after every
    step), optionally with every gradient entry multiplied by ``1 +- PERTURBATION``
    (random signs, like rounding), moved by ``+- size`` times the absolute sum of its
    terms (``componentwise``), every optimizer state entry multiplied by
    ``1 +- PERTURBATION`` after each step (``state``), or every update scaled by
    ``1 + PERTURBATION`` (one sign, like a misrounded constant)."""
    optimizer = reference.OPTIMIZERS[case.optimizer]
    rng = np.random.default_rng(case.seed)
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
            # unclipped: an entry smaller than its own rounding level has no reliable
            # sign, and an optimizer that normalises by sqrt(v) turns that into a full step
            # either way; the tolerance must (and the report flags it when it is loose)
            grads = {n: g + size * scales[n] * signs(g.shape) for n, g in grads.items()}
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
