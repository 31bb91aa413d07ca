"""The tolerance model: every constant of it, and the formulas that turn measurements
into one tolerance per checked quantity.

The measurements themselves (conditioning, perturbed trajectories) are taken by
:mod:`gradparity.compare.derivation`; this module holds only numbers and formulas, so
that every tolerance constant of the project has its home here.

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
  entry moved by ``+- C sqrt(n_eff) eps`` times that absolute sum (not clipped:
  an entry below its own rounding level has no reliable sign); the sums are an
  MLP's :class:`~gradparity.compare.probes.AbsoluteBackprop` or a network of
  layers' :mod:`~gradparity.compare.absolute_layers`; ``S^c_t`` is the
  parameters' change in eps, doubled because one
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
* **Conditioning of the elementwise steps.** A sum's rounding is not all: an
  elementwise step can amplify the rounding of its input. ``-log(1 - p)`` has
  condition ``1/(1 - p)`` (BCE on probabilities near 1), ``1 - tanh(z)^2``
  cancels where tanh saturates, softmax of large logits turns the logits' rounding
  into large changes of the probabilities. So the forward pass is rerun with every
  z_l and a_l multiplied by ``1 +- eps`` (random signs: each elementwise step rounded
  once), and ``Gamma_q`` is the normwise change of each quantity q (the loss, each
  gradient, each delta) in eps, the largest of two draws. It is measured on the
  case's own data, so it is about 1 where nothing is ill-conditioned.
* **The reference's own rounding.** Some rounding happens inside a step, where no
  perturbation of its inputs reaches: log-sum-exp minus the picked logit cancels when
  the loss is small, ``p - 1`` cancels when a probability is near 1. So the reference
  is also run in float32 from float32-rounded inputs, and ``Rho_q`` is its normwise
  error against float64, in float32 eps (0 where float32 cannot represent the
  quantity). Rounding error in eps hardly depends on the dtype for the same formulas,
  so it stands for float64 cases too. The componentwise probe of a network of layers
  uses it per entry as well.
* **The terms of a loss of logits.** Cross-entropy is log-sum-exp minus the picked logit
  (or ``max(z, 0) - z y + log1p(e^-|z|)``): terms the size of the logits that cancel
  when predictions are confident and right, leaving a small loss with an absolute
  rounding of about eps times the logits. ``Lambda`` is the mean row's largest
  |logit| over the loss.
* **Kinks within rounding.** relu's derivative jumps at 0: a pre-activation within
  ``C sqrt(n) eps max|z|`` of the kink lands on either side in the case dtype, and the
  optimizer carries the other branch on. ``X_t`` is the distance, in eps, of a trajectory
  that takes the other side of every such value (from the first pass that has one; see
  :mod:`gradparity.compare.branches`) from the clean one; the conditioning probe takes the
  other side at the first pass.
* **Safety.** ``C = 4`` on the sums, ``G = 4`` on the conditioning and on the
  reference's rounding, ``8`` on the per-step rounding.
  Calibration (``python -m nox -s slow``, README): over the default matrix
  and 20 seeds the largest observed/allowed ratio is below 0.5, and fewer
  than 0.3% of the checks have a tolerance more than 1000x their observed
  difference (observed floored at one eps; the report flags each of them).

    K_loss          = C sqrt(n_eff) + G (Gamma_loss + Rho_loss + Lambda)
    K_grad(l)       = C sqrt(n_eff) sqrt(kappa_l) + G (Gamma_l + Rho_l)
    K_delta(l)      = C sqrt(n_eff) sqrt(kappa_l) + G (Gamma_zl + Rho_zl)
    K_params(t, l)  = max(K_grad(l) S_t(l), 2 S^c_t(l)) + A U_t(l) + 4 X_t(l)
                      + 8 sqrt(t) max(1, D_t(l))       (A = 0 unless Adam, float32, jax)
    K_state(t, s)   = K_params(t, s) measured on state slot s + 8 max(1, R_t(s)) + B
                      + G (Gamma_s + Rho_s)     (running statistics: their own pass)
    K_losses        = K_loss + max(K_grad,max S_L, 2 S^c_L) + A U_L + 4 X_L
                      + 8 sqrt(steps) max(1, D)

Only the probes that can matter run: ``U_t`` for float32 Adam-family cases (the only
ones where ``A`` counts), ``R_t`` for optimizers with state. :func:`floors` drops every
trajectory term, a lower bound of each ``K`` that costs one forward and backward pass;
screening (``tolerances="screened"``) derives the full model only where a floor is
exceeded.

Fixed tolerances live here too: the finite-difference oracle's, the fallback for a
check without a model (:class:`FixedTolerance`), the diagnosis's matching scale, the
rounding-or-bug threshold and the report's "loose" threshold. A ``K`` whose tolerance
``K eps`` reaches 1 says that rounding alone moves the quantity by its own size: that
check is not judged (the pass rule's :data:`gradparity.compare.metrics.NOT_DETERMINED`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gradparity.compare.metrics import machine_epsilon

# -- the derived model's constants ---------------------------------------------------

SUM_SAFETY = 4.0
"""C: the safety factor on every sum's sqrt(n) eps rounding estimate."""
STEP_SAFETY = 8.0
"""The safety factor on the one rounding per optimizer step (and per state entry)."""
PERTURBATION = 1e-7
"""delta: the relative size of the probes' perturbations."""
CONSTANTS_IN_PARAMETER_DTYPE = frozenset({"jax"})
"""Frameworks that compute optimizer constants (Adam's 1 - beta^t) in the parameter
dtype when that is float32: optax does, with jax_enable_x64 off."""
KAPPA_CAP = 1e6
"""The largest cancellation factor kappa the model believes (beyond it the entry is
rounding noise, and sqrt(1e6) = 1000 is already generous)."""
NONLINEAR_SAFETY = 2.0
"""On the componentwise probe: one random draw of a finite perturbation, where the
response can be far from linear (RMSprop's g / sqrt(v) near v = 0)."""
CONDITIONING_SAFETY = 4.0
"""On the conditioning probe (``Gamma``): every z_l and a_l moved by one eps with random
signs (and an activation's own cancelling intermediate, ``Activation.rounds_inside``)
stands for the rounding of each elementwise step; the safety covers the few ulps
a framework's own tanh, exp or log may carry and the luck of one random draw."""
CONDITIONING_DRAWS = 2
"""Random draws of the conditioning probe; the largest response counts."""
BRANCH_SAFETY = 4.0
"""On the branch trajectory (``X_t``): it takes the other side of *every* kink within
rounding at once, where a framework takes some of them, whose effects need not cancel
the way all of them together do."""
REFERENCE_ROUNDING_SAFETY = 4.0
"""On the reference's own measured rounding (``Rho``, and per entry in the componentwise
probe): one implementation's rounding stands for another's, which may be a few times
larger."""

