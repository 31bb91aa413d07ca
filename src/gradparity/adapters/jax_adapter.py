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

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradparity.adapters.base import (
    Adapter,
    Availability,
    LayerResult,
    LossResult,
    PrecisionError,
    TrainingSession,
)
from gradparity.adapters.jax_functions import (
    ACTIVATIONS,
    LAYERS,
    LOSSES,
    Options,
    layer_unsupported_reason,
    run_stack,
)
from gradparity.adapters.jax_optax import (
    COMPILE_STATS,
    OPTIMIZERS,
    injected_values,
    update_program,
    update_structure,
)
from gradparity.reference.sequence import running_entries
from gradparity.spec.architectures import thawed
from gradparity.spec.case import Case
from gradparity.spec.data import Problem

# optax state fields -> the reference's slot names, per state type
STATE_SLOTS: dict[str, dict[str, str]] = {
    "ScaleByAdamState": {"mu": "first_moment", "nu": "second_moment"},
    "ScaleByAmsgradState": {"mu": "first_moment", "nu": "second_moment",
                            "nu_max": "max_second_moment"},
    "TraceState": {"trace": "momentum_buffer"},
    "ScaleByRmsState": {"nu": "square_avg"},
    "ScaleByRStdDevState": {"mu": "grad_avg", "nu": "square_avg"},
    "ScaleByRssState": {"sum_of_squares": "sum_of_squares"},
}

NOT_EXPRESSIBLE_LOSSES = {
    "binary_cross_entropy": "optax has no binary cross-entropy on probabilities "
    "(only sigmoid_binary_cross_entropy on logits)",
    "softmax_cross_entropy_weighted": "optax's softmax cross-entropy takes no class weights",
}

def unsupported_reason(case: Case) -> str | None:
    """Why optax (or lax and Flax) cannot express ``case`` exactly, or None."""
    hp = case.hparams
    for spec in case.layer_specs:
        reason = layer_unsupported_reason(spec)
        if reason is not None:
            return reason
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
    if case.optimizer == "rmsprop" and hp["momentum"] and not case.option("lr_in_momentum"):
        return ("optax.rmsprop scales by the learning rate before its momentum trace "
                "(lr_in_momentum=True)")
    if case.option("schedule") == "step" and case.dtype == "float64":
        return ("optax.exponential_decay computes the learning rate in float32 even with x64 "
                "on (int32 step count), about 1e-8 relative: no float64 comparison possible")
    if (case.option("schedule") == "cosine" and case.option("cosine_past_period") == "continue"
            and case.steps - 1 > (case.option("cosine_period") or case.steps)):
        return "optax.cosine_decay_schedule holds its final value past decay_steps"
    return None


def _set_x64(enabled: bool) -> None:
    jax.config.update("jax_enable_x64", enabled)


def make_loss(
    activations: tuple[str, ...], loss_name: str, options: Options
) -> Callable[[dict, list, jax.Array, jax.Array, list], jax.Array]:
    """The loss of params and of zero offsets added to each z_l.

    The gradient with respect to an offset that is added to z_l is dL/dz_l: the
    vector-Jacobian product through that layer output. ``masks`` are the
    NumPy-drawn dropout keep masks (already scaled by 1 / (1 - p)), one per
    hidden layer, or empty: jax.random would draw different ones.
    """

    def loss_fn(params: dict, offsets: list, x: jax.Array, y: jax.Array,
                masks: list) -> jax.Array:
        a = x
        for layer, activation in enumerate(activations, start=1):
            z = a @ params[f"W{layer}"] + offsets[layer - 1]
            if f"b{layer}" in params:  # a network without biases has none
                z = z + params[f"b{layer}"]
            a = ACTIVATIONS[activation](z, options)
            if masks and layer < len(activations):
                a = a * masks[layer - 1]
        return LOSSES[loss_name](a, y, options)

    return loss_fn


# options that change the loss function's math; the rest (schedules) only the update
LOSS_OPTIONS = ("negative_slope", "elu_alpha", "huber_delta", "smooth_l1_beta",
                "label_smoothing")


