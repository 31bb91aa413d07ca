"""The mutation catalogue: realistic buggy backprop implementations.

Each mutant is the textbook implementation (:mod:`gradparity.textbook`) with
one step replaced by a bug that people really write. Every one of them must be
caught by the default checks of ``gradparity check`` with a diagnosis of the
``expected_kind`` that names the parameter or layer in ``expected_names``.
Run one yourself: ``gradparity check gradparity.mutants:missing_mean`` (each
mutant is exported as a module-level contract callable with its own ``step``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.plugin import Plugin
from gradparity.reference import OPTIMIZERS
from gradparity.textbook import Textbook


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    implementation: Textbook
    expected_kind: str
    expected_names: tuple[str, ...]  # a finding must mention one of these

    def plugin(self) -> Plugin:
        spec = f"gradparity.mutants:{self.name}"
        return Plugin(spec, self.implementation.gradients, self.implementation.step, spec)


# -- gradient bugs -----------------------------------------------------------------


class MissingDerivative(Textbook):
    """delta = dL/da without the activation derivative, in one layer (-1: the output)."""

    def __init__(self, layer: int) -> None:
        self.layer = layer

    def activation_derivative(self, layer, z, a, case):
        if layer == (len(case.activations) if self.layer == -1 else self.layer):
            return np.ones_like(z)
        return super().activation_derivative(layer, z, a, case)


class SigmoidPrimeOfActivation(Textbook):
    """sigmoid_prime(a) = sigmoid(a) (1 - sigmoid(a)): the derivative taken at a, not z."""

    def activation_derivative(self, layer, z, a, case):
        if case.activations[layer - 1] == "sigmoid":
            s = 1 / (1 + np.exp(-a))
            return s * (1 - s)
        return super().activation_derivative(layer, z, a, case)


class TanhPrimeFromZ(Textbook):
    """1 - z**2 where 1 - a**2 was meant."""

    def activation_derivative(self, layer, z, a, case):
        if case.activations[layer - 1] == "tanh":
            return 1 - z**2
        return super().activation_derivative(layer, z, a, case)


class ScaledLossGradient(Textbook):
    """dL/dy_hat multiplied by a factor computed from the shapes (a lost 1/n, 2, ...)."""

    def __init__(self, loss: str, factor: str) -> None:
        self.loss, self.factor = loss, factor

    def loss_gradient(self, output, y, case):
        grad = super().loss_gradient(output, y, case)
        if case.loss != self.loss:
            return grad
        return grad * {"n": output.size, "half": 0.5, "batch": output.shape[0],
                       "minus": -1.0}[self.factor]


class SoftmaxWithoutOneHot(Textbook):
    """softmax(z) / B: the '- onehot(y)' of the cross-entropy gradient forgotten."""

    def loss_gradient(self, output, y, case):
        if case.loss != "softmax_cross_entropy":
            return super().loss_gradient(output, y, case)
        shifted = np.exp(output - output.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True) / output.shape[0]


class LossSummed(Textbook):
    """The reported loss is the sum, not the mean (the gradient is right)."""

    def loss_value(self, output, y, case):
        return super().loss_value(output, y, case) * output.shape[0]


class WeightGradientTransposed(Textbook):
    def weight_gradient(self, a_prev, delta):
        return delta.T @ a_prev


class WeightGradientAveraged(Textbook):
    def weight_gradient(self, a_prev, delta):
        return a_prev.T @ delta / a_prev.shape[0]


class BiasWrongAxis(Textbook):
    def bias_gradient(self, delta):
        return delta.sum(axis=1)


class BiasMean(Textbook):
    def bias_gradient(self, delta):
        return delta.mean(axis=0)


class BiasForgotten(Textbook):
    def bias_gradient(self, delta):
        return np.zeros(delta.shape[1], dtype=delta.dtype)


class PropagateWithoutTranspose(Textbook):
    """delta @ W: only runs where W is square, which is exactly where it hides."""

    def propagate(self, delta, weight):
        if weight.shape[0] == weight.shape[1]:
            return delta @ weight
        return delta @ weight.T


class UpdateBeforeBackward(Textbook):
    """Fused backward-and-update: W_l is stepped before the error goes through it."""

    def weight_for_propagation(self, weight, weight_gradient, case):
        return weight - case.hparams["lr"] * weight_gradient


class ReinitialisedWeights(Textbook):
    """Ignores the params argument and draws fresh weights on every call."""

    def gradients(self, params, x, y, case):
        rng = np.random.default_rng(1)
        fresh = {name: rng.standard_normal(value.shape).astype(value.dtype)
                 for name, value in params.items()}
        return super().gradients(fresh, x, y, case)


# -- update bugs ---------------------------------------------------------------------


class GradientAscent(Textbook):
    def step(self, params, grads, state, case):
        if case.optimizer != "sgd" or case.hparams["momentum"] or case.hparams["weight_decay"]:
            return super().step(params, grads, state, case)
        return {n: params[n] + case.hparams["lr"] * grads[n] for n in params}, state


class LearningRateTwice(Textbook):
    def step(self, params, grads, state, case):
        if case.optimizer != "sgd" or case.hparams["momentum"] or case.hparams["weight_decay"]:
            return super().step(params, grads, state, case)
        lr = case.hparams["lr"]
        return {n: params[n] - lr * lr * grads[n] for n in params}, state


class StateNotCarried(Textbook):
    """Builds a fresh optimizer state on every call (momentum/Adam moments forgotten)."""

    def step(self, params, grads, state, case):
        return super().step(params, grads, None, case)


class OptimizerVariant(Textbook):
    """The case's optimizer with one hyperparameter or option changed."""

    def __init__(self, optimizers: tuple[str, ...], change: dict[str, Any],
                 option: dict[str, Any], hp_change: Any = None) -> None:
        self.optimizers, self.change, self.option = optimizers, change, option
        self.hp_change = hp_change

    def step(self, params, grads, state, case):
        if case.optimizer not in self.optimizers:
            return super().step(params, grads, state, case)
        hp = case.hparams
        if self.hp_change is not None:
            hp = self.hp_change(hp)
        optimizer = OPTIMIZERS[self.change.get("optimizer", case.optimizer)]
        if state is None:
            state = optimizer.init(params)
        return optimizer.update(params, grads, state, hp, **self.option)


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("missing_output_derivative", "output delta without the output activation's "
           "derivative", MissingDerivative(-1), "missing_derivative", ("output activation",)),
    Mutant("missing_first_layer_derivative", "hidden delta of layer 1 without its activation "
           "derivative", MissingDerivative(1), "missing_derivative", ("layer 1",)),
    Mutant("missing_second_layer_derivative", "hidden delta of layer 2 without its activation "
           "derivative", MissingDerivative(2), "missing_derivative", ("layer 2",)),
    Mutant("sigmoid_prime_of_activation", "sigmoid'(a) computed as s(a)(1-s(a)) instead of "
           "a(1-a)", SigmoidPrimeOfActivation(), "derivative_at_activation", ("evaluated at",)),
    Mutant("tanh_prime_from_z", "tanh' written 1 - z**2 instead of 1 - a**2", TanhPrimeFromZ(),
           "derivative_fed_z", ("fed the pre-activation",)),
    Mutant("mse_missing_mean", "mse gradient 2(y_hat - y) without the 1/n",
           ScaledLossGradient("mse", "n"), "factor", ("the 1/n of the mean dropped",)),
    Mutant("mse_missing_two", "mse gradient (y_hat - y)/n without the 2",
           ScaledLossGradient("mse", "half"), "factor", ("1/2",)),
    Mutant("mse_sign_flipped", "mse gradient written (y - y_hat)",
           ScaledLossGradient("mse", "minus"), "sign", ("wrong sign",)),
    Mutant("cross_entropy_summed", "cross-entropy gradient not divided by the batch size",
           ScaledLossGradient("softmax_cross_entropy", "batch"), "factor", ("batch size",)),
    Mutant("cross_entropy_without_onehot", "softmax gradient without subtracting the one-hot "
           "labels", SoftmaxWithoutOneHot(), "differs", ("W3",)),
    Mutant("bce_missing_mean", "BCE-with-logits gradient sigmoid(z) - y without the 1/n",
           ScaledLossGradient("binary_cross_entropy_with_logits", "n"), "factor",
           ("the 1/n of the mean dropped",)),
    Mutant("loss_summed", "the returned loss is summed over the batch, not averaged",
           LossSummed(), "loss", ("loss",)),
    Mutant("weight_gradient_transposed", "dW = delta^T a instead of a^T delta",
           WeightGradientTransposed(), "transposed", ("transposed",)),
    Mutant("weight_gradient_averaged", "dW divided by the batch size (the loss already is)",
           WeightGradientAveraged(), "factor", ("1/8",)),
    Mutant("bias_wrong_axis", "db summed over the feature axis instead of the batch",
           BiasWrongAxis(), "wrong_axis", ("wrong axis",)),
    Mutant("bias_mean", "db averaged over the batch instead of summed", BiasMean(), "factor",
           ("1/8",)),
    Mutant("bias_forgotten", "no bias gradient at all (zeros)", BiasForgotten(), "zero",
           ("all zeros",)),
    Mutant("propagate_without_transpose", "delta @ W instead of delta @ W.T (square layers)",
           PropagateWithoutTranspose(), "missing_transpose", ("delta @ W",)),
    Mutant("update_before_backward", "weights stepped before the error is propagated below them",
           UpdateBeforeBackward(), "updated_too_early", ("already updated",)),
    Mutant("reinitialised_weights", "fresh random weights drawn inside gradients()",
           ReinitialisedWeights(), "ignores_params", ("ignores the params",)),
    Mutant("gradient_ascent", "theta + lr * g", GradientAscent(), "sign", ("wrong sign",)),
    Mutant("learning_rate_twice", "theta - lr * lr * g", LearningRateTwice(), "factor",
           ("learning rate",)),
    Mutant("optimizer_state_not_carried", "momentum / Adam moments rebuilt on every call",
           StateNotCarried(), "state_reset", ("not carried",)),
    Mutant("nesterov_ignored", "plain momentum where Nesterov was asked for",
           OptimizerVariant(("sgd",), {}, {}, lambda hp: {**hp, "nesterov": False}),
           "nesterov_toggled", ("Nesterov",)),
    Mutant("adam_without_bias_correction", "Adam with m and v not bias-corrected",
           OptimizerVariant(("adam", "adamw"), {}, {"bias_correction": False}),
           "no_bias_correction", ("bias correction",)),
    Mutant("adam_eps_inside_sqrt", "Adam with sqrt(v_hat + eps)",
           OptimizerVariant(("adam", "adamw"), {}, {"eps_placement": "inside_sqrt"}),
           "eps_inside_sqrt", ("inside the square root",)),
    Mutant("adamw_coupled_decay", "AdamW's weight decay added to the gradient (coupled)",
           OptimizerVariant(("adamw",), {"optimizer": "adam"}, {}), "weight_decay_mode",
           ("weight decay",)),
    Mutant("weight_decay_wrong_sign", "weight decay with a flipped sign",
           OptimizerVariant(("sgd", "adam", "adamw"), {}, {},
                            lambda hp: {**hp, "weight_decay": -hp["weight_decay"]}),
           "weight_decay_sign", ("weight decay",)),
)
"""Every mutant; tests and ``gradparity mutants`` read it."""

BY_NAME: dict[str, Mutant] = {mutant.name: mutant for mutant in CATALOGUE}

# each mutant as a module attribute (an object with gradients and step), so that
# `gradparity check gradparity.mutants:<name>` works
globals().update({mutant.name: mutant.implementation for mutant in CATALOGUE})
