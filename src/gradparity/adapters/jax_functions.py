"""JAX's building blocks: activations (``jax.nn``), losses (``optax.losses``) and layers
(``jax.lax``, ``jax.nn`` and Flax), keyed like the reference's registries. The adapter
(:mod:`gradparity.adapters.jax_adapter`) assembles networks from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

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
    return x.reshape(x.shape[0], -1), {}


def _activation(name: str) -> Callable:
    def run(params, x, s, training, state):
        options = {"negative_slope": s.get("negative_slope", 0.01),
                   "elu_alpha": s.get("elu_alpha", 1.0)}
        return ACTIVATIONS[name](x, options), {}

    return run


LAYERS: dict[str, Callable[..., tuple[jax.Array, dict]]] = {
    "dense": _dense,
    "flatten": _flatten,
    **{name: _activation(name) for name in ACTIVATIONS},
}
"""Every reference layer type in JAX: ``(params, x, settings, training, state) ->
(output, new state)``, parameters in JAX's layout."""

TO_JAX: dict[tuple[str, str], Callable] = {}
"""(layer type, parameter) -> (to JAX's layout, back to the reference's)."""


def to_jax(kind: str, name: str, array):
    return TO_JAX[(kind, name)][0](array) if (kind, name) in TO_JAX else array


def from_jax(kind: str, name: str, array):
    return TO_JAX[(kind, name)][1](array) if (kind, name) in TO_JAX else array
