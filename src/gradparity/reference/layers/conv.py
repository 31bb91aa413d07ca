"""2-D convolution and transposed convolution, NCHW images and OIHW kernels (PyTorch's
layout; JAX's adapter converts to NHWC/HWIO).

Convolution here is cross-correlation, as in every framework: with x padded to xp,

    y[n, o, h, w] = b[o] + sum_{c, i, j} W[o, c, i, j] xp[n, g(o) C_g + c, h s + i d, w s + j d]

for ``groups`` g (each group of C_g input channels feeds O_g outputs), stride s,
dilation d. Written with the patches of x ("im2col"), backward is the same sums
transposed:

    dL/dW[o, c, i, j] = sum_{n, h, w} dL/dy[n, o, h, w] xp[n, ., h s + i d, w s + j d]
    dL/dxp[n, ., h s + i d, w s + j d] += sum_o W[o, c, i, j] dL/dy[n, o, h, w]
    dL/db[o] = sum_{n, h, w} dL/dy[n, o, h, w]

and dL/dx is dL/dxp with the padding cut away. The transposed convolution is the
gradient of a convolution with respect to its input: every input pixel scatters
``x W`` into the output (padding removed from the border, ``output_padding`` added at
the end), and its backward is a convolution.

``padding`` is an integer (each side), ``"valid"`` (0) or ``"same"``: output size
ceil(size / stride), with the total padding split as XLA does, the odd pixel at the
end (bottom, right). PyTorch accepts ``"same"`` only with stride 1: a catalogued
convention (``same_padding``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from gradparity.reference.layers.base import (
    Layer,
    Setting,
    Shape,
    boolean,
    fan_in_uniform,
    non_negative_int,
    positive_int,
)


def _padding(value: Any) -> bool:
    return value in ("same", "valid") or non_negative_int(value)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """XLA's 'SAME' padding of one spatial axis: (before, after), the odd pixel after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def patches(xp: np.ndarray, kernel: int, stride: int, dilation: int, out: tuple[int, int]
             ) -> np.ndarray:
    """(N, C, k, k, H_out, W_out): the input pixel under kernel tap (i, j) of every output."""
    n, c = xp.shape[:2]
    cols = np.empty((n, c, kernel, kernel, *out), dtype=xp.dtype)
    for i in range(kernel):
        for j in range(kernel):
            cols[:, :, i, j] = xp[:, :, i * dilation:i * dilation + stride * (out[0] - 1) + 1:
                                  stride, j * dilation:j * dilation + stride * (out[1] - 1) + 1:
                                  stride]
    return cols


def scatter_patches(dcols: np.ndarray, shape: tuple[int, ...], kernel: int, stride: int,
             dilation: int) -> np.ndarray:
    """The transpose of :func:`patches`: every tap's values added back where they came
    from (an input pixel under several taps receives the sum)."""
    out = dcols.shape[-2:]
    dxp = np.zeros(shape, dtype=dcols.dtype)
    for i in range(kernel):
        for j in range(kernel):
            dxp[:, :, i * dilation:i * dilation + stride * (out[0] - 1) + 1:stride,
                j * dilation:j * dilation + stride * (out[1] - 1) + 1:stride] += dcols[:, :, i, j]
    return dxp


