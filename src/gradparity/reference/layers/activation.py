"""Every registered activation as a layer: ``a = f(z)``, ``dL/dz = dL/da * f'(z)``.

The formulas, derivatives and kink conventions are the activations'
(:mod:`gradparity.reference.activations`); the layer only applies them elementwise,
keeping z and a in its cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradparity.reference.activations import ACTIVATIONS, Activation
from gradparity.reference.layers.base import Layer, Setting, positive_number


def _non_negative(value: Any) -> bool:
    return positive_number(value) or value == 0


class ActivationLayer(Layer):
    """An elementwise activation; ``activation`` names it (registry key). Its cache is
    ``(z, a, f, rounding)``: f bound to the layer's settings and the case's options (a
    catalogued convention such as ``gelu_cdf_form``), and the probe's rounding of f's
    own intermediate, or None."""

    activation: str = "identity"
    ROUNDS_INSIDE = True  # its output, which its backward reads (1 - a^2 of tanh)
    READS_OPTIONS = True

    def _function(self, options: Mapping[str, Any] | None = None) -> Activation:
        return ACTIVATIONS[self.activation].bound({**(options or {}), **self.settings})

    def forward(self, params, x, training=True, state=None, rounding=None, options=None):
        function = self._function(options)
        if rounding is None:
            a = function.forward(x)
            return a, (x, a, function, None)
        # as in an MLP (reference.network.forward): the output and, for an activation
        # with a cancelling intermediate of its own, that one too, in both directions
        inside = rounding if function.rounds_inside else None
        a = rounding(function.forward(x, rounding=inside) if inside else function.forward(x))
        return a, (x, a, function, inside)

    def backward(self, params, cache, dy):
        z, a, function, inside = cache
        if inside is not None:
            return dy * function.derivative(z, a, rounding=inside), {}
        return dy * function.derivative(z, a), {}


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