@functools.lru_cache(maxsize=256)
def _gradient_program(activations: tuple[str, ...], loss: str, loss_options: tuple) -> Callable:
    """The jitted loss-and-gradient of one architecture's math. jax.jit compiles it once
    per input shape and dtype: seeds, data, optimizers and their hyperparameters all
    reuse it (``COMPILE_STATS.gradient_programs`` counts the compilations)."""
    loss_fn = make_loss(activations, loss, dict(loss_options))

    def counted(*args):
        COMPILE_STATS.gradient_programs += 1  # runs only while tracing
        return loss_fn(*args)

    return jax.jit(jax.value_and_grad(counted, argnums=(0, 1)))


@functools.lru_cache(maxsize=64)
def _sequence_program(layers: tuple, loss: str, loss_options: tuple) -> Callable:
    """The jitted loss-and-gradient of a sequence network (``case.layers``): its layers
    in lax and Flax (:func:`gradparity.adapters.jax_functions.run_stack`), the loss on
    every position's row, the running statistics after the pass as auxiliary output."""
    specs, options = [thawed(spec) for spec in layers], dict(loss_options)

    def loss_fn(params: dict, offsets: dict, x: jax.Array, y: jax.Array, state: dict):
        COMPILE_STATS.gradient_programs += 1  # runs only while tracing
        out, new_state = run_stack(specs, params, x, True, state, offsets)
        rows = out.reshape(-1, out.shape[-1])
        targets = y.reshape(-1) if y.dtype.kind == "i" else y.reshape(rows.shape)
        return LOSSES[loss](rows, targets, options), new_state

    return jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))


def program_keys(case: Case) -> tuple[tuple, tuple]:
    """What jax.jit compiles each program for: ``(gradient, update)``. The gradient
    program per architecture (activations, loss and its options, layer sizes, batch,
    dropout masks or none) and dtype; the update program per optimizer structure,
    parameter shapes and dtype. A matrix compiles as many programs as it has distinct
    keys (``nox -s bench`` prints both counts; tests hold them equal)."""
    options = case.all_options
    shapes = (case.layers, case.input_shape) if case.is_sequence else case.layer_sizes
    architecture = (case.activations, case.loss,
                    tuple((name, options[name]) for name in LOSS_OPTIONS), shapes,
                    case.batch_size, bool(options["dropout"]), case.dtype)
    return architecture, (*update_structure(case), shapes, case.dtype)


def _compiled(case: Case) -> tuple[Callable, Callable, optax.GradientTransformation]:
    """The gradient program (per architecture), the update program (per optimizer
    structure) and this case's optax transformation (its hyperparameter values)."""
    options = case.all_options
    loss_options = tuple((name, options[name]) for name in LOSS_OPTIONS)
    apply, factory = update_program(*update_structure(case))
    transform = factory(**injected_values(case))
    if case.is_sequence:
        return _sequence_program(case.layers, case.loss, loss_options), apply, transform
    return _gradient_program(case.activations, case.loss, loss_options), apply, transform


def _clear_programs() -> None:
    _gradient_program.cache_clear()
    _sequence_program.cache_clear()
    update_program.cache_clear()


_compiled.cache_clear = _clear_programs  # type: ignore[attr-defined]


