"""The reference in plug-in form: ``gradients(params, x, y, case)`` and ``step(...)``.

``Textbook`` spells backprop out as small overridable steps (loss gradient,
activation derivative, weight and bias gradients, propagation to the layer
below, the optimizer update). ``gradparity check gradparity.textbook:gradients``
must pass; each entry of the mutation catalogue (:mod:`gradparity.mutants`)
overrides exactly one step with a bug people really write.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.reference.schedules import step_hyperparameters


class Textbook:
    """Forward with cached activations, backward by the chain rule, one optimizer step."""

    # -- forward ------------------------------------------------------------

    def forward(self, params: dict, x: np.ndarray, case: Any) -> tuple[list, list]:
        """Return ``(inputs, pre_activations)`` per layer and the output as ``inputs[-1]``."""
        inputs, pre_activations = [x], []
        for layer, name in enumerate(case.activations, start=1):
            z = inputs[-1] @ params[f"W{layer}"] + params[f"b{layer}"]
            pre_activations.append(z)
            inputs.append(ACTIVATIONS[name].bound(case.all_options).forward(z))
        return inputs, pre_activations

    # -- the pieces of backward ---------------------------------------------------

    def loss_value(self, output: np.ndarray, y: np.ndarray, case: Any) -> float:
        """The scalar loss."""
        return float(LOSSES[case.loss].bound(case.all_options).value(output, y))

    def loss_gradient(self, output: np.ndarray, y: np.ndarray, case: Any) -> np.ndarray:
        """dL/d(output)."""
        return LOSSES[case.loss].bound(case.all_options).gradient(output, y)

    def activation_derivative(
        self, layer: int, z: np.ndarray, a: np.ndarray, case: Any
    ) -> np.ndarray:
        """f_l'(z_l) for layer ``layer`` (1-based; the last is the output activation)."""
        activation = ACTIVATIONS[case.activations[layer - 1]].bound(case.all_options)
        return activation.derivative(z, a)

    def weight_gradient(self, a_prev: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """dL/dW_l = a_{l-1}^T delta_l, shaped (fan_in, fan_out)."""
        return a_prev.T @ delta

    def bias_gradient(self, delta: np.ndarray) -> np.ndarray:
        """dL/db_l = sum of delta_l over the batch."""
        return delta.sum(axis=0)

    def propagate(self, delta: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """dL/da_{l-1} = delta_l W_l^T."""
        return delta @ weight.T

    def weight_for_propagation(
        self, weight: np.ndarray, weight_gradient: np.ndarray, case: Any
    ) -> np.ndarray:
        """The W_l that sends the error to layer l-1: the one the forward pass used."""
        return weight

    # -- the contract ---------------------------------------------------------------

    def gradients(self, params: dict, x: np.ndarray, y: np.ndarray, case: Any) -> tuple:
        inputs, pre_activations = self.forward(params, x, case)
        loss = self.loss_value(inputs[-1], y, case)
        grads: dict[str, np.ndarray] = {}
        grad_output = self.loss_gradient(inputs[-1], y, case)
        for layer in range(len(case.activations), 0, -1):
            delta = grad_output * self.activation_derivative(
                layer, pre_activations[layer - 1], inputs[layer], case
            )
            grads[f"W{layer}"] = self.weight_gradient(inputs[layer - 1], delta)
            grads[f"b{layer}"] = self.bias_gradient(delta)
            weight = self.weight_for_propagation(params[f"W{layer}"], grads[f"W{layer}"], case)
            grad_output = self.propagate(delta, weight)
        return loss, grads

    def step(self, params: dict, grads: dict, state: Any, case: Any) -> tuple[dict, Any]:
        """One update with the case's optimizer; ``state`` is None on the first call.

        The state counts completed steps, which sets the scheduled learning rate."""
        optimizer = OPTIMIZERS[case.optimizer]
        if state is None:
            state = optimizer.init(params)
        hp = step_hyperparameters(case.hparams, case.all_options, state.step, case.steps)
        return optimizer.update(params, grads, state, hp)


_TEXTBOOK = Textbook()


def gradients(params: dict, x: np.ndarray, y: np.ndarray, case: Any) -> tuple:
    """The plug-in contract, implemented by the textbook."""
    return _TEXTBOOK.gradients(params, x, y, case)


def step(params: dict, grads: dict, state: Any, case: Any) -> tuple[dict, Any]:
    """The optional update contract, implemented by the textbook."""
    return _TEXTBOOK.step(params, grads, state, case)
