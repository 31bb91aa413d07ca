"""Every registered activation as a layer: ``a = f(z)``, ``dL/dz = dL/da * f'(z)``.

The formulas, derivatives and kink conventions are the activations'
(:mod:`gradparity.reference.activations`); the layer only applies them elementwise,
keeping z and a in its cache.
"""

from __future__ import annotations

from typing import Any

from gradparity.reference.activations import ACTIVATIONS, Activation
from gradparity.reference.layers.base import Layer, Setting, positive_number


def _non_negative(value: Any) -> bool:
    return positive_number(value) or value == 0


class ActivationLayer(Layer):
    """An elementwise activation; ``activation`` names it (registry key)."""

    activation: str = "identity"

    def _function(self) -> Activation:
        return ACTIVATIONS[self.activation].bound(self.settings)

    def forward(self, params, x, training=True, state=None):
        a = self._function().forward(x)
        return a, (x, a)

    def backward(self, params, cache, dy):
        z, a = cache
        return dy * self._function().derivative(z, a), {}


PARAMETER_SETTINGS = {
    "negative_slope": Setting(0.01, "a number >= 0", _non_negative),
    "elu_alpha": Setting(1.0, "a number > 0", positive_number),
}


def activation_layer(name: str) -> type[ActivationLayer]:
    """The layer class of activation ``name``, with its parameter as a setting."""
    parameter = ACTIVATIONS[name].parameter
    settings = {parameter: PARAMETER_SETTINGS[parameter]} if parameter else {}
    return type(f"{name.title().replace('_', '')}Layer", (ActivationLayer,),
                {"kind": name, "activation": name, "SETTINGS": settings,
                 "__doc__": f"The {name} activation as a layer."})
