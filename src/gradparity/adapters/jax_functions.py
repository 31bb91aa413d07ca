"""JAX's building blocks: activations (``jax.nn``), losses (``optax.losses``) and layers
(``jax.lax``, ``jax.nn`` and Flax), keyed like the reference's registries. The adapter
(:mod:`gradparity.adapters.jax_adapter`) assembles networks from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp
import optax

from gradparity.reference.layers.stack import stack_names

Options = Mapping[str, Any]

# Each entry takes the pre-activation and the case options (its parameter, if any).
ACTIVATIONS: dict[str, Callable[[jax.Array, Options], jax.Array]] = {
    "identity": lambda z, o: z,
    "sigmoid": lambda z, o: jax.nn.sigmoid(z),
    "tanh": lambda z, o: jnp.tanh(z),
    "relu": lambda z, o: jax.nn.relu(z),
    "leaky_relu": lambda z, o: jax.nn.leaky_relu(z, negative_slope=o["negative_slope"]),
    "elu": lambda z, o: jax.nn.elu(z, alpha=o["elu_alpha"]),
    # jax.nn.gelu's default is the tanh form: pass it explicitly
    "gelu": lambda z, o: jax.nn.gelu(z, approximate=False),
    "gelu_tanh": lambda z, o: jax.nn.gelu(z, approximate=True),
    "silu": lambda z, o: jax.nn.silu(z),
    "softplus": lambda z, o: jax.nn.softplus(z),
}

# Each entry takes the output, the targets and the case options.
LOSSES: dict[str, Callable[[jax.Array, jax.Array, Options], jax.Array]] = {
    "mse": lambda out, y, o: jnp.mean(optax.losses.squared_error(out, y)),
    "softmax_cross_entropy": lambda out, y, o: jnp.mean(
        optax.losses.softmax_cross_entropy_with_integer_labels(out, y)
    ),
    "binary_cross_entropy_with_logits": lambda out, y, o: jnp.mean(
        optax.losses.sigmoid_binary_cross_entropy(out, y)
    ),
    "mse_sum": lambda out, y, o: jnp.sum(optax.losses.squared_error(out, y)),
    "mse_batch_mean": lambda out, y, o: jnp.sum(optax.losses.squared_error(out, y))
    / out.shape[0],
    # optax.losses.l2_loss is 0.5 * squared_error: the "half" family
    "half_mse": lambda out, y, o: jnp.mean(optax.losses.l2_loss(out, y)),
    "half_mse_sum": lambda out, y, o: jnp.sum(optax.losses.l2_loss(out, y)),
    "half_mse_batch_mean": lambda out, y, o: jnp.sum(optax.losses.l2_loss(out, y))
    / out.shape[0],
    "huber": lambda out, y, o: jnp.mean(
        optax.losses.huber_loss(out, y, delta=o["huber_delta"])),
    # optax has no smooth_l1: it is huber with delta = beta, divided by beta (catalogued)
    "smooth_l1": lambda out, y, o: jnp.mean(
        optax.losses.huber_loss(out, y, delta=o["smooth_l1_beta"])
    ) / o["smooth_l1_beta"],
    "softmax_cross_entropy_soft": lambda out, y, o: jnp.mean(
        optax.losses.softmax_cross_entropy(out, y)
    ),
    "softmax_cross_entropy_sum": lambda out, y, o: jnp.sum(
        optax.losses.softmax_cross_entropy_with_integer_labels(out, y)
    ),
    "softmax_cross_entropy_smoothed": lambda out, y, o: jnp.mean(
        optax.losses.softmax_cross_entropy(
            out, optax.smooth_labels(jax.nn.one_hot(y, out.shape[1], dtype=out.dtype),
                                     o["label_smoothing"])
        )
    ),
}


def _dense(params, x, s, training, state):
    y = x @ params["W"]
    return (y + params["b"] if "b" in params else y), {}


def _flatten(params, x, s, training, state):
    return x.reshape(x.shape[0], -1), {}  # NCHW order: the reference's layout


def _activation(name: str) -> Callable:
    def run(params, x, s, training, state):
        options = {"negative_slope": s.get("negative_slope", 0.01),
                   "elu_alpha": s.get("elu_alpha", 1.0)}
        return ACTIVATIONS[name](x, options), {}

    return run


# Layout: the reference keeps images NCHW and kernels OIHW; JAX's convolutions and Flax's
# layers here run NHWC with HWIO kernels, so each converts on the way in and out.
def _nhwc(x):
    return jnp.transpose(x, (0, 2, 3, 1))


def _nchw(x):
    return jnp.transpose(x, (0, 3, 1, 2))


def _conv_padding(padding):
    if padding in ("same", "valid"):
        return padding.upper()  # XLA's 'SAME' puts the odd pixel after (bottom, right)
    return ((padding, padding), (padding, padding))


def _conv2d(params, x, s, training, state):
    kernel = jnp.transpose(params["W"], (2, 3, 1, 0))  # OIHW -> HWIO
    stride, dilation = s.get("stride", 1), s.get("dilation", 1)
    y = jax.lax.conv_general_dilated(
        _nhwc(x), kernel, window_strides=(stride, stride),
        padding=_conv_padding(s.get("padding", 0)), rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=s.get("groups", 1),
        precision=jax.lax.Precision.HIGHEST)
    if "b" in params:
        y = y + params["b"]
    return _nchw(y), {}


def _conv_transpose2d(params, x, s, training, state):
    # torch's (in, out, k, k) kernel is the forward conv's (I=out, O=in): HWIO with the
    # roles swapped; lax.conv_transpose(transpose_kernel=True) flips it spatially, and
    # torch's padding p becomes d (k - 1) - p on each side (+ output_padding after)
    k, stride = s.get("kernel", 3), s.get("stride", 1)
    dilation, pad = s.get("dilation", 1), s.get("padding", 0)
    edge = dilation * (k - 1) - pad
    kernel = jnp.transpose(params["W"], (2, 3, 1, 0))
    y = jax.lax.conv_transpose(
        _nhwc(x), kernel, strides=(stride, stride),
        padding=((edge, edge + s.get("output_padding", 0)),) * 2,
        rhs_dilation=(dilation, dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        transpose_kernel=True, precision=jax.lax.Precision.HIGHEST)
    if "b" in params:
        y = y + params["b"]
    return _nchw(y), {}


def _pool(kind: str) -> Callable:
    def run(params, x, s, training, state):
        k, p = s.get("kernel", 2), s.get("padding", 0)
        stride = s.get("stride") or k  # Flax's own default would be 1: catalogued
        options = {"window_shape": (k, k), "strides": (stride, stride),
                   "padding": ((p, p), (p, p))}
        if kind == "max":
            return _nchw(linen.max_pool(_nhwc(x), **options)), {}
        return _nchw(linen.avg_pool(_nhwc(x), count_include_pad=s.get("count_include_pad",
                                                                         True),
                                    **options)), {}

    return run


def _fast_variance(s) -> bool:
    """Flax's ``use_fast_variance`` (its default True: ``mean(x^2) - mean(x)^2``) as the
    case's layer asks (catalogued: ``norm_variance_form``)."""
    return s.get("variance", "centered") == "mean_of_squares"


