"""The mutation catalogue: realistic buggy backprop implementations.

Each mutant is the textbook implementation (:mod:`gradparity.check.textbook`) with
bugs from the one bug catalogue (:mod:`gradparity.check.bugs`) applied: bugs that
people really write. Every one of them must be caught by the default checks of
``gradparity check`` with a diagnosis of the ``expected_kind`` that names the
parameter or layer in ``expected_names``. Run one yourself:
``gradparity check gradparity.check.mutants:mse_missing_mean`` (each mutant is
exported as a module attribute with ``gradients`` and ``step`` methods).
"""

from __future__ import annotations

from dataclasses import dataclass

from gradparity.check import bugs, layer_bugs
from gradparity.check.plugin import Plugin
from gradparity.check.textbook import Textbook


@dataclass(frozen=True)
class Mutant:
    name: str
    description: str
    implementation: Textbook
    expected_kind: str
    expected_names: tuple[str, ...]  # a finding must mention one of these (all: compound)
    compound: bool = False

    def plugin(self) -> Plugin:
        spec = f"gradparity.check.mutants:{self.name}"
        return Plugin(spec, self.implementation.gradients, self.implementation.step, spec)


def _with(*backward: bugs.Bug, update: bugs.UpdateBug | None = None) -> Textbook:
    return Textbook(backward, update)