class Conv2d(Layer):
    """A square-kernel 2-D convolution (cross-correlation) with stride, padding,
    dilation, groups and an optional bias."""

    kind = "conv2d"
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "channels": Setting(None, "an integer >= 1 (output channels)", positive_int, required=True),
        "kernel": Setting(3, "an integer >= 1", positive_int),
        "stride": Setting(1, "an integer >= 1", positive_int),
        "padding": Setting(0, "an integer >= 0, 'valid' or 'same'", _padding),
        "dilation": Setting(1, "an integer >= 1", positive_int),
        "groups": Setting(1, "an integer >= 1 that divides both channel counts",
                          positive_int),
        "bias": Setting(True, "True or False", boolean),
    }

    @property
    def PARAMETERS(self) -> tuple[str, ...]:
        return ("W", "b") if self.bias else ("W",)

    def pads(self, size: int) -> tuple[int, int]:
        if self.padding == "same":
            return same_padding(size, self.kernel, self.stride, self.dilation)
        pad = 0 if self.padding == "valid" else self.padding
        return pad, pad

    def _out(self, size: int) -> int:
        before, after = self.pads(size)
        return (size + before + after - self.dilation * (self.kernel - 1) - 1) // self.stride + 1

    def output_shape(self, input_shape: Shape) -> Shape:
        channels, height, width = input_shape
        if channels % self.groups or self.channels % self.groups:
            raise ValueError(f"layer 'conv2d': groups: invalid value {self.groups}; allowed: "
                             f"a divisor of both {channels} input and {self.channels} output "
                             "channels")
        out = (self._out(height), self._out(width))
        if min(out) < 1:
            raise ValueError(f"layer 'conv2d': kernel: invalid value {self.kernel}; allowed: a "
                             f"kernel that fits the {height}x{width} input")
        return (self.channels, *out)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"W": (self.channels, input_shape[0] // self.groups, self.kernel,
                        self.kernel)}
        if self.bias:
            shapes["b"] = (self.channels,)
        return shapes

    def reduction_length(self, input_shape: Shape) -> int:
        return input_shape[0] // self.groups * self.kernel * self.kernel

    def gradient_terms(self, input_shape: Shape) -> int:
        _, height, width = self.output_shape(input_shape)
        return height * width

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        fan_in = self.reduction_length(input_shape)
        return {name: fan_in_uniform(rng, fan_in, shape)
                for name, shape in self.parameter_shapes(input_shape).items()}

    def forward(self, params, x, training=True, state=None):
        (top, bottom), (left, right) = self.pads(x.shape[2]), self.pads(x.shape[3])
        xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        out = (self._out(x.shape[2]), self._out(x.shape[3]))
        cols = patches(xp, self.kernel, self.stride, self.dilation, out)
        g, weight = self.groups, params["W"]
        n, c = x.shape[:2]
        grouped = cols.reshape(n, g, c // g, self.kernel, self.kernel, *out)
        kernels = weight.reshape(g, weight.shape[0] // g, *weight.shape[1:])
        y = np.einsum("ngcijhw,gocij->ngohw", grouped, kernels).reshape(n, -1, *out)
        if self.bias:
            y = y + params["b"][None, :, None, None]
        return y, (grouped, kernels, xp.shape, (top, bottom, left, right))

    def backward(self, params, cache, dy):
        grouped, kernels, padded, (top, bottom, left, right) = cache
        n, g = dy.shape[0], self.groups
        dy_g = dy.reshape(n, g, -1, *dy.shape[2:])
        grads = {"W": np.einsum("ngohw,ngcijhw->gocij", dy_g, grouped).reshape(
            params["W"].shape)}
        if self.bias:
            grads["b"] = dy.sum(axis=(0, 2, 3))
        dcols = np.einsum("ngohw,gocij->ngcijhw", dy_g, kernels).reshape(
            n, -1, self.kernel, self.kernel, *dy.shape[2:])
        dxp = scatter_patches(dcols, padded, self.kernel, self.stride, self.dilation)
        return dxp[:, :, top:padded[2] - bottom, left:padded[3] - right], grads


class ConvTranspose2d(Layer):
    """A square-kernel 2-D transposed convolution (PyTorch's ``conv_transpose2d``):
    kernel W shaped (in_channels, out_channels, k, k), stride, padding, output_padding,
    dilation; output size (size - 1) s - 2 p + d (k - 1) + output_padding + 1."""

    kind = "conv_transpose2d"
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "channels": Setting(None, "an integer >= 1 (output channels)", positive_int, required=True),
        "kernel": Setting(3, "an integer >= 1", positive_int),
        "stride": Setting(1, "an integer >= 1", positive_int),
        "padding": Setting(0, "an integer >= 0", non_negative_int),
        "output_padding": Setting(0, "an integer >= 0, below the stride or the dilation",
                                  non_negative_int),
        "dilation": Setting(1, "an integer >= 1", positive_int),
        "bias": Setting(True, "True or False", boolean),
    }

    @property
    def PARAMETERS(self) -> tuple[str, ...]:
        return ("W", "b") if self.bias else ("W",)

    def _full(self, size: int) -> int:
        return (size - 1) * self.stride + self.dilation * (self.kernel - 1) + 1

    def output_shape(self, input_shape: Shape) -> Shape:
        if self.output_padding >= max(self.stride, self.dilation):
            raise ValueError(f"layer 'conv_transpose2d': output_padding: invalid value "
                             f"{self.output_padding}; allowed: below the stride or the dilation")
        _, height, width = input_shape
        out = tuple(self._full(s) - 2 * self.padding + self.output_padding
                    for s in (height, width))
        if min(out) < 1:
            raise ValueError(f"layer 'conv_transpose2d': padding: invalid value "
                             f"{self.padding}; allowed: an output of at least one pixel")
        return (self.channels, *out)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"W": (input_shape[0], self.channels, self.kernel, self.kernel)}
        if self.bias:
            shapes["b"] = (self.channels,)
        return shapes

    def reduction_length(self, input_shape: Shape) -> int:
        return input_shape[0] * self.kernel * self.kernel

    def gradient_terms(self, input_shape: Shape) -> int:
        return input_shape[1] * input_shape[2]

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # PyTorch's fan_in of a transposed conv is its weight's dimension 1 times k^2
        fan_in = self.channels * self.kernel * self.kernel
        return {name: fan_in_uniform(rng, fan_in, shape)
                for name, shape in self.parameter_shapes(input_shape).items()}

    def forward(self, params, x, training=True, state=None):
        n, _, height, width = x.shape
        full = (self._full(height) + self.output_padding,
                self._full(width) + self.output_padding)
        # every input pixel, times the kernel, lands on the taps of its output window
        dcols = np.einsum("nchw,coij->noijhw", x, params["W"])
        y_full = scatter_patches(dcols, (n, params["W"].shape[1], *full), self.kernel, self.stride,
                          self.dilation)
        p = self.padding
        y = y_full[:, :, p:full[0] - p, p:full[1] - p]
        if self.bias:
            y = y + params["b"][None, :, None, None]
        return y, (x, full)

    def backward(self, params, cache, dy):
        x, full = cache
        p = self.padding
        dy_full = np.zeros((*dy.shape[:2], *full), dtype=dy.dtype)
        dy_full[:, :, p:full[0] - p, p:full[1] - p] = dy
        cols = patches(dy_full, self.kernel, self.stride, self.dilation, x.shape[2:])
        grads = {"W": np.einsum("nchw,noijhw->coij", x, cols)}
        if self.bias:
            grads["b"] = dy.sum(axis=(0, 2, 3))
        return np.einsum("noijhw,coij->nchw", cols, params["W"]), grads
