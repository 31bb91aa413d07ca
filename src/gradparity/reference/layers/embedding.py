"""Token embedding: a lookup table, whose gradient adds up over repeated ids.

    y[n, t] = W[ids[n, t]]                       W: (vocab, features)
    dL/dW[v] = sum over every (n, t) with ids[n, t] = v of dL/dy[n, t]

The sum matters: a token that occurs twice contributes twice (an implementation that
assigns instead of adding keeps only the last). With ``padding_idx`` the row of that id
gets no gradient (PyTorch's ``padding_idx``; Flax's ``Embed`` has none: catalogued,
``embedding_padding_idx``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gradparity.reference.layers.base import Layer, Setting, Shape, positive_int


def _index(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool)
                             and value >= 0)


class Embedding(Layer):
    """Integer ids (batch, positions) -> vectors (batch, positions, features)."""

    kind = "embedding"
    PARAMETERS = ("W",)
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "vocab": Setting(None, "an integer >= 1 (ids are 0..vocab-1)", positive_int, required=True),
        "features": Setting(None, "an integer >= 1", positive_int, required=True),
        "padding_idx": Setting(None, "an id in 0..vocab-1, or none", _index),
    }

    def output_shape(self, input_shape: Shape) -> Shape:
        if self.padding_idx is not None and self.padding_idx >= self.vocab:
            raise ValueError(f"layer 'embedding': padding_idx: invalid value "
                             f"{self.padding_idx}; allowed: 0..{self.vocab - 1}")
        return (*input_shape, self.features)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"W": (self.vocab, self.features)}

    def gradient_terms(self, input_shape: Shape) -> int:
        return int(np.prod(input_shape))

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        weights = rng.standard_normal((self.vocab, self.features))  # PyTorch's N(0, 1)
        if self.padding_idx is not None:
            weights[self.padding_idx] = 0.0  # PyTorch zeroes the padding row
        return {"W": weights}

    def forward(self, params, x, training=True, state=None):
        return params["W"][x], x

    def backward(self, params, cache, dy):
        ids = cache
        grad = np.zeros_like(params["W"])
        np.add.at(grad, ids.ravel(), dy.reshape(-1, dy.shape[-1]))  # repeated ids add up
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0.0
        return np.zeros(ids.shape), {"W": grad}
