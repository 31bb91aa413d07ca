"""The one catalogue of known backprop bugs: the shapes that both the mutants and the
diagnosis are built from.

A :class:`Bug` changes one or more steps of the textbook (the reference's
:class:`~gradparity.reference.network.Backprop`, driven by
:class:`~gradparity.check.textbook.Textbook`). Each hook receives the value the
textbook computed and returns the buggy one, so bugs compose: a textbook with several
bugs applies each in turn. An :class:`UpdateBug` replaces the optimizer step instead.

* :mod:`gradparity.check.mutants` builds its catalogue of buggy implementations from
  these shapes (one bug each, or several at once);
* :mod:`gradparity.check.diagnosis` evaluates the shapes that apply to a case as
  hypotheses and names the one (or the set) that reproduces a wrong gradient.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradparity.reference import ACTIVATIONS, OPTIMIZERS
from gradparity.reference.network import ForwardCache
from gradparity.reference.optimizers import Optimizer

Case = Any  # a gradparity.spec.case.Case (or the duck-typed case of a reproduction)


class Bug:
    """One known mistake in the backward pass. Subclasses override the hooks they break.

    ``kind`` is the diagnosis's name for the shape; :meth:`describe` says it in words
    for a case; :meth:`applies` says whether the case can show it; :meth:`bind` fixes
    what the bug reads from the case (a learning rate, the output layer's index).
    """

    kind: str = "bug"

    def describe(self, case: Case) -> str:
        return self.kind

    def applies(self, case: Case) -> bool:
        return True

    def bind(self, case: Case) -> Bug:
        return self

    # -- hooks: the textbook's value in, the buggy value out ---------------------------

    def params_seen(self, params: Mapping[str, np.ndarray], case: Case) -> Mapping:
        return params

    def loss_value(self, value: float, cache: ForwardCache) -> float:
        return value

    def output_gradient(self, value: np.ndarray, cache: ForwardCache) -> np.ndarray:
        return value

    def activation_derivative(self, value: np.ndarray, layer: int,
                              cache: ForwardCache) -> np.ndarray:
        return value

    def weight_gradient(self, value: np.ndarray, a_prev: np.ndarray,
                        delta: np.ndarray) -> np.ndarray:
        return value

    def bias_gradient(self, value: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return value

    def weight_for_propagation(self, value: np.ndarray, layer: int, weight_gradient: np.ndarray,
                               cache: ForwardCache) -> np.ndarray:
        return value

    def propagate(self, value: np.ndarray, delta: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return value


def _layer_name(layer: int, case: Case) -> str:
    last = len(case.activations)
    return "the output activation" if layer == last else f"hidden layer {layer}"


@dataclass(frozen=True)
class LayerBug(Bug):
    """A bug in the activation derivative of one layer (``layer``, 1-based; negative
    counts from the output, -1 being the output layer) or of every layer whose
    activation is ``activation`` (``layer=None``)."""

    layer: int | None = None
    activation: str | None = None

    def _hits(self, layer: int, cache: ForwardCache) -> bool:
        if self.layer is not None:
            wanted = self.layer if self.layer > 0 else cache.num_layers + 1 + self.layer
            return layer == wanted
        return cache.activation_names[layer - 1] == self.activation

    def applies(self, case: Case) -> bool:
        if self.layer is None:
            return self.activation in case.activations
        return abs(self.layer) <= len(case.activations)

    def _where(self, case: Case) -> tuple[str, str]:
        """(activation name, "layer k") for the description."""
        if self.layer is None:
            return str(self.activation), f"every {self.activation} layer"
        layer = self.layer if self.layer > 0 else len(case.activations) + 1 + self.layer
        return case.activations[layer - 1], f"layer {layer}"


@dataclass(frozen=True)
class MissingDerivative(LayerBug):
    """delta = dL/da without the activation derivative."""

    kind: str = "missing_derivative"

    def describe(self, case: Case) -> str:
        name, where = self._where(case)
        if self.layer is None:
            return f"missing the {name} derivative of {where}"
        layer = int(where.split()[-1])
        return f"missing the {name} derivative of {_layer_name(layer, case)} ({where})"

    def activation_derivative(self, value, layer, cache):
        return np.ones_like(value) if self._hits(layer, cache) else value


@dataclass(frozen=True)
class DerivativeAtActivation(LayerBug):
    """f'(a) where f'(z) was meant: the derivative evaluated at the activation."""

    kind: str = "derivative_at_activation"

    def describe(self, case: Case) -> str:
        name, where = self._where(case)
        return (f"the {name} derivative of {where} is evaluated at the activation a "
                f"instead of the pre-activation z (f'(a) instead of f'(z))")

    def activation_derivative(self, value, layer, cache):
        if not self._hits(layer, cache):
            return value
        activation = ACTIVATIONS[cache.activation_names[layer - 1]].bound(cache.options)
        a = cache.activations[layer - 1]
        return activation.derivative(a, activation.forward(a))


@dataclass(frozen=True)
class DerivativeFedZ(LayerBug):
    """A derivative written in terms of the output (a(1-a), 1-a^2) fed z instead of a."""

    kind: str = "derivative_fed_z"

    def describe(self, case: Case) -> str:
        name, where = self._where(case)
        return (f"the {name} derivative of {where}, written in terms of the output "
                f"(a(1-a) or 1-a^2), is fed the pre-activation z instead of a")

    def activation_derivative(self, value, layer, cache):
        if not self._hits(layer, cache):
            return value
        activation = ACTIVATIONS[cache.activation_names[layer - 1]].bound(cache.options)
        z = cache.pre_activations[layer - 1]
        return activation.derivative(z, z)


WRONG_DERIVATIVES: dict[str, tuple[str, Callable[..., np.ndarray]]] = {
    "tanh": ("1 - a instead of 1 - a^2", lambda z, a: 1 - a),
    "sigmoid": ("s instead of s (1 - s)", lambda z, a: a),
    "relu": ("z instead of the step (z > 0)", lambda z, a: z),
    "gelu": ("the derivative of the tanh approximation instead of the exact GELU's",
             lambda z, a: ACTIVATIONS["gelu_tanh"].derivative(z, a)),
    "gelu_tanh": ("the derivative of the exact GELU instead of the tanh approximation's",
                  lambda z, a: ACTIVATIONS["gelu"].derivative(z, a)),
}
"""Derivative formulas people write wrong, per activation: (what, the wrong formula)."""


@dataclass(frozen=True)
class WrongDerivative(LayerBug):
    """A wrong formula for the activation derivative (:data:`WRONG_DERIVATIVES`)."""

    kind: str = "wrong_derivative"

    def applies(self, case: Case) -> bool:
        if not super().applies(case):
            return False
        name, _ = self._where(case)
        return name in WRONG_DERIVATIVES

    def describe(self, case: Case) -> str:
        name, where = self._where(case)
        return f"the {name} derivative of {where} is written {WRONG_DERIVATIVES[name][0]}"

    def activation_derivative(self, value, layer, cache):
        if not self._hits(layer, cache):
            return value
        name = cache.activation_names[layer - 1]
        formula = WRONG_DERIVATIVES[name][1]
        return formula(cache.pre_activations[layer - 1],
                       cache.activations[layer - 1]).astype(value.dtype)


@dataclass(frozen=True)
class NoTranspose(Bug):
    """delta @ W instead of delta @ W.T: it only runs where W is square, which is
    exactly where it hides."""

    kind: str = "missing_transpose"

    def describe(self, case: Case) -> str:
        return "propagates with delta @ W instead of delta @ W.T"

    def applies(self, case: Case) -> bool:
        hidden = case.layer_sizes[1:-1]
        return any(m == n for m, n in itertools.pairwise(hidden))

    def propagate(self, value, delta, weight):
        return delta @ weight if weight.shape[0] == weight.shape[1] else value


@dataclass(frozen=True)
class UpdatedTooEarly(Bug):
    """A fused backward-and-update: each layer's SGD step is applied before the error
    is propagated through it."""

    lr: float = 0.0
    kind: str = "updated_too_early"

    def describe(self, case: Case) -> str:
        return ("uses weights already updated by this step when propagating to the layer "
                "below (parameters updated before every gradient was computed)")

    def bind(self, case: Case) -> Bug:
        return replace(self, lr=case.hparams.get("lr", 0.0))

    def weight_for_propagation(self, value, layer, weight_gradient, cache):
        return value - self.lr * weight_gradient


LOSS_GRADIENT_FACTORS: dict[str, tuple[str, Callable[[np.ndarray], float]]] = {
    "n": ("without the 1/n of the mean", lambda output: output.size),
    "n_over_2": ("without the 2/n of the mean", lambda output: output.size / 2),
    "half": ("without the 2 of d/dx x^2", lambda output: 0.5),
    "two": ("with an extra factor 2", lambda output: 2.0),
    "batch": ("not divided by the batch size", lambda output: output.shape[0]),
    "minus": ("with its sign flipped", lambda output: -1.0),
}
"""Factors by which people get dL/dy_hat wrong: (what, the factor for an output)."""


@dataclass(frozen=True)
class ScaledLossGradient(Bug):
    """dL/dy_hat multiplied by a factor of the shapes (:data:`LOSS_GRADIENT_FACTORS`), for
    ``loss`` only, or for any loss (``loss=None``)."""

    loss: str | None = "mse"
    factor: str = "n"
    kind: str = "factor"

    def applies(self, case: Case) -> bool:
        return self.loss is None or case.loss == self.loss

    def describe(self, case: Case) -> str:
        return f"the loss gradient {LOSS_GRADIENT_FACTORS[self.factor][0]}"

    def output_gradient(self, value, cache):
        return value * LOSS_GRADIENT_FACTORS[self.factor][1](cache.output)


@dataclass(frozen=True)
class SoftmaxWithoutOneHot(Bug):
    """softmax(z) / B: the '- onehot(y)' of the cross-entropy gradient forgotten."""

    kind: str = "differs"

    def applies(self, case: Case) -> bool:
        return case.loss == "softmax_cross_entropy"

    def output_gradient(self, value, cache):
        output = cache.output
        shifted = np.exp(output - output.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True) / output.shape[0]


@dataclass(frozen=True)
class LossSummed(Bug):
    """The reported loss is the sum over the batch, not the mean (the gradient is right)."""

    kind: str = "loss"

    def loss_value(self, value, cache):
        return value * cache.output.shape[0]


@dataclass(frozen=True)
class WeightGradientTransposed(Bug):
    """dW = delta^T a instead of a^T delta (``square_only``: only where W is square, so
    no shape error shows it)."""

    square_only: bool = False
    kind: str = "transposed"

    def describe(self, case: Case) -> str:
        return "dW transposed (delta^T a instead of a^T delta)"

    def weight_gradient(self, value, a_prev, delta):
        if self.square_only and a_prev.shape[-1] != delta.shape[-1]:
            return value
        return delta.T @ a_prev


@dataclass(frozen=True)
class WeightGradientAveraged(Bug):
    """dW divided by the batch size (the loss already is a mean)."""

    kind: str = "factor"

    def describe(self, case: Case) -> str:
        return "dW divided by the batch size (the loss already is a mean)"

    def weight_gradient(self, value, a_prev, delta):
        return a_prev.T @ delta / a_prev.shape[0]


@dataclass(frozen=True)
class BiasWrongAxis(Bug):
    """db summed over the feature axis instead of the batch."""

    kind: str = "wrong_axis"

    def bias_gradient(self, value, delta):
        return delta.sum(axis=1)


@dataclass(frozen=True)
class BiasMean(Bug):
    """db averaged over the batch instead of summed."""

    kind: str = "factor"

    def describe(self, case: Case) -> str:
        return "db averaged over the batch instead of summed"

    def bias_gradient(self, value, delta):
        return delta.mean(axis=0)


@dataclass(frozen=True)
class BiasForgotten(Bug):
    """No bias gradient at all (zeros)."""

    kind: str = "zero"

    def bias_gradient(self, value, delta):
        return np.zeros(delta.shape[1], dtype=delta.dtype)


@dataclass(frozen=True)
class ReinitialisedWeights(Bug):
    """Ignores the params argument and draws fresh weights on every call."""

    kind: str = "ignores_params"

    def params_seen(self, params, case):
        rng = np.random.default_rng(1)
        return {name: rng.standard_normal(value.shape).astype(value.dtype)
                for name, value in params.items()}


def gradient_hypotheses(case: Case) -> list[Bug]:
    """Every single-layer bug shape that can show in ``case``: the diagnosis's hypotheses
    for a wrong gradient."""
    hypotheses: list[Bug] = []
    for layer, name in enumerate(case.activations, start=1):
        if name == "identity":
            continue
        hypotheses.append(MissingDerivative(layer=layer))
        if name in ("sigmoid", "tanh"):
            hypotheses.append(DerivativeFedZ(layer=layer))
        if name != "relu":
            hypotheses.append(DerivativeAtActivation(layer=layer))
        if name in WRONG_DERIVATIVES:
            hypotheses.append(WrongDerivative(layer=layer))
    hypotheses += [bug for bug in (NoTranspose(), UpdatedTooEarly()) if bug.applies(case)]
    return hypotheses


def compound_candidates(case: Case) -> list[Bug]:
    """The shapes a combination of bugs is built from: the single-layer ones, the loss
    gradient's factors, and the per-parameter factors of dW and db."""
    return [*gradient_hypotheses(case),
            *(ScaledLossGradient(loss=None, factor=factor) for factor in LOSS_GRADIENT_FACTORS),
            BiasMean(), WeightGradientAveraged()]


# -- the update rule ------------------------------------------------------------------

Update = Callable[..., tuple[dict, Any]]


@dataclass(frozen=True)
class UpdateBug:
    """A wrong optimizer step: ``update(optimizer, params, grads, state, hp)`` replaces
    ``optimizer.update``. ``fresh_state``: the step starts from a freshly initialised
    state (nothing carried between steps)."""

    kind: str
    description: str
    step: Callable[[Optimizer, dict, dict, Any, dict], tuple[dict, Any]]
    applies: Callable[[Case], bool] = lambda case: True
    fresh_state: bool = False

    def describe(self, case: Case) -> str:
        return self.description

    def update(self, optimizer: Optimizer, params: dict, grads: dict, state: Any,
               hp: dict) -> tuple[dict, Any]:
        return self.step(optimizer, params, grads, state, hp)


def _plain_sgd(case: Case) -> bool:
    hp = case.hparams
    return case.optimizer == "sgd" and not hp["momentum"] and not hp["weight_decay"]


def _adam_family(case: Case) -> bool:
    return case.optimizer in ("adam", "adamw")


def _correct(optimizer, params, grads, state, hp):
    return optimizer.update(params, grads, state, hp)


def _decay_mode(decoupled: bool):
    """Adam's update with the weight decay coupled or decoupled, whatever the case says."""

    def step(optimizer, params, grads, state, hp):
        return OPTIMIZERS["adam"].update(params, grads, state, hp,
                                         decoupled_weight_decay=decoupled)

    return step


GRADIENT_ASCENT = UpdateBug(
    "sign", "theta + lr * g", lambda o, p, g, s, h: (
        {n: p[n] + h["lr"] * g[n] for n in p}, s), _plain_sgd)
LEARNING_RATE_TWICE = UpdateBug(
    "factor", "theta - lr * lr * g", lambda o, p, g, s, h: (
        {n: p[n] - h["lr"] * h["lr"] * g[n] for n in p}, s), _plain_sgd)
STATE_RESET = UpdateBug(
    "state_reset", "the optimizer state is not carried between steps (reset every call)",
    _correct, fresh_state=True)
NO_BIAS_CORRECTION = UpdateBug(
    "no_bias_correction", "Adam without bias correction (m and v not divided by 1 - beta^t)",
    lambda o, p, g, s, h: o.update(p, g, s, h, bias_correction=False), _adam_family)
EPS_INSIDE_SQRT = UpdateBug(
    "eps_inside_sqrt", "eps inside the square root: sqrt(v_hat + eps) instead of "
    "sqrt(v_hat) + eps", lambda o, p, g, s, h: o.update(p, g, s, h, eps_placement="inside_sqrt"),
    _adam_family)
COUPLED_DECAY = UpdateBug(
    "weight_decay_mode", "weight decay applied coupled (added to the gradient) instead of "
    "decoupled", _decay_mode(False),
    lambda case: case.optimizer == "adamw" and bool(case.hparams["weight_decay"]))
DECOUPLED_DECAY = UpdateBug(
    "weight_decay_mode", "weight decay applied decoupled (AdamW) instead of coupled",
    _decay_mode(True), lambda case: case.optimizer == "adam" and bool(case.hparams["weight_decay"]))
WEIGHT_DECAY_SIGN = UpdateBug(
    "weight_decay_sign", "weight decay with the wrong sign (weights grow)",
    lambda o, p, g, s, h: o.update(p, g, s, {**h, "weight_decay": -h["weight_decay"]}),
    lambda case: bool(case.hparams.get("weight_decay")))
ADAM_BIAS_CORRECTION_WITHOUT_POWER = UpdateBug(
    "bias_correction_without_power", "Adam's bias correction without the power t: "
    "m / (1 - beta1) and v / (1 - beta2) instead of 1 - beta^t",
    lambda o, p, g, s, h: o.update(p, g, s, h, bias_correction="without_power"), _adam_family)
MOMENTUM_AS_EMA = UpdateBug(
    "momentum_as_ema", "momentum written as a moving average, b = m b + (1 - m) g "
    "(dampening = momentum)",
    lambda o, p, g, s, h: o.update(p, g, s, {**h, "dampening": h["momentum"]}),
    lambda case: (case.optimizer == "sgd" and bool(case.hparams["momentum"])
                  and not case.hparams["dampening"] and not case.hparams["nesterov"]))
MOMENTUM_DAMPENING_SWAPPED = UpdateBug(
    "momentum_dampening_swapped", "momentum and dampening swapped",
    lambda o, p, g, s, h: o.update(p, g, s, {**h, "momentum": h["dampening"],
                                             "dampening": h["momentum"]}),
    lambda case: case.optimizer == "sgd" and bool(case.hparams["dampening"]))
MOMENTUM_IGNORED = UpdateBug(
    "momentum_ignored", "momentum ignored (plain SGD step)",
    lambda o, p, g, s, h: o.update(p, g, s, {**h, "momentum": 0.0, **(
        {"nesterov": False} if "nesterov" in h else {})}),
    lambda case: bool(case.hparams.get("momentum")), fresh_state=True)


def _eps_placement(case: Case) -> UpdateBug:
    placement = "outside" if case.hparams["eps_in_sqrt"] else "inside"
    return UpdateBug(
        "eps_placement", f"eps {placement} the square root",
        lambda o, p, g, s, h: o.update(p, g, s, {**h, "eps_in_sqrt": not h["eps_in_sqrt"]}))


def nesterov_toggled(nesterov: bool | None = None) -> UpdateBug:
    """Nesterov set to ``nesterov`` (None: the opposite of what the case asks for)."""

    def step(optimizer, params, grads, state, hp):
        if nesterov is not None:
            return optimizer.update(params, grads, state, {**hp, "nesterov": nesterov})
        # Nesterov needs dampening 0: the toggled rule drops it
        return optimizer.update(params, grads, state, {**hp, "nesterov": not hp["nesterov"],
                                                       "dampening": 0.0})

    return UpdateBug("nesterov_toggled", "Nesterov momentum missing" if nesterov is False
                     else "Nesterov momentum toggled", step,
                     lambda case: case.optimizer == "sgd")


def update_hypotheses(case: Case) -> list[UpdateBug]:
    """The wrong update rules that can show in ``case``: the diagnosis's hypotheses for
    the first step whose update differs."""
    hp = case.hparams
    variants = [bug for bug in (STATE_RESET, NO_BIAS_CORRECTION,
                                ADAM_BIAS_CORRECTION_WITHOUT_POWER, EPS_INSIDE_SQRT,
                                COUPLED_DECAY, DECOUPLED_DECAY) if bug.applies(case)]
    if "eps_in_sqrt" in hp:
        variants.append(_eps_placement(case))
    variants += [bug for bug in (WEIGHT_DECAY_SIGN, MOMENTUM_IGNORED, MOMENTUM_AS_EMA,
                                 MOMENTUM_DAMPENING_SWAPPED) if bug.applies(case)]
    if hp.get("momentum") and "nesterov" in hp:
        toggled = nesterov_toggled()
        variants.append(replace(toggled, description="Nesterov momentum " + (
            "missing" if hp["nesterov"] else "applied although not asked for")))
    return variants
