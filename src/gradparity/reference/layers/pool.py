"""Max and average pooling over square windows of NCHW images.

    max: y[n, c, h, w] = max over the window of x;   dL/dx = dL/dy at the window's
         maximum, 0 elsewhere. On ties the first maximum in row-major order takes it
         (PyTorch's; catalogued: ``max_pool_ties``).
    avg: y = (sum over the window) / (the window's size);  dL/dx = dL/dy / size, spread
         over the window. With padding, ``count_include_pad`` (PyTorch's default True)
         counts the padded zeros in the size; False counts only real pixels.

``stride`` defaults to the kernel size (PyTorch's; Flax's pooling defaults to stride 1:
catalogued, ``pooling_stride_default``). Max pooling pads with -inf, so a padded pixel
is never the maximum.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gradparity.reference.layers.base import (
    Layer,
    Setting,
    Shape,
    boolean,
    non_negative_int,
    positive_int,
)
from gradparity.reference.layers.conv import patches, scatter_patches


def _stride(value) -> bool:
    return value is None or positive_int(value)


class _Pool(Layer):
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "kernel": Setting(2, "an integer >= 1", positive_int),
        "stride": Setting(None, "an integer >= 1 (default: the kernel size)", _stride),
        "padding": Setting(0, "an integer >= 0, at most half the kernel", non_negative_int),
    }

    @property
    def step(self) -> int:
        return self.stride or self.kernel

    def _out(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.step + 1

    def output_shape(self, input_shape: Shape) -> Shape:
        if self.padding > self.kernel // 2:
            raise ValueError(f"layer {self.kind!r}: padding: invalid value {self.padding}; "
                             "allowed: at most half the kernel size")
        channels, height, width = input_shape
        out = (self._out(height), self._out(width))
        if min(out) < 1:
            raise ValueError(f"layer {self.kind!r}: kernel: invalid value {self.kernel}; "
                             f"allowed: a window that fits the {height}x{width} input")
        return (channels, *out)

    def reduction_length(self, input_shape: Shape) -> int:
        return self.kernel * self.kernel

    def _windows(self, x: np.ndarray, fill: float) -> np.ndarray:
        p = self.padding
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill)
        return xp, patches(xp, self.kernel, self.step, 1, (self._out(x.shape[2]),
                                                            self._out(x.shape[3])))


class MaxPool2d(_Pool):
    """Max pooling; the gradient goes to the (first) maximum of each window."""

    kind = "max_pool2d"

    def forward(self, params, x, training=True, state=None):
        xp, cols = self._windows(x, -np.inf)
        n, c, k, _, h, w = cols.shape
        flat = cols.reshape(n, c, k * k, h, w)
        first = np.argmax(flat, axis=2)  # the first maximum in row-major order
        y = np.take_along_axis(flat, first[:, :, None], axis=2)[:, :, 0]
        return y, (xp.shape, first, cols.shape)

    def backward(self, params, cache, dy):
        padded, first, shape = cache
        n, c, k, _, h, w = shape
        dcols = np.zeros((n, c, k * k, h, w), dtype=dy.dtype)
        np.put_along_axis(dcols, first[:, :, None], dy[:, :, None], axis=2)
        dxp = scatter_patches(dcols.reshape(shape), padded, self.kernel, self.step, 1)
        p = self.padding
        return dxp[:, :, p:padded[2] - p, p:padded[3] - p], {}


class AvgPool2d(_Pool):
    """Average pooling; ``count_include_pad`` says whether padded zeros count."""

    kind = "avg_pool2d"
    SETTINGS: ClassVar[dict[str, Setting]] = {
        **_Pool.SETTINGS,
        "count_include_pad": Setting(True, "True or False", boolean),
    }

    def _sizes(self, x: np.ndarray) -> np.ndarray:
        """How many pixels each window averages: k^2, or only the real ones."""
        if self.count_include_pad or not self.padding:
            return np.full((1, 1, self._out(x.shape[2]), self._out(x.shape[3])),
                           float(self.kernel * self.kernel), dtype=x.dtype)
        _, ones = self._windows(np.ones((1, 1, *x.shape[2:]), dtype=x.dtype), 0.0)
        return ones.sum(axis=(2, 3))

    def forward(self, params, x, training=True, state=None):
        xp, cols = self._windows(x, 0.0)
        sizes = self._sizes(x)
        return cols.sum(axis=(2, 3)) / sizes, (xp.shape, cols.shape, sizes)

    def backward(self, params, cache, dy):
        padded, shape, sizes = cache
        spread = np.broadcast_to((dy / sizes)[:, :, None, None], shape)
        dxp = scatter_patches(np.ascontiguousarray(spread), padded, self.kernel, self.step, 1)
        p = self.padding
        return dxp[:, :, p:padded[2] - p, p:padded[3] - p], {}
