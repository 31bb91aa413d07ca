"""Known backprop bugs in the layers beyond the MLP: convolution, pooling, flatten,
normalisation, attention, residual blocks, embeddings, GELU.

Each :class:`LayerBackwardBug` is a wrong backward rule for one layer type, written
beside the reference's own (:mod:`gradparity.reference.layers`) from the same forward
cache; the textbook runs a sequence network with it in place of the right rule
(``Stack.backward(overrides=...)``). Like the MLP's bugs (:mod:`gradparity.check.bugs`),
they are both the mutants' bugs and the diagnosis's hypotheses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.check.bugs import Bug
from gradparity.reference.activations import ACTIVATIONS
from gradparity.reference.layers.conv import scatter_patches
from gradparity.reference.layers.norm import normalise_backward
from gradparity.reference.layers.stack import stack_names

Case = Any
Rule = Callable[[Any, Mapping[str, np.ndarray], Any, np.ndarray], tuple]


def layer_instances(specs: list[Mapping[str, Any]], prefix: str = "") -> Iterator[tuple]:
    """``(name, type)`` of every layer of a network, residual blocks' inner layers too."""
    for name, spec in zip(stack_names(specs), specs, strict=True):
        yield prefix + name, spec["type"]
        if spec["type"] == "residual":
            yield from layer_instances(spec["layers"], f"{prefix}{name}.")


@dataclass(frozen=True)
class LayerBackwardBug(Bug):
    """A wrong backward rule for every layer of type ``layer_type``."""

    kind: str = "layer_bug"
    layer_type: str = ""
    text: str = ""
    rule: Rule | None = None

    def applies(self, case: Case) -> bool:
        return bool(getattr(case, "is_sequence", False)) and bool(self._names(case))

    def _names(self, case: Case) -> list[str]:
        return [name for name, kind in layer_instances(case.layer_specs)
                if kind == self.layer_type]

    def describe(self, case: Case) -> str:
        return f"{self.text} ({', '.join(self._names(case))})"


# -- convolution ----------------------------------------------------------------------


def _conv_flipped(layer, params, cache, dy):
    grouped, kernels, padded, pads = cache
    # the input gradient as a "full convolution with the flipped kernel", written with
    # the scatter form that needs no flip: flipped twice
    dx, _ = layer.backward(params, (grouped, kernels[..., ::-1, ::-1], padded, pads), dy)
    return dx, layer.backward(params, cache, dy)[1]


def _conv_padding_lost(layer, params, cache, dy):
    grouped, kernels, padded, (top, bottom, left, right) = cache
    # the padded input gradient cut from its top-left corner, not from inside the padding
    dx, grads = layer.backward(params, (grouped, kernels, padded,
                                        (0, top + bottom, 0, left + right)), dy)
    return dx, grads


def _conv_bias_averaged(layer, params, cache, dy):
    dx, grads = layer.backward(params, cache, dy)
    if "b" in grads:
        grads = {**grads, "b": grads["b"] / (dy.shape[2] * dy.shape[3])}
    return dx, grads


# -- pooling and flatten ----------------------------------------------------------------


def _max_pool_everywhere(layer, params, cache, dy):
    padded, _, shape = cache
    spread = np.broadcast_to(dy[:, :, None, None], shape)  # every window element
    dxp = scatter_patches(np.ascontiguousarray(spread), padded, layer.kernel, layer.step, 1)
    p = layer.padding
    return dxp[:, :, p:padded[2] - p, p:padded[3] - p], {}


def _flatten_channels_last(layer, params, cache, dy):
    n, c, h, w = cache
    return dy.reshape(n, h, w, c).transpose(0, 3, 1, 2), {}


# -- normalisation ----------------------------------------------------------------------


def _batch_norm_without_mean_terms(layer, params, cache, dy):
    _, inverse, _, _, _ = cache
    _, grads = layer.backward(params, cache, dy)
    return dy * layer._per_channel(params["gamma"], dy) * inverse, grads


def _batch_norm_without_variance_term(layer, params, cache, dy):
    _, inverse, _, _, _ = cache
    _, grads = layer.backward(params, cache, dy)
    dx_hat = dy * layer._per_channel(params["gamma"], dy)
    axes = layer._axes(dy)
    return (dx_hat - dx_hat.mean(axis=axes, keepdims=True)) * inverse, grads


def _layer_norm_wrong_axis(layer, params, cache, dy):
    x_hat, inverse = cache
    _, grads = layer.backward(params, cache, dy)
    dx_hat = dy * params["gamma"] if "gamma" in params else dy
    return normalise_backward(dx_hat, x_hat, inverse, (0,)), grads


# -- attention ------------------------------------------------------------------------