CATALOGUE: tuple[Mutant, ...] = (
    Mutant("missing_output_derivative",
           "output delta without the output activation's derivative",
           _with(bugs.MissingDerivative(layer=-1)), "missing_derivative", ("output activation",)),
    Mutant("missing_first_layer_derivative",
           "hidden delta of layer 1 without its activation derivative",
           _with(bugs.MissingDerivative(layer=1)), "missing_derivative", ("layer 1",)),
    Mutant("missing_second_layer_derivative",
           "hidden delta of layer 2 without its activation derivative",
           _with(bugs.MissingDerivative(layer=2)), "missing_derivative", ("layer 2",)),
    Mutant("sigmoid_prime_of_activation",
           "sigmoid'(a) computed as s(a)(1-s(a)) instead of a(1-a)",
           _with(bugs.DerivativeAtActivation(activation="sigmoid")),
           "derivative_at_activation", ("evaluated at",)),
    Mutant("tanh_prime_from_z", "tanh' written 1 - z**2 instead of 1 - a**2",
           _with(bugs.DerivativeFedZ(activation="tanh")),
           "derivative_fed_z", ("fed the pre-activation",)),
    Mutant("mse_missing_mean", "mse gradient 2(y_hat - y) without the 1/n",
           _with(bugs.ScaledLossGradient("mse", "n")), "factor",
           ("the 1/n of the mean dropped",)),
    Mutant("mse_missing_two", "mse gradient (y_hat - y)/n without the 2",
           _with(bugs.ScaledLossGradient("mse", "half")), "factor", ("1/2",)),
    Mutant("mse_sign_flipped", "mse gradient written (y - y_hat)",
           _with(bugs.ScaledLossGradient("mse", "minus")), "sign", ("wrong sign",)),
    Mutant("cross_entropy_summed", "cross-entropy gradient not divided by the batch size",
           _with(bugs.ScaledLossGradient("softmax_cross_entropy", "batch")), "factor",
           ("batch size",)),
    Mutant("cross_entropy_without_onehot",
           "softmax gradient without subtracting the one-hot labels",
           _with(bugs.SoftmaxWithoutOneHot()), "differs", ("W3",)),
    Mutant("bce_missing_mean", "BCE-with-logits gradient sigmoid(z) - y without the 1/n",
           _with(bugs.ScaledLossGradient("binary_cross_entropy_with_logits", "n")), "factor",
           ("the 1/n of the mean dropped",)),
    Mutant("loss_summed", "the returned loss is summed over the batch, not averaged",
           _with(bugs.LossSummed()), "loss", ("loss",)),
    Mutant("weight_gradient_transposed", "dW = delta^T a instead of a^T delta",
           _with(bugs.WeightGradientTransposed()), "transposed", ("transposed",)),
    Mutant("weight_gradient_averaged", "dW divided by the batch size (the loss already is)",
           _with(bugs.WeightGradientAveraged()), "factor", ("1/8",)),
    Mutant("bias_wrong_axis", "db summed over the feature axis instead of the batch",
           _with(bugs.BiasWrongAxis()), "wrong_axis", ("wrong axis",)),
    Mutant("bias_mean", "db averaged over the batch instead of summed",
           _with(bugs.BiasMean()), "factor", ("1/8",)),
    Mutant("bias_forgotten", "no bias gradient at all (zeros)",
           _with(bugs.BiasForgotten()), "zero", ("all zeros",)),
    Mutant("propagate_without_transpose", "delta @ W instead of delta @ W.T (square layers)",
           _with(bugs.NoTranspose()), "missing_transpose", ("delta @ W",)),
    Mutant("update_before_backward", "weights stepped before the error is propagated below them",
           _with(bugs.UpdatedTooEarly()), "updated_too_early", ("already updated",)),
    Mutant("reinitialised_weights", "fresh random weights drawn inside gradients()",
           _with(bugs.ReinitialisedWeights()), "ignores_params", ("ignores the params",)),
    Mutant("gradient_ascent", "theta + lr * g",
           _with(update=bugs.GRADIENT_ASCENT), "sign", ("wrong sign",)),
    Mutant("learning_rate_twice", "theta - lr * lr * g",
           _with(update=bugs.LEARNING_RATE_TWICE), "factor", ("learning rate",)),
    Mutant("optimizer_state_not_carried", "momentum / Adam moments rebuilt on every call",
           _with(update=bugs.STATE_RESET), "state_reset", ("not carried",)),
    Mutant("nesterov_ignored", "plain momentum where Nesterov was asked for",
           _with(update=bugs.nesterov_toggled(False)), "nesterov_toggled", ("Nesterov",)),
    Mutant("adam_without_bias_correction", "Adam with m and v not bias-corrected",
           _with(update=bugs.NO_BIAS_CORRECTION), "no_bias_correction", ("bias correction",)),
    Mutant("adam_eps_inside_sqrt", "Adam with sqrt(v_hat + eps)",
           _with(update=bugs.EPS_INSIDE_SQRT), "eps_inside_sqrt", ("inside the square root",)),
    Mutant("adamw_coupled_decay", "AdamW's weight decay added to the gradient (coupled)",
           _with(update=bugs.COUPLED_DECAY), "weight_decay_mode", ("weight decay",)),
    Mutant("weight_decay_wrong_sign", "weight decay with a flipped sign",
           _with(update=bugs.WEIGHT_DECAY_SIGN), "weight_decay_sign", ("weight decay",)),
    # the shapes the diagnosis learned later: wrong formulas, a square transpose, updates
    Mutant("tanh_prime_as_one_minus_a", "tanh' written 1 - a instead of 1 - a^2",
           _with(bugs.WrongDerivative(activation="tanh")), "wrong_derivative", ("1 - a",)),
    Mutant("sigmoid_prime_as_s", "sigmoid' written s instead of s (1 - s)",
           _with(bugs.WrongDerivative(activation="sigmoid")), "wrong_derivative",
           ("s instead of s (1 - s)",)),
    Mutant("square_weight_gradient_transposed",
           "dW = delta^T a where W is square (no shape error to show it)",
           _with(bugs.WeightGradientTransposed(square_only=True)), "transposed",
           ("transpose of the correct",)),
    Mutant("adam_bias_correction_without_power", "Adam's m / (1 - beta1) instead of "
           "m / (1 - beta1^t) (and the same for v)",
           _with(update=bugs.ADAM_BIAS_CORRECTION_WITHOUT_POWER),
           "bias_correction_without_power", ("without the power t",)),
    Mutant("momentum_as_moving_average", "SGD momentum written b = m b + (1 - m) g",
           _with(update=bugs.MOMENTUM_AS_EMA), "momentum_as_ema", ("moving average",)),
    # several bugs at once: the diagnosis names the set
    Mutant("xor_blog_three_mistakes", "no output derivative, no hidden derivative and the "
           "2/n of the mse gradient dropped (the seed tutorial's code)",
           _with(bugs.MissingDerivative(layer=-1), bugs.MissingDerivative(layer=1),
                 bugs.ScaledLossGradient("mse", "n_over_2")),
           "compound", ("output activation", "layer 1", "2/n"), compound=True),
    Mutant("missing_derivative_layers_1_and_2", "no activation derivative in layers 1 and 2",
           _with(bugs.MissingDerivative(layer=1), bugs.MissingDerivative(layer=2)),
           "compound", ("layers 1 and 2",), compound=True),
    Mutant("output_derivative_and_bias_mean", "no output derivative, and db averaged",
           _with(bugs.MissingDerivative(layer=-1), bugs.BiasMean()),
           "compound", ("output activation", "db averaged"), compound=True),
    Mutant("tanh_from_z_and_missing_mean", "tanh' from z and the mse gradient without 1/n",
           _with(bugs.DerivativeFedZ(activation="tanh"), bugs.ScaledLossGradient("mse", "n")),
           "compound", ("fed the pre-activation", "1/n of the mean"), compound=True),
    Mutant("summed_cross_entropy_and_missing_first_derivative",
           "cross-entropy gradient not divided by the batch, no derivative in layer 1",
           _with(bugs.ScaledLossGradient("softmax_cross_entropy", "batch"),
                 bugs.MissingDerivative(layer=1)),
           "compound", ("batch size", "(layer 1)"), compound=True),
    Mutant("sigmoid_at_activation_and_missing_two",
           "sigmoid' evaluated at a, and the mse gradient without its 2",
           _with(bugs.DerivativeAtActivation(activation="sigmoid"),
                 bugs.ScaledLossGradient("mse", "half")),
           "compound", ("evaluated at the activation", "the 2 of d/dx"), compound=True),
    Mutant("wrong_tanh_formula_and_no_transpose", "tanh' as 1 - a, and delta @ W",
           _with(bugs.WrongDerivative(activation="tanh"), bugs.NoTranspose()),
           "compound", ("1 - a instead", "delta @ W instead"), compound=True),
    Mutant("missing_second_derivative_and_early_update",
           "no derivative in layer 2, and weights stepped before backprop finished",
           _with(bugs.MissingDerivative(layer=2), bugs.UpdatedTooEarly()),
           "compound", ("(layer 2)", "already updated"), compound=True),
    Mutant("weight_averaged_and_missing_output_derivative",
           "dW divided by the batch, and no output derivative",
           _with(bugs.WeightGradientAveraged(), bugs.MissingDerivative(layer=-1)),
           "compound", ("dW divided by the batch", "output activation"), compound=True),
    # the layers beyond the MLP (gradparity.check.layer_bugs): caught on the architecture
    # cases of the default matrix (cnn, cnn-bn, mlp-bn, resmlp-ln, transformer)
    *(Mutant(bug.kind, bug.text, _with(bug), bug.kind, (bug.text[:32],))
      for bug in layer_bugs.LAYER_BUGS),
    Mutant("flipped_kernel_and_pool_everywhere", "the conv input gradient with the flipped "
           "kernel, and max pooling's gradient sent to every window element",
           _with(layer_bugs.BY_KIND["conv_kernel_flipped"],
                 layer_bugs.BY_KIND["max_pool_every_element"]),
           "compound", ("flipped kernel", "every element of the window"), compound=True),
    Mutant("attention_unscaled_and_embedding_overwritten", "attention backward without "
           "1/sqrt(d), and embedding gradients assigned instead of accumulated",
           _with(layer_bugs.BY_KIND["attention_scale_missing"],
                 layer_bugs.BY_KIND["embedding_overwritten"]),
           "compound", ("1/sqrt(d)", "assigned, not accumulated"), compound=True),
)
"""Every mutant; tests and ``gradparity mutants`` read it."""

BY_NAME: dict[str, Mutant] = {mutant.name: mutant for mutant in CATALOGUE}

# each mutant as a module attribute (an object with gradients and step), so that
# `gradparity check gradparity.check.mutants:<name>` works
globals().update({mutant.name: mutant.implementation for mutant in CATALOGUE})
