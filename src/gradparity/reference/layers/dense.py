"""Dense (fully connected) layer and flatten: the MLP's layers, for any leading axes.

    y = x W + b          x: (..., fan_in), W: (fan_in, fan_out), b: (fan_out,)
    dL/dx = dL/dy W^T
    dL/dW = x^T dL/dy    (summed over every leading axis: batch, sequence positions)
    dL/db = dL/dy summed over every leading axis
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gradparity.reference.layers.base import (
    Layer,
    Setting,
    Shape,
    boolean,
    fan_in_uniform,
    positive_int,
)


class Dense(Layer):
    """``features`` outputs; ``bias`` False drops b (a classic network without biases)."""

    kind = "dense"
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "features": Setting(None, "an integer >= 1", positive_int, required=True),
        "bias": Setting(True, "True or False", boolean)}

    @property
    def PARAMETERS(self) -> tuple[str, ...]:
        return ("W", "b") if self.bias else ("W",)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.features)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"W": (input_shape[-1], self.features)}
        if self.bias:
            shapes["b"] = (self.features,)
        return shapes

    def reduction_length(self, input_shape: Shape) -> int:
        return input_shape[-1]

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        fan_in = input_shape[-1]
        return {name: fan_in_uniform(rng, fan_in, shape)
                for name, shape in self.parameter_shapes(input_shape).items()}

    def forward(self, params, x, training=True, state=None):
        y = x @ params["W"]
        if self.bias:
            y = y + params["b"]
        return y, x

    def backward(self, params, cache, dy):
        x = cache
        grads = {"W": x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])}
        if self.bias:
            grads["b"] = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
        return dy @ params["W"].T, grads


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), row-major (PyTorch's ``flatten(1)``); backward reshapes."""

    kind = "flatten"

    def output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, params, x, training=True, state=None):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, params, cache, dy):
        return dy.reshape(cache), {}
