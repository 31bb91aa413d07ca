"""PyTorch's building blocks: activations, losses and layers from ``torch.nn.functional``.

The adapter (:mod:`gradparity.adapters.torch_adapter`) assembles networks from them;
each table is keyed like the reference's registries.

Each entry of :data:`LAYERS` takes the parameters (torch layout), the input, the layer's
settings and whether it trains, and returns the output (and the new running statistics
for layers that keep them). :data:`TO_TORCH` converts a parameter from the reference
layout (dense W is (fan_in, fan_out); torch keeps (out, in)); every conversion is its own
inverse here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradparity.reference.losses import class_weights

Settings = Mapping[str, Any]
Options = Mapping[str, Any]

# Each entry takes the pre-activation and the case options (its parameter, if any).
ACTIVATIONS: dict[str, Callable[[torch.Tensor, Options], torch.Tensor]] = {
    "identity": lambda z, o: z,
    "sigmoid": lambda z, o: torch.sigmoid(z),
    "tanh": lambda z, o: torch.tanh(z),
    "relu": lambda z, o: F.relu(z),
    "leaky_relu": lambda z, o: F.leaky_relu(z, negative_slope=o["negative_slope"]),
    "elu": lambda z, o: F.elu(z, alpha=o["elu_alpha"]),
    "gelu": lambda z, o: F.gelu(z),  # approximate="none": the exact erf form
    "gelu_tanh": lambda z, o: F.gelu(z, approximate="tanh"),
    "silu": lambda z, o: F.silu(z),
    "softplus": lambda z, o: F.softplus(z),  # beta 1, threshold 20 (linear above: a convention)
}

# Each entry takes the output, the targets and the case options.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, Options], torch.Tensor]] = {
    "mse": lambda out, y, o: F.mse_loss(out, y, reduction="mean"),
    "softmax_cross_entropy": lambda out, y, o: F.cross_entropy(out, y, reduction="mean"),
    "binary_cross_entropy_with_logits": lambda out, y, o: F.binary_cross_entropy_with_logits(
        out, y, reduction="mean"
    ),
    "mse_sum": lambda out, y, o: F.mse_loss(out, y, reduction="sum"),
    "mse_batch_mean": lambda out, y, o: F.mse_loss(out, y, reduction="sum") / out.shape[0],
    "half_mse": lambda out, y, o: 0.5 * F.mse_loss(out, y, reduction="mean"),
    "half_mse_sum": lambda out, y, o: 0.5 * F.mse_loss(out, y, reduction="sum"),
    "half_mse_batch_mean": lambda out, y, o: 0.5 * F.mse_loss(out, y, reduction="sum")
    / out.shape[0],
    "huber": lambda out, y, o: F.huber_loss(out, y, delta=o["huber_delta"]),
    "smooth_l1": lambda out, y, o: F.smooth_l1_loss(out, y, beta=o["smooth_l1_beta"]),
    "binary_cross_entropy": lambda out, y, o: F.binary_cross_entropy(out, y),
    "softmax_cross_entropy_soft": lambda out, y, o: F.cross_entropy(out, y),
    "softmax_cross_entropy_smoothed": lambda out, y, o: F.cross_entropy(
        out, y, label_smoothing=o["label_smoothing"]
    ),
    "softmax_cross_entropy_weighted": lambda out, y, o: F.cross_entropy(
        out, y, weight=torch.as_tensor(class_weights(out.shape[1],
                                                     np.dtype(str(out.dtype)[6:])),
                                       device=out.device)  # on the output's device
    ),
    "softmax_cross_entropy_sum": lambda out, y, o: F.cross_entropy(out, y, reduction="sum"),
}



def _dense(params, x, s, training, state):
    return F.linear(x, params["W"], params.get("b")), {}


def _flatten(params, x, s, training, state):
    return torch.flatten(x, 1), {}


def _activation(name: str) -> Callable:
    def run(params, x, s, training, state):
        options = {"negative_slope": s.get("negative_slope", 0.01),
                   "elu_alpha": s.get("elu_alpha", 1.0)}
        return ACTIVATIONS[name](x, options), {}

    return run


LAYERS: dict[str, Callable[..., tuple[torch.Tensor, dict]]] = {
    "dense": _dense,
    "flatten": _flatten,
    **{name: _activation(name) for name in ACTIVATIONS},
}
"""Every reference layer type in PyTorch."""


def _transposed(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.T)


TO_TORCH: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    ("dense", "W"): _transposed,
}
"""(layer type, parameter) -> the conversion to torch's layout (its own inverse)."""


def to_torch(kind: str, name: str, array: np.ndarray) -> np.ndarray:
    return TO_TORCH.get((kind, name), np.ascontiguousarray)(array)