def _layer_norm(params, x, s, training, state):
    affine = "gamma" in params
    module = linen.LayerNorm(epsilon=s.get("eps", 1e-5), use_scale=affine, use_bias=affine,
                             use_fast_variance=_fast_variance(s), dtype=x.dtype,
                             param_dtype=x.dtype)
    variables = {"params": {"scale": params["gamma"], "bias": params["beta"]}} if affine \
        else {"params": {}}
    return module.apply(variables, x), {}


def _batch_norm(params, x, s, training, state):
    train = s.get("training", True)
    module = linen.BatchNorm(use_running_average=not train,
                             momentum=1.0 - s.get("momentum", 0.1),  # Flax weighs the old
                             epsilon=s.get("eps", 1e-5), use_fast_variance=_fast_variance(s),
                             dtype=x.dtype, param_dtype=x.dtype)
    images = x.ndim == 4
    variables = {"params": {"scale": params["gamma"], "bias": params["beta"]},
                 "batch_stats": {"mean": state["running_mean"], "var": state["running_var"]}}
    y, updated = module.apply(variables, _nhwc(x) if images else x, mutable=["batch_stats"])
    stats = updated["batch_stats"]
    return (_nchw(y) if images else y), {"running_mean": stats["mean"],
                                         "running_var": stats["var"]}


