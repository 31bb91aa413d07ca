"""JAX: a pure loss of a params pytree, ``jax.value_and_grad`` under ``jax.jit``, optax.

float64: JAX computes in float32 unless ``jax_enable_x64`` is on, and then
*silently* turns float64 inputs into float32. This adapter switches x64 on
before a float64 case and, independently, checks the dtype of every leaf it
gets back; a float64 case that would run in float32 raises ``PrecisionError``.

float32 cases run with x64 **off**, JAX's default. x64 also changes float32
results: optax then computes e.g. Adam's bias correction ``1 - beta**t`` in
float64 (the step count is int64). Setting the flag per case keeps a case's
numbers independent of which cases ran before it in the same process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradparity.adapters.base import Adapter, Availability, PrecisionError, TrainingSession
from gradparity.case import Case
from gradparity.data import Problem
from gradparity.reference.losses import HUBER_DELTA, LABEL_SMOOTHING, SMOOTH_L1_BETA

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "identity": lambda z: z,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,  # negative_slope 0.01
    "elu": jax.nn.elu,  # alpha 1
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),  # jax.nn.gelu's default is tanh
    "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True),
    "silu": jax.nn.silu,
    "softplus": jax.nn.softplus,
}

LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "mse": lambda out, y: jnp.mean(optax.losses.squared_error(out, y)),
    "softmax_cross_entropy": lambda out, y: jnp.mean(
        optax.losses.softmax_cross_entropy_with_integer_labels(out, y)
    ),
    "binary_cross_entropy_with_logits": lambda out, y: jnp.mean(
        optax.losses.sigmoid_binary_cross_entropy(out, y)
    ),
    "mse_sum": lambda out, y: jnp.sum(optax.losses.squared_error(out, y)),
    "mse_batch_mean": lambda out, y: jnp.sum(optax.losses.squared_error(out, y))
    / out.shape[0],
    # optax.losses.l2_loss is 0.5 * squared_error: the "half" family
    "half_mse": lambda out, y: jnp.mean(optax.losses.l2_loss(out, y)),
    "half_mse_sum": lambda out, y: jnp.sum(optax.losses.l2_loss(out, y)),
    "half_mse_batch_mean": lambda out, y: jnp.sum(optax.losses.l2_loss(out, y)) / out.shape[0],
    "huber": lambda out, y: jnp.mean(optax.losses.huber_loss(out, y, delta=HUBER_DELTA)),
    # optax has no smooth_l1: it is huber with delta = beta, divided by beta (catalogued)
    "smooth_l1": lambda out, y: jnp.mean(
        optax.losses.huber_loss(out, y, delta=SMOOTH_L1_BETA)
    ) / SMOOTH_L1_BETA,
    "softmax_cross_entropy_soft": lambda out, y: jnp.mean(
        optax.losses.softmax_cross_entropy(out, y)
    ),
    "softmax_cross_entropy_smoothed": lambda out, y: jnp.mean(
        optax.losses.softmax_cross_entropy(
            out, optax.smooth_labels(jax.nn.one_hot(y, out.shape[1], dtype=out.dtype),
                                     LABEL_SMOOTHING)
        )
    ),
}

NOT_EXPRESSIBLE_LOSSES = {
    "binary_cross_entropy": "optax has no binary cross-entropy on probabilities "
    "(only sigmoid_binary_cross_entropy on logits)",
    "softmax_cross_entropy_weighted": "optax's softmax cross-entropy takes no class weights",
}

def _with_coupled_decay(hp: dict, transform: optax.GradientTransformation):
    """torch's ``weight_decay`` on SGD/Adam adds wd * theta to the gradient first."""
    if hp["weight_decay"] == 0:
        return transform
    return optax.chain(optax.add_decayed_weights(hp["weight_decay"]), transform)


OPTIMIZERS: dict[str, Callable[[dict], optax.GradientTransformation]] = {
    "sgd": lambda hp: _with_coupled_decay(hp, optax.sgd(
        learning_rate=hp["lr"], momentum=hp["momentum"] or None, nesterov=hp["nesterov"],
    )),
    "adam": lambda hp: _with_coupled_decay(hp, optax.adam(
        learning_rate=hp["lr"], b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"],
    )),
    "adamw": lambda hp: optax.adamw(
        learning_rate=hp["lr"], b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"],
        weight_decay=hp["weight_decay"],
    ),
    "amsgrad": lambda hp: optax.amsgrad(
        learning_rate=hp["lr"], b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"],
    ),
    "rmsprop": lambda hp: optax.rmsprop(
        learning_rate=hp["lr"], decay=hp["alpha"], eps=hp["eps"],
        eps_in_sqrt=hp["eps_in_sqrt"], centered=hp["centered"],
        momentum=hp["momentum"] or None,
    ),
    "adagrad": lambda hp: optax.adagrad(
        learning_rate=hp["lr"], eps=hp["eps"],
        initial_accumulator_value=hp["initial_accumulator_value"],
    ),
}


