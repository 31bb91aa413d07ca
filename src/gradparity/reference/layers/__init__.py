"""The reference's layers beyond the dense MLP, each forward beside its backward.

:data:`LAYERS` is the registry: case validation, the adapters, the layer-object check
(``gradparity check --layer``), the tests and ``gradparity list`` read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradparity.reference.activations import ACTIVATIONS
from gradparity.reference.layers.activation import ActivationLayer, activation_layer
from gradparity.reference.layers.attention import MultiHeadAttention
from gradparity.reference.layers.base import Layer, Setting
from gradparity.reference.layers.conv import Conv2d, ConvTranspose2d
from gradparity.reference.layers.dense import Dense, Flatten
from gradparity.reference.layers.embedding import Embedding
from gradparity.reference.layers.norm import BatchNorm, LayerNorm
from gradparity.reference.layers.pool import AvgPool2d, MaxPool2d
from gradparity.reference.layers.residual import Residual
from gradparity.reference.layers.stack import Stack

LAYERS: dict[str, type[Layer]] = {
    "dense": Dense,
    "flatten": Flatten,
    "conv2d": Conv2d,
    "conv_transpose2d": ConvTranspose2d,
    "max_pool2d": MaxPool2d,
    "avg_pool2d": AvgPool2d,
    "layer_norm": LayerNorm,
    "batch_norm": BatchNorm,
    "embedding": Embedding,
    "attention": MultiHeadAttention,
    "residual": Residual,
    **{name: activation_layer(name) for name in ACTIVATIONS},
}
"""Every layer type, by name."""


def build(spec: Mapping[str, Any]) -> Layer:
    """The layer a spec such as ``{"type": "dense", "features": 10}`` describes."""
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"layer: invalid value {spec!r}; allowed: a table with 'type' "
                         f"(one of {', '.join(LAYERS)}) and its settings")
    kind = spec["type"]
    if kind not in LAYERS:
        raise ValueError(f"layer type: invalid value {kind!r}; allowed: {', '.join(LAYERS)}")
    return LAYERS[kind](**{k: v for k, v in spec.items() if k != "type"})


Residual.build = staticmethod(build)  # a block builds its inner layers from this registry


__all__ = ["LAYERS", "ActivationLayer", "Dense", "Flatten", "Layer", "Setting", "Stack",
           "build"]
