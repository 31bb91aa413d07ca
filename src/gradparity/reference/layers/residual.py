"""A residual block: y = x + f(x) for a stack f of layers (a pre-norm transformer block
is two of them: x + attention(layer_norm(x)), then x + mlp(layer_norm(x))).

    dL/dx = dL/dy + f's backward of dL/dy        (the skip path adds the gradient as is)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from gradparity.reference.layers.base import Layer, Setting, Shape
from gradparity.reference.layers.stack import Stack


def _layers(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) > 0


class Residual(Layer):
    """``layers``: the block's layer specs; their output must have the input's shape."""

    kind = "residual"
    ROUNDS_INSIDE = True  # the probe's rounding reaches the block's own layers' outputs
    READS_OPTIONS = True  # and so do the options
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "layers": Setting(None, "a non-empty list of layer tables", _layers, required=True),
    }

    build: ClassVar[Callable[[Any], Layer]]
    """Builds the inner layers from their specs: the registry's ``build``, set by
    :mod:`gradparity.reference.layers` (the registry includes this class, so importing it
    here would be a cycle)."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.inner = [type(self).build(spec) for spec in self.settings["layers"]]
        self._stacks: dict[Shape, Stack] = {}

    def stack(self, input_shape: Shape) -> Stack:
        if input_shape not in self._stacks:
            self._stacks[input_shape] = Stack(self.inner, input_shape)
        return self._stacks[input_shape]

    @property
    def PARAMETERS(self) -> tuple[str, ...]:
        return ()

    def output_shape(self, input_shape: Shape) -> Shape:
        inner = self.stack(input_shape).output_shape
        if inner != tuple(input_shape):
            raise ValueError(f"layer 'residual': layers: invalid value (the block maps "
                             f"{input_shape} to {inner}); allowed: a block that keeps the "
                             "shape of its input")
        return tuple(input_shape)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return self.stack(input_shape).parameter_shapes()

    def reduction_length(self, input_shape: Shape) -> int:
        return self.stack(input_shape).reduction_length()

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.stack(input_shape).init(rng)

    def init_state(self, input_shape: Shape) -> dict[str, np.ndarray]:
        return self.stack(input_shape).init_state()

    def forward(self, params, x, training=True, state=None, rounding=None, options=None):
        stack = self.stack(x.shape[1:])
        y, run = stack.forward(params, x, state, perturb=rounding, options=options)
        out = x + y
        return (out if rounding is None else rounding(out)), (stack, run)

    def new_state(self, cache, state):
        return {**state, **cache[1].state}

    def backward(self, params, cache, dy):
        return self.backward_with(params, cache, dy, None)

    def backward_with(self, params, cache, dy, overrides):
        stack, run = cache
        if overrides and "residual" in overrides:
            return overrides["residual"](self, params, cache, dy)
        dx, grads, _ = stack.backward(params, run, dy, overrides)
        return dy + dx, grads