def _attention(scale_in_backward: bool = True, full_jacobian: bool = True) -> Rule:
    """The attention backward with one of its two classic mistakes."""

    def rule(layer, params, cache, dy):
        x, q, k, v, p, _, scale = cache
        _, grads = layer.backward(params, cache, dy)  # Wo, bo and the shapes are right
        do = layer._split(dy @ params["Wo"].T)
        dp = do @ v.transpose(0, 1, 3, 2)
        dv = p.transpose(0, 1, 3, 2) @ do
        ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) if full_jacobian else (
            dp * p * (1 - p))  # only the Jacobian's diagonal
        factor = scale if scale_in_backward else 1.0
        dq, dk = ds @ k * factor, ds.transpose(0, 1, 3, 2) @ q * factor
        dx = np.zeros_like(x)
        rows = x.reshape(-1, x.shape[-1])
        for name, d in (("q", dq), ("k", dk), ("v", dv)):
            d = layer._merge(d)
            grads[f"W{name}"] = rows.T @ d.reshape(-1, d.shape[-1])
            dx = dx + d @ params[f"W{name}"].T
            if f"b{name}" in grads:
                grads[f"b{name}"] = d.reshape(-1, d.shape[-1]).sum(axis=0)
        return dx, grads

    return rule


# -- residual blocks, embeddings, GELU ----------------------------------------------------


def _residual_skip_dropped(layer, params, cache, dy):
    stack, run = cache
    dx, grads, _ = stack.backward(params, run, dy)
    return dx, grads  # the skip path's dL/dy never added


def _embedding_overwritten(layer, params, cache, dy):
    ids = cache
    grad = np.zeros_like(params["W"])
    grad[ids.ravel()] = dy.reshape(-1, dy.shape[-1])  # assignment: the last id wins
    return np.zeros(ids.shape), {"W": grad}


def _gelu_tanh_derivative(layer, params, cache, dy):
    z = cache[0]  # (z, a, f, rounding)
    approximate = ACTIVATIONS["gelu_tanh"].bound({})
    return dy * approximate.derivative(z, approximate.forward(z)), {}


LAYER_BUGS: tuple[LayerBackwardBug, ...] = (
    LayerBackwardBug("conv_kernel_flipped", "conv2d", "the convolution's input gradient "
                     "uses the flipped kernel (flipped twice: the scatter form needs no flip)",
                     _conv_flipped),
    LayerBackwardBug("conv_padding_lost", "conv2d", "the convolution's input gradient is "
                     "cut from the padded gradient's corner: the padding offset is lost in "
                     "backward", _conv_padding_lost),
    LayerBackwardBug("conv_bias_averaged", "conv2d", "the convolution's bias gradient is "
                     "averaged over the output pixels instead of summed", _conv_bias_averaged),
    LayerBackwardBug("max_pool_every_element", "max_pool2d", "max pooling sends the "
                     "gradient to every element of the window, not only to its maximum",
                     _max_pool_everywhere),
    LayerBackwardBug("flatten_channels_last", "flatten", "flatten's gradient is reshaped "
                     "channels-last (NHWC) while the forward flattened NCHW",
                     _flatten_channels_last),
    LayerBackwardBug("batch_norm_without_mean_terms", "batch_norm", "BatchNorm backward "
                     "without the terms of the batch mean and variance (dx = dy gamma / std)",
                     _batch_norm_without_mean_terms),
    LayerBackwardBug("batch_norm_without_variance_term", "batch_norm", "BatchNorm backward "
                     "without the variance's term (x_hat mean(dx_hat x_hat))",
                     _batch_norm_without_variance_term),
    LayerBackwardBug("layer_norm_wrong_axis", "layer_norm", "LayerNorm backward takes its "
                     "means over the batch axis instead of the features",
                     _layer_norm_wrong_axis),
    LayerBackwardBug("attention_scale_missing", "attention", "attention backward without "
                     "the 1/sqrt(d) scale in dq and dk", _attention(scale_in_backward=False)),
    LayerBackwardBug("softmax_jacobian_diagonal", "attention", "attention's softmax "
                     "backward uses only the Jacobian's diagonal p (1 - p)",
                     _attention(full_jacobian=False)),
    LayerBackwardBug("residual_skip_dropped", "residual", "the residual block's gradient "
                     "is not added: dx misses the skip path's dL/dy", _residual_skip_dropped),
    LayerBackwardBug("embedding_overwritten", "embedding", "embedding gradients are "
                     "assigned, not accumulated: repeated ids keep only their last row",
                     _embedding_overwritten),
    LayerBackwardBug("gelu_tanh_derivative", "gelu", "GELU's derivative taken from the tanh "
                     "approximation while the forward pass is the exact erf form",
                     _gelu_tanh_derivative),
)
"""Every layer bug shape."""

BY_KIND: dict[str, LayerBackwardBug] = {bug.kind: bug for bug in LAYER_BUGS}


def layer_hypotheses(case: Case) -> list[Bug]:
    """The layer bugs that can show in a sequence ``case`` (empty for an MLP)."""
    return [bug for bug in LAYER_BUGS if bug.applies(case)]


def overrides(bugs: tuple[Bug, ...]) -> dict[str, Rule]:
    """The backward rules the textbook uses instead of the right ones, by layer type."""
    return {bug.layer_type: bug.rule for bug in bugs if isinstance(bug, LayerBackwardBug)}

