"""PyTorch's building blocks: activations, losses and layers from ``torch.nn.functional``.

The adapter (:mod:`gradparity.adapters.torch_adapter`) assembles networks from them;
each table is keyed like the reference's registries.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradparity.reference.layers.stack import stack_names
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
    # the reference keeps W as (fan_in, fan_out); F.linear takes torch's (out, in)
    return F.linear(x, params["W"].T, params.get("b")), {}


def _flatten(params, x, s, training, state):
    return torch.flatten(x, 1), {}


def _activation(name: str) -> Callable:
    def run(params, x, s, training, state):
        options = {"negative_slope": s.get("negative_slope", 0.01),
                   "elu_alpha": s.get("elu_alpha", 1.0)}
        return ACTIVATIONS[name](x, options), {}

    return run


def _conv2d(params, x, s, training, state):
    padding = s.get("padding", 0)
    with warnings.catch_warnings():  # an even kernel with 'same': torch pads a copy
        warnings.simplefilter("ignore", UserWarning)
        return F.conv2d(x, params["W"], params.get("b"), stride=s.get("stride", 1),
                        padding=padding, dilation=s.get("dilation", 1),
                        groups=s.get("groups", 1)), {}


def _conv_transpose2d(params, x, s, training, state):
    return F.conv_transpose2d(x, params["W"], params.get("b"), stride=s.get("stride", 1),
                              padding=s.get("padding", 0),
                              output_padding=s.get("output_padding", 0),
                              dilation=s.get("dilation", 1)), {}


def _max_pool2d(params, x, s, training, state):
    return F.max_pool2d(x, s.get("kernel", 2), stride=s.get("stride"),
                        padding=s.get("padding", 0)), {}


def _avg_pool2d(params, x, s, training, state):
    return F.avg_pool2d(x, s.get("kernel", 2), stride=s.get("stride"),
                        padding=s.get("padding", 0),
                        count_include_pad=s.get("count_include_pad", True)), {}


def _layer_norm(params, x, s, training, state):
    return F.layer_norm(x, (x.shape[-1],), params.get("gamma"), params.get("beta"),
                        eps=s.get("eps", 1e-5)), {}


def _batch_norm(params, x, s, training, state):
    mean, var = state["running_mean"].clone(), state["running_var"].clone()
    y = F.batch_norm(x, mean, var, params["gamma"], params["beta"],
                     training=s.get("training", True), momentum=s.get("momentum", 0.1),
                     eps=s.get("eps", 1e-5))  # updates mean and var in place when training
    return y, {"running_mean": mean, "running_var": var}


def _embedding(params, x, s, training, state):
    return F.embedding(x, params["W"], padding_idx=s.get("padding_idx")), {}


def _attention(params, x, s, training, state):
    heads = s.get("heads", 1)
    n, t, width = x.shape

    def project(p):
        return F.linear(x, params[f"W{p}"].T, params.get(f"b{p}"))

    q, k, v = (project(p).reshape(n, t, heads, width // heads).transpose(1, 2)
               for p in "qkv")
    out = F.scaled_dot_product_attention(q, k, v, is_causal=s.get("causal", False))
    merged = out.transpose(1, 2).reshape(n, t, width)
    return F.linear(merged, params["Wo"].T, params.get("bo")), {}


def _residual(params, x, s, training, state):
    y, new_state = run_stack(s["layers"], params, x, training, state)
    return x + y, new_state


def run_stack(specs, params, x, training, state, outputs=None):
    """The layers of ``specs`` in order; parameters and state named as the reference's
    stack names them (``conv1.W``, ``bn1.running_mean``). ``outputs``, a dict, receives
    every layer's output by name, with ``retain_grad()`` (dL/d(output) after backward)."""
    new_state = {}
    for name, spec in zip(stack_names(specs), specs, strict=True):
        own = {k[len(name) + 1:]: v for k, v in params.items() if k.startswith(name + ".")}
        own_state = {k[len(name) + 1:]: v for k, v in state.items()
                     if k.startswith(name + ".")}
        x, layer_state = LAYERS[spec["type"]](own, x, _settings(spec), training, own_state)
        new_state.update({f"{name}.{k}": v for k, v in layer_state.items()})
        if outputs is not None and x.requires_grad:
            x.retain_grad()
            outputs[name] = x
    return x, new_state


def _settings(spec):
    return {k: v for k, v in spec.items() if k != "type"}


LAYERS: dict[str, Callable[..., tuple[torch.Tensor, dict]]] = {
    "dense": _dense,
    "flatten": _flatten,
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
    "embedding": _embedding,
    "attention": _attention,
    "residual": _residual,
    **{name: _activation(name) for name in ACTIVATIONS},
}
"""Every reference layer type in PyTorch: ``(params, x, settings, training, state) ->
(output, new state)``. Parameters come in the reference's layout (a dense W is
(fan_in, fan_out), a conv W is OIHW like torch's) and each function converts what it
must, so autograd returns gradients in that layout too."""


def layer_unsupported_reason(spec) -> str | None:
    """Why torch cannot express the layer ``spec`` exactly (never emulated), or None."""
    kind = spec["type"]
    if kind == "conv2d" and spec.get("padding") == "same" and spec.get("stride", 1) > 1:
        return "F.conv2d refuses padding='same' with a stride above 1"
    if kind == "batch_norm" and spec.get("running_var_unbiased", True) is False:
        return "F.batch_norm keeps the unbiased running variance"
    if kind in ("layer_norm", "batch_norm") and spec.get("variance") == "mean_of_squares":
        return "torch's norm layers compute the variance of the centred values"
    if kind == "residual":
        return next(filter(None, map(layer_unsupported_reason, spec["layers"])), None)
    return None
