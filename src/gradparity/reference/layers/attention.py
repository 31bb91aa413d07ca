"""Multi-head scaled dot-product self-attention, its backward written out.

For x of shape (batch, T, D), heads H and head width d = D / H:

    q = x Wq + bq,  k = x Wk + bk,  v = x Wv + bv          (split into H heads)
    s = q k^T / sqrt(d)            (the causal mask sets s[i, j] = -inf for j > i)
    p = softmax(s)  over the keys,  o = p v,   y = merge(o) Wo + bo

backward, from dL/dy:

    do = split(dL/dy Wo^T);  dL/dWo = merge(o)^T dL/dy
    dp = do v^T,  dL/dv = p^T do
    ds = p * (dp - sum_j dp p)          (the softmax Jacobian: not only its diagonal)
    dL/dq = ds k / sqrt(d),  dL/dk = ds^T q / sqrt(d)       (the scale in backward too)
    dL/dx = dq Wq^T + dk Wk^T + dv Wv^T (merged),  dL/dW* = x^T d*

A masked score is -inf, so its probability is exactly 0 and so is its gradient. A
row with every score masked has no softmax; PyTorch's SDPA returns 0 there and Flax
the mean of v (catalogued: ``attention_fully_masked_rows``); a causal mask never masks
a whole row.

Where one key takes almost all of a row's weight, ``dp - sum_j dp p`` cancels: its
value is about ``(1 - p) dp`` while p's own rounding moves it by about ``eps dp``. The
tolerance model's ``rounding`` therefore rounds the scores and the probabilities (and
the projections, the weighted values and the output) inside the layer, where its
backward reads them (``ROUNDS_INSIDE``).
"""

from __future__ import annotations

import math
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

PROJECTIONS = ("q", "k", "v", "o")


class MultiHeadAttention(Layer):
    """Self-attention with ``heads`` heads; ``causal`` masks the future; ``bias`` adds
    bq, bk, bv and bo."""

    kind = "attention"
    ROUNDS_INSIDE = True
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "heads": Setting(1, "an integer >= 1 that divides the width", positive_int),
        "causal": Setting(False, "True or False", boolean),
        "bias": Setting(True, "True or False", boolean),
    }

    @property
    def PARAMETERS(self) -> tuple[str, ...]:
        names = tuple(f"W{p}" for p in PROJECTIONS)
        return names + (tuple(f"b{p}" for p in PROJECTIONS) if self.bias else ())

    def output_shape(self, input_shape: Shape) -> Shape:
        if input_shape[-1] % self.heads:
            raise ValueError(f"layer 'attention': heads: invalid value {self.heads}; "
                             f"allowed: a divisor of the width {input_shape[-1]}")
        return input_shape

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        width = input_shape[-1]
        return {name: (width, width) if name[0] == "W" else (width,)
                for name in self.PARAMETERS}

    def reduction_length(self, input_shape: Shape) -> int:
        return input_shape[-1] + input_shape[0]  # a projection's sum, then over the keys

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        width = input_shape[-1]
        return {name: fan_in_uniform(rng, width, shape)
                for name, shape in self.parameter_shapes(input_shape).items()}

    def _split(self, values: np.ndarray) -> np.ndarray:
        n, t, width = values.shape
        return values.reshape(n, t, self.heads, width // self.heads).transpose(0, 2, 1, 3)

    @staticmethod
    def _merge(values: np.ndarray) -> np.ndarray:
        n, h, t, d = values.shape
        return values.transpose(0, 2, 1, 3).reshape(n, t, h * d)

    def _project(self, params, x, p):
        y = x @ params[f"W{p}"]
        return y + params[f"b{p}"] if self.bias else y

    def forward(self, params, x, training=True, state=None, rounding=None):
        def rounded(values: np.ndarray) -> np.ndarray:
            return values if rounding is None else rounding(values)

        q, k, v = (self._split(rounded(self._project(params, x, p))) for p in "qkv")
        scale = 1.0 / math.sqrt(q.shape[-1])
        scores = rounded(q @ k.transpose(0, 1, 3, 2) * scale)
        if self.causal:
            t = scores.shape[-1]
            scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, -np.inf)
        shifted = scores - scores.max(axis=-1, keepdims=True)
        weights = np.exp(shifted)
        p = rounded(weights / weights.sum(axis=-1, keepdims=True))
        merged = self._merge(rounded(p @ v))
        return rounded(self._project(params, merged, "o")), (x, q, k, v, p, merged, scale)

    def projection_signals(self, params, cache, dy) -> dict[str, np.ndarray]:
        """dL/dq, dL/dk and dL/dv (split into heads) from dL/dy: the inside of backward."""
        _, q, k, v, p, _, scale = cache
        do = self._split(dy @ params["Wo"].T)
        dp = do @ v.transpose(0, 1, 3, 2)
        dv = p.transpose(0, 1, 3, 2) @ do
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))  # the softmax Jacobian
        dq = ds @ k * scale
        dk = ds.transpose(0, 1, 3, 2) @ q * scale
        return {"q": dq, "k": dk, "v": dv}

    def backward(self, params, cache, dy):
        x, merged = cache[0], cache[5]
        grads = {"Wo": merged.reshape(-1, merged.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])}
        dx = np.zeros_like(x)
        rows = x.reshape(-1, x.shape[-1])
        for name, d in self.projection_signals(params, cache, dy).items():
            d = self._merge(d)
            grads[f"W{name}"] = rows.T @ d.reshape(-1, d.shape[-1])
            dx = dx + d @ params[f"W{name}"].T
            if self.bias:
                grads[f"b{name}"] = d.reshape(-1, d.shape[-1]).sum(axis=0)
        if self.bias:
            grads["bo"] = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
        return dx, {name: grads[name] for name in self.PARAMETERS}