# -- fixed tolerances and thresholds ------------------------------------------------

FIXED_TOLERANCE_EPS = 256.0
"""A fixed tolerance in eps for a check that has no derived model (a user's update
trajectory against the reference, a reproduction script). 256 eps is the order of the
worst-case bound n*eps for the built-in network sizes (Higham, *Accuracy and Stability
of Numerical Algorithms*, section 3.1)."""

FINITE_DIFFERENCE_TOLERANCE = 1e-6
"""The least normwise relative tolerance of backprop against the finite-difference
oracle: where the oracle's own error estimate is tiny (about 1e-11 for smooth losses),
this still leaves room for curvature, while any missing factor or derivative
(>= 1e-2 relative) fails by orders of magnitude."""

FINITE_DIFFERENCE_ERROR_SAFETY = 10.0
"""The oracle's tolerance is this many times its own largest error estimate (Ridders'
estimate is of the right order, not a bound), when that exceeds the least tolerance."""

FINITE_DIFFERENCE_INCONCLUSIVE = 1e-3
"""An entry whose error estimate exceeds this fraction of its gradient's scale is
*inconclusive*: not judged, and counted in the check's label. With it the oracle's
tolerance stays below 1e-2, so a factor or a missing derivative still fails."""

DIAGNOSIS_MATCH_FACTOR = 16.0
"""The diagnosis matches a hypothesis (a known bug, a constant factor) within this many
times :func:`fixed_tolerance`: hypotheses are evaluated in float64 while the user's
numbers carry the case dtype's rounding."""