def _placed(method: Callable) -> Callable:
    """Run a session method with the session's device as JAX's default (arrays created
    and programs run there) and, on a GPU, float32 matmuls at full precision."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._device is None:  # JAX's own default device: nothing to set
            return method(self, *args, **kwargs)
        with contextlib.ExitStack() as stack:
            stack.enter_context(jax.default_device(self._device))
            if self._device.platform != "cpu":
                # XLA's GPU default may compute float32 dots in TF32: not float32 parity
                stack.enter_context(jax.default_matmul_precision("highest"))
            return method(self, *args, **kwargs)

    return wrapper


def _placed_array(value: Any) -> Any:
    """``value`` (an array, or a dict, list or tuple of them) as JAX arrays on the default
    device, in JAX's canonical dtype (float32 for float64 data while x64 is off, as
    ``jnp.asarray`` gives), in one transfer. ``jnp.asarray`` would compile and run a
    small program per shape and dtype (about 90 on the default matrix, traced and
    lowered again in every process); a transfer compiles nothing."""
    return jax.device_put(jax.tree.map(np.asarray, value))


class _JaxSession:
    def __init__(self, case: Case, problem: Problem, device: Any = None) -> None:
        self._device = device
        self._start(case, problem)

    @_placed
    def _start(self, case: Case, problem: Problem) -> None:
        _set_x64(case.dtype == "float64")
        self._case = case
        self._params = _placed_array(dict(problem.params))
        self._problem = problem
        # the dtype JAX really gives the inputs (float32 when x64 is off): a float64 case
        # then fails the dtype check on x instead of warning here
        dtype = _placed_array(problem.x[:1]).dtype
        self._running = _placed_array(dict(problem.state))
        if case.is_sequence:
            stack = case.network().stack
            dtype = _placed_array(next(iter(problem.params.values()))[:1]).dtype
            self._offsets: Any = {name: _placed_array(np.zeros((case.batch_size, *shape), dtype))
                                  for name, shape in zip(stack.names, stack.shapes[1:],
                                                         strict=True)}
        else:
            self._offsets = [_placed_array(np.zeros((case.batch_size, width), dtype))
                             for width in case.layer_sizes[1:]]
        self._value_and_grad, self._apply, transform = _compiled(case)
        self._steps_taken = 0
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
        # a read-only view of JAX's buffer where it is on the host (JAX arrays never
        # change, and nothing here donates them), a copy from a device
        return np.asarray(leaf)

    @_placed
    def loss_and_gradients(self, evaluation: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        batch = self._problem.batch(evaluation)
        x, y, masks = _placed_array((batch.x, batch.y, list(batch.masks)))
        if batch.x.dtype.kind == "f":  # token ids stay integers
            self._check_dtype("x", x)
        before, started = COMPILE_STATS.count, time.perf_counter()
        if self._case.is_sequence:
            (loss, self._running), (self._grads, self._deltas) = self._value_and_grad(
                self._params, self._offsets, x, y, self._running)
        else:
            loss, (self._grads, self._deltas) = self._value_and_grad(
                self._params, self._offsets, x, y, masks
            )
        if COMPILE_STATS.count != before:
            COMPILE_STATS.seconds += time.perf_counter() - started
        grads = {name: self._to_reference(name, g) for name, g in self._grads.items()}
        return self._to_reference("loss", loss), grads

    def backward_signals(self) -> dict[str, np.ndarray]:
        if self._case.is_sequence:
            return {name: self._to_reference("delta", self._deltas[name])
                    for name in self._offsets}
        return {f"z{layer}": self._to_reference("delta", d)
                for layer, d in enumerate(self._deltas, start=1)}

    @_placed
    def set_parameters(self, params) -> None:
        self._params = _placed_array(dict(params))

    @_placed
    def step(self, completed_steps: int) -> dict[str, np.ndarray]:
        if self._grads is None:
            raise RuntimeError("step() before loss_and_gradients()")
        if completed_steps != self._steps_taken:
            raise RuntimeError(f"jax: step {completed_steps + 1} requested after "
                               f"{self._steps_taken} steps (optax's schedule counts them)")
        before, started = COMPILE_STATS.count, time.perf_counter()
        self._params, self._opt_state = self._apply(self._params, self._grads, self._opt_state)
        if COMPILE_STATS.count != before:
            COMPILE_STATS.seconds += time.perf_counter() - started
        self._steps_taken += 1
        return {name: self._to_reference(name, p) for name, p in self._params.items()}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        # optax traces *updates* (already multiplied by -lr in rmsprop): the
        # reference keeps the buffer of steps to subtract, so the sign flips
        negate_trace = self._case.optimizer == "rmsprop"

        def visit(node: Any) -> None:
            slots = STATE_SLOTS.get(type(node).__name__)
            if slots is not None:
                for field, slot in slots.items():
                    for name, leaf in getattr(node, field).items():
                        value = self._to_reference(name, leaf)
                        if slot == "momentum_buffer" and negate_trace:
                            value = -value
                        arrays[f"{slot}/{name}"] = value
            elif isinstance(node, tuple | list):
                for child in node:
                    visit(child)

        visit(self._opt_state)
        arrays.update(running_entries({name: self._to_reference(name, value)
                                       for name, value in self._running.items()}))
        return arrays


class JaxAdapter(Adapter):
    """``jax.grad`` + optax, on JAX's default device or on ``device`` ("cpu", "cuda")."""

    name = "jax"

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def _device(self) -> Any:
        """The JAX device object (None: JAX's default); RuntimeError if there is none."""
        if self.device is None:
            # the CPU adapter computes on the CPU even where JAX would default to a GPU
            return None if jax.default_backend() == "cpu" else jax.devices("cpu")[0]
        return jax.devices("gpu" if self.device == "cuda" else self.device)[0]

    def availability(self) -> Availability:
        version = f"jax {jax.__version__}, optax {optax.__version__}"
        try:
            self._device()
        except RuntimeError as error:
            return Availability(False, version, f"jax {jax.__version__} has no {self.device} "
                                f"backend ({str(error).splitlines()[0]}); a GPU needs "
                                "jax[cuda12]")
        return Availability(True, version, "")

    def unsupported_reason(self, case: Case) -> str | None:
        return unsupported_reason(case)

    def on_device(self, device: str) -> Adapter:
        return JaxAdapter(device)

    def start(self, case: Case, problem: Problem) -> TrainingSession:
        return _JaxSession(case, problem, self._device())

    def run_layer(self, spec, params, x, dy, training=True, state=None) -> LayerResult:
        kind = spec["type"]
        settings = {k: v for k, v in spec.items() if k != "type"}
        _set_x64(np.asarray(dy).dtype == np.float64)
        with jax.default_device(self._device() or jax.devices("cpu")[0]):
            tensors = {n: jnp.asarray(np.asarray(v)) for n, v in params.items()}
            inputs = jnp.asarray(np.asarray(x))
            buffers = {n: jnp.asarray(np.asarray(v)) for n, v in (state or {}).items()}
            differentiable = inputs.dtype.kind == "f"

            def run(p, value):
                return LAYERS[kind](p, value, settings, training, buffers)

            if differentiable:
                (output, new_state), pullback = jax.vjp(
                    lambda p, value: run(p, value), tensors, inputs, has_aux=False)
                grads, dx = pullback((jnp.asarray(np.asarray(dy)),
                                      jax.tree.map(jnp.zeros_like, new_state)))
            else:  # integer inputs (token ids): no gradient with respect to them
                (output, new_state), pullback = jax.vjp(lambda p: run(p, inputs), tensors)
                (grads,) = pullback((jnp.asarray(np.asarray(dy)),
                                     jax.tree.map(jnp.zeros_like, new_state)))
                dx = np.zeros(np.shape(x))
        return LayerResult(self.name, np.asarray(output), np.asarray(dx),
                           {n: np.asarray(g) for n, g in grads.items()},
                           {n: np.asarray(v) for n, v in new_state.items()})

    def layer_unsupported_reason(self, spec) -> str | None:
        return layer_unsupported_reason(spec)

    def loss_unsupported_reason(self, loss: str) -> str | None:
        return NOT_EXPRESSIBLE_LOSSES.get(loss)

    def run_loss(self, name, options, y_hat, y) -> LossResult:
        _set_x64(np.asarray(y_hat).dtype == np.float64)
        value, gradient = jax.value_and_grad(lambda out: LOSSES[name](out, jnp.asarray(y),
                                                                      options))(
            jnp.asarray(np.asarray(y_hat)))
        return LossResult(self.name, float(value), np.asarray(gradient))


ADAPTER = JaxAdapter()
__all__ = ["ADAPTER", "COMPILE_STATS", "OPTIMIZERS", "JaxAdapter", "unsupported_reason"]