def unsupported_reason(case: Case) -> str | None:
    """Why optax cannot express ``case`` exactly, or None."""
    hp = case.hparams
    if case.loss in NOT_EXPRESSIBLE_LOSSES:
        return NOT_EXPRESSIBLE_LOSSES[case.loss]
    if case.optimizer == "sgd" and hp["dampening"] != 0:
        return "optax.sgd's momentum trace has no dampening"
    if case.optimizer == "adagrad" and not hp["eps_in_sqrt"]:
        return "optax.adagrad adds eps inside the square root"
    if case.optimizer == "amsgrad" and not hp["max_of_bias_corrected"]:
        return "optax.amsgrad keeps the maximum of the bias-corrected second moment"
    if hp["clip_norm"] and hp["clip_norm_eps"] != 0:
        return "optax.clip_by_global_norm adds no epsilon to the norm"
    return None


def _set_x64(enabled: bool) -> None:
    jax.config.update("jax_enable_x64", enabled)


def _make_loss(
    activations: tuple[str, ...], loss_name: str
) -> Callable[[dict, list, jax.Array, jax.Array], jax.Array]:
    """The loss of params and of zero offsets added to each z_l.

    The gradient with respect to an offset that is added to z_l is dL/dz_l: the
    vector-Jacobian product through that layer output.
    """

    def loss_fn(params: dict, offsets: list, x: jax.Array, y: jax.Array) -> jax.Array:
        a = x
        for layer, activation in enumerate(activations, start=1):
            z = a @ params[f"W{layer}"] + params[f"b{layer}"] + offsets[layer - 1]
            a = ACTIVATIONS[activation](z)
        return LOSSES[loss_name](a, y)

    return loss_fn


@functools.lru_cache(maxsize=256)
def _compiled(
    activations: tuple[str, ...], loss: str, optimizer: str, hyperparameters: tuple
) -> tuple[Callable, Callable, optax.GradientTransformation]:
    """Jitted loss-and-grad and update, shared by every case with the same math.

    jax.jit caches the compiled program per input shape and dtype, so cases that
    differ only in seed or data reuse it instead of recompiling.
    """
    hp = dict(hyperparameters)
    clipping = []
    if hp["clip_value"]:
        clipping.append(optax.clip(hp["clip_value"]))
    if hp["clip_norm"]:
        clipping.append(optax.clip_by_global_norm(hp["clip_norm"]))
    transform = optax.chain(*clipping, OPTIMIZERS[optimizer](hp))

    def apply(params: dict, grads: dict, opt_state: optax.OptState) -> tuple:
        updates, opt_state = transform.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    value_and_grad = jax.jit(jax.value_and_grad(_make_loss(activations, loss), argnums=(0, 1)))
    return value_and_grad, jax.jit(apply), transform


class _JaxSession:
    def __init__(self, case: Case, problem: Problem) -> None:
        _set_x64(case.dtype == "float64")
        self._case = case
        self._params = {name: jnp.asarray(value) for name, value in problem.params.items()}
        self._x = jnp.asarray(problem.x)
        self._offsets = [
            jnp.zeros((problem.x.shape[0], width), dtype=self._x.dtype)
            for width in case.layer_sizes[1:]
        ]
        self._y = jnp.asarray(problem.y)
        self._check_dtype("x", self._x)
        self._value_and_grad, self._apply, transform = _compiled(
            case.activations, case.loss, case.optimizer, case.hyperparameters
        )
        self._opt_state = transform.init(self._params)
        self._grads: dict | None = None

    def _check_dtype(self, what: str, leaf: jax.Array) -> None:
        if leaf.dtype != np.dtype(self._case.dtype):
            raise PrecisionError(
                f"jax: {what} is {leaf.dtype}, case {self._case.id} is {self._case.dtype} "
                f"(jax_enable_x64={jax.config.jax_enable_x64})"
            )

    def _to_reference(self, name: str, leaf: jax.Array) -> np.ndarray:
        self._check_dtype(name, leaf)
        return np.array(leaf)

    def loss_and_gradients(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        loss, (self._grads, self._deltas) = self._value_and_grad(
            self._params, self._offsets, self._x, self._y
        )
        grads = {name: self._to_reference(name, g) for name, g in self._grads.items()}
        return self._to_reference("loss", loss), grads

    def backward_signals(self) -> dict[str, np.ndarray]:
        return {f"z{layer}": self._to_reference("delta", d)
                for layer, d in enumerate(self._deltas, start=1)}

    def set_parameters(self, params) -> None:
        self._params = {name: jnp.asarray(value) for name, value in params.items()}

    def step(self) -> dict[str, np.ndarray]:
        if self._grads is None:
            raise RuntimeError("step() before loss_and_gradients()")
        self._params, self._opt_state = self._apply(self._params, self._grads, self._opt_state)
        return {name: self._to_reference(name, p) for name, p in self._params.items()}


class JaxAdapter(Adapter):
    """``jax.grad`` + optax."""

    name = "jax"

    def availability(self) -> Availability:
        return Availability(True, f"jax {jax.__version__}, optax {optax.__version__}", "")

    def unsupported_reason(self, case: Case) -> str | None:
        return unsupported_reason(case)

    def start(self, case: Case, problem: Problem) -> TrainingSession:
        return _JaxSession(case, problem)


ADAPTER = JaxAdapter()