ROUNDING_SHRINK_SLACK = 1e3
"""Rounding or bug: a float32 failure is *rounding* when its float64 rerun passes and
its error shrank by less than this many times the eps ratio eps64 / eps32 (rounding
shrinks by about that ratio; a logic difference does not shrink)."""

LOOSE_FACTOR = 1000.0
"""The report flags every check whose tolerance exceeds this many times what it
observed (observed floored at one eps): a loose tolerance could hide a bug."""

FLOAT64_AGREEMENT_TARGET = 1e-12
"""The project's target for float64: every gradient, parameter and state agrees across
numpy, torch and jax to this normwise relative difference (the tests assert it)."""

TOLERANCE_MODES = ("full", "screened")
"""``full``: every check's tolerance is the derived model
(:func:`gradparity.compare.derivation.derive`). ``screened``: checks are judged against
the model's floors first, and the full model is derived only for a pair where some
check exceeds its floor: identical verdicts, less work; a check that passed its floor
reports the floor as its tolerance."""


def fixed_tolerance(dtype: str) -> float:
    """:data:`FIXED_TOLERANCE_EPS` eps of ``dtype``, as a normwise relative tolerance."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype: invalid value {dtype!r}; allowed: float32, float64")
    return FIXED_TOLERANCE_EPS * machine_epsilon(dtype)


def diagnosis_match_tolerance(dtype: str) -> float:
    """The normwise distance within which the diagnosis calls two arrays the same."""
    return DIAGNOSIS_MATCH_FACTOR * fixed_tolerance(dtype)


@dataclass(frozen=True)
class FixedTolerance:
    """One normwise tolerance for every check (the comparison's model interface)."""

    value: float

    def normwise(self, quantity: str, parameter: str, frameworks: tuple[str, ...] = ()) -> float:
        return self.value

    def step_limits(self, prefix: str, names: tuple[str, ...], steps: int,
                    frameworks: tuple[str, ...] = ()) -> np.ndarray:
        return np.full((steps, len(names)), self.value)


def cancellation(absolute: np.ndarray, exact: np.ndarray) -> float:
    """The cancellation factor max(absolute sums) / max|result|, in [1, KAPPA_CAP]."""
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    if scale == 0.0:
        return 1.0
    return float(min(max(float(absolute.max()) / scale, 1.0), KAPPA_CAP))


# -- the model ---------------------------------------------------------------------


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
    # X_t: the branch trajectory (kinks within rounding taken the other way), in eps
    branched: dict[int, dict[str, float]] = field(default_factory=dict)
    branched_loss: float = 0.0  # X_L: the same on the loss trajectory, in eps
    branch_from: int | None = None  # the first pass with a value within rounding of a kink
    conditioning: dict[str, float] = field(default_factory=dict)  # Gamma: loss, W1.., z1..
    rounding: dict[str, float] = field(default_factory=dict)  # Rho: loss, W1.., z1..
    steps: int = 0
    floor: bool = False  # only the terms known without a trajectory (see floors())
    # the layer index (key of kappa) of every parameter, signal and running statistic;
    # empty for an MLP, whose names carry it (W2, z2)
    layer_of: dict[str, int] = field(default_factory=dict)
    parameters: tuple[str, ...] = ()  # the parameter names (all of them W.. and b.. if empty)
    _memo: dict = field(default_factory=dict, init=False, compare=False, repr=False)

    def eps_multiple(self, quantity: str, parameter: str,
                     frameworks: tuple[str, ...] = ()) -> float:
        """K for one check; ``frameworks`` are the two sides (they decide Adam's A term)."""
        reduced = self._reduced(frameworks)
        bias = self.bias_correction_eps if reduced else 0.0
        base = SUM_SAFETY * math.sqrt(self.n_eff)
        if quantity == "loss":
            return float(base + self._conditioned("loss")
                         + CONDITIONING_SAFETY * self.conditioning.get("loss terms", 0.0))
        if quantity in ("gradient", "delta"):
            return float(base * math.sqrt(self.kappa[self._layer(parameter)])
                         + self._conditioned(parameter))
        if quantity.startswith("params@"):
            return self._params(int(quantity.split("@")[1]), parameter, bias)
        if quantity.startswith("state@"):
            step = int(quantity.split("@")[1])
            stored = self.stored_bias_eps if reduced and parameter.startswith(
                "max_second_moment/") else 0.0
            rounding = STEP_SAFETY * max(
                self.state_rounding.get(step, {}).get(parameter, 0.0), 1.0)
            # a running statistic is computed in the pass, not from the gradients: its own
            # Gamma and Rho (a batch mean that cancels); zero for optimizer slots
            return (self._params(step, parameter, bias) + stored + rounding
                    + self._conditioned(parameter))
        if quantity == "losses":
            steps = self.steps
            by_gradient, by_update, amplified = self.loss_sensitivity
            gradient = base * math.sqrt(max(self.kappa.values())) + max(
                (self._conditioned(name) for name in self.conditioning
                 if (name in self.parameters if self.parameters else name[0] in "Wb")),
                default=0.0)
            largest_step = max((v for by_name in self.step_size.values()
                                for v in by_name.values()), default=0.0)
            return float(base + self._conditioned("loss")
                         + CONDITIONING_SAFETY * self.conditioning.get("loss terms", 0.0)
                         + max(gradient * by_gradient, NONLINEAR_SAFETY * amplified)
                         + bias * by_update
                         + BRANCH_SAFETY * self.branched_loss
                         + STEP_SAFETY * math.sqrt(steps) * max(1.0, largest_step))
        raise ValueError(f"quantity: invalid value {quantity!r}; allowed: loss, gradient, "
                         "delta, params@<step>, state@<step>, losses")

    def _params(self, step: int, parameter: str, bias: float) -> float:
        name = parameter.rsplit("/", 1)[-1]  # "W2" or a state slot "first_moment/W2"
        base = SUM_SAFETY * math.sqrt(self.n_eff)
        gradient = base * math.sqrt(self.kappa[self._layer(name)]) + self._conditioned(name)
        # two estimates of how gradient rounding reaches the parameters; the larger counts
        propagated = max(gradient * self.sensitivity.get(step, {}).get(parameter, 0.0),
                         NONLINEAR_SAFETY * self.componentwise.get(step, {}).get(parameter, 0.0))
        return float(propagated
                     + bias * self.moved.get(step, {}).get(parameter, 0.0)
                     + BRANCH_SAFETY * self.branched.get(step, {}).get(parameter, 0.0)
                     + STEP_SAFETY * math.sqrt(step)
                     * max(1.0, self.step_size.get(step, {}).get(parameter, 0.0)))

    def _layer(self, name: str) -> int:
        """The layer a parameter, signal or running statistic belongs to (kappa's key)."""
        if name in self.layer_of:
            return self.layer_of[name]
        if name[1:].isdigit():  # an MLP's W2, b2, z2
            return int(name[1:])
        raise ValueError(f"parameter: invalid value {name!r}; allowed: "
                         f"{', '.join(self.layer_of) or 'W<l>, b<l>, z<l>'}")

    def _conditioned(self, name: str) -> float:
        """The conditioning terms of one quantity: Gamma and Rho, each times its safety."""
        return (CONDITIONING_SAFETY * self.conditioning.get(name, 0.0)
                + REFERENCE_ROUNDING_SAFETY * self.rounding.get(name, 0.0))

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