def _embedding(params, x, s, training, state):
    module = linen.Embed(num_embeddings=s["vocab"], features=s["features"],
                         dtype=params["W"].dtype, param_dtype=params["W"].dtype)
    return module.apply({"params": {"embedding": params["W"]}}, x), {}


def _attention(params, x, s, training, state):
    heads = s.get("heads", 1)
    n, t, width = x.shape
    depth = width // heads
    bias = "bq" in params

    def projection(p, out=False):
        kernel = params[f"W{p}"]
        entry = {"kernel": kernel.reshape(heads, depth, width) if out
                 else kernel.reshape(width, heads, depth)}
        if bias:
            entry["bias"] = params[f"b{p}"] if out else params[f"b{p}"].reshape(heads, depth)
        return entry

    module = linen.MultiHeadDotProductAttention(
        num_heads=heads, qkv_features=width, out_features=width, use_bias=bias,
        deterministic=True, dtype=x.dtype, param_dtype=x.dtype,
        precision=jax.lax.Precision.HIGHEST)
    variables = {"params": {"query": projection("q"), "key": projection("k"),
                            "value": projection("v"), "out": projection("o", out=True)}}
    mask = linen.make_causal_mask(jnp.ones((n, t))) if s.get("causal", False) else None
    return module.apply(variables, x, mask=mask), {}


def _residual(params, x, s, training, state):
    y, new_state = run_stack(s["layers"], params, x, training, state)
    return x + y, new_state


def run_stack(specs, params, x, training, state, offsets=None):
    """The layers of ``specs`` in order; parameters and state named as the reference's
    stack names them (``conv1.W``, ``bn1.running_mean``). ``offsets`` (zeros, by layer
    name) are added to each layer's output: the gradient with respect to an offset is
    dL/d(that output), the backward signal."""
    new_state = {}
    for name, spec in zip(stack_names(specs), specs, strict=True):
        own = {k[len(name) + 1:]: v for k, v in params.items() if k.startswith(name + ".")}
        own_state = {k[len(name) + 1:]: v for k, v in state.items()
                     if k.startswith(name + ".")}
        settings = {k: v for k, v in spec.items() if k != "type"}
        x, layer_state = LAYERS[spec["type"]](own, x, settings, training, own_state)
        if offsets is not None:
            x = x + offsets[name]
        new_state.update({f"{name}.{k}": v for k, v in layer_state.items()})
    return x, new_state


LAYERS: dict[str, Callable[..., tuple[jax.Array, dict]]] = {
    "dense": _dense,
    "flatten": _flatten,
    "conv2d": _conv2d,
    "conv_transpose2d": _conv_transpose2d,
    "max_pool2d": _pool("max"),
    "avg_pool2d": _pool("avg"),
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
    "embedding": _embedding,
    "attention": _attention,
    "residual": _residual,
    **{name: _activation(name) for name in ACTIVATIONS},
}
"""Every reference layer type in JAX (``jax.lax`` convolutions, Flax linen layers):
``(params, x, settings, training, state) -> (output, new state)``. Parameters come in the
reference's layout and each function converts what it must (OIHW -> HWIO, NCHW ->
NHWC, attention kernels to Flax's (in, heads, depth)), so ``jax.vjp`` returns gradients
in that layout too."""


def layer_unsupported_reason(spec) -> str | None:
    """Why JAX/Flax cannot express the layer ``spec`` exactly (never emulated), or None."""
    kind = spec["type"]
    if kind == "batch_norm" and spec.get("running_var_unbiased", True):
        return "flax.linen.BatchNorm keeps the biased running variance"
    if kind == "embedding" and spec.get("padding_idx") is not None:
        return "flax.linen.Embed has no padding_idx"
    if kind == "residual":
        return next(filter(None, map(layer_unsupported_reason, spec["layers"])), None)
    return None
