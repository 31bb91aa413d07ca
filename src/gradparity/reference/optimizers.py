"""Optimizer update equations, written out.

Each optimizer is a pair of pure functions in the optax style: ``init(params)``
returns a state, ``update(params, grads, state, hyperparameters)`` returns
``(new_params, new_state)``. Nothing is updated in place. ``t`` counts steps
from 1. The equations follow ``torch.optim``; where optax writes the same
method differently the result is mathematically identical (noted per optimizer).
The arrays may be of any array API namespace; each update computes in theirs
(:mod:`gradparity.reference.namespace`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from gradparity.reference.blocks import in_blocks
from gradparity.reference.namespace import namespace

Params = Mapping[str, np.ndarray]
Hyper = Mapping[str, Any]


class SGDState(NamedTuple):
    step: int
    momentum_buffer: dict[str, np.ndarray] | None  # None until the first step


def sgd_init(params: Params) -> SGDState:
    return SGDState(step=0, momentum_buffer=None)


def sgd_update(
    params: Params, grads: Params, state: SGDState, hp: Hyper
) -> tuple[dict[str, np.ndarray], SGDState]:
    """SGD with optional coupled weight decay, momentum, dampening and Nesterov.

        g_t = g_t + weight_decay * theta_{t-1}                  (coupled L2)
        b_1 = g_1;  b_t = momentum * b_{t-1} + (1 - dampening) g_t   (if momentum)
        d_t = g_t + momentum * b_t  (nesterov)  or  b_t
        theta_t = theta_{t-1} - lr * d_t

    optax.sgd's trace gives b_t = g_t + momentum b_{t-1} with b_0 = 0, the same
    numbers when dampening is 0 (optax has no dampening).
    """
    lr, momentum, dampening = hp["lr"], hp["momentum"], hp["dampening"]
    decayed = {n: grads[n] + hp["weight_decay"] * params[n] for n in params}
    buffers = None
    if momentum != 0:
        if state.momentum_buffer is None:
            buffers = {n: _copy(decayed[n]) for n in params}
        else:
            buffers = {
                n: momentum * state.momentum_buffer[n] + (1 - dampening) * decayed[n]
                for n in params
            }
        if hp["nesterov"]:
            directions = {n: decayed[n] + momentum * buffers[n] for n in params}
        else:
            directions = buffers
    else:
        directions = decayed
    new_params = {n: params[n] - lr * directions[n] for n in params}
    return new_params, SGDState(step=state.step + 1, momentum_buffer=buffers)


class AdamState(NamedTuple):
    step: int
    first_moment: dict[str, np.ndarray]  # m
    second_moment: dict[str, np.ndarray]  # v


def _copy(array: np.ndarray) -> np.ndarray:
    return namespace(array).asarray(array, copy=True)


def _zeros(params: Params) -> dict[str, np.ndarray]:
    # zeros, not zeros_like: NumPy's calloc hands over zeroed pages without writing a
    # copy's worth of zeros first (about 2.5 ms per 32 MiB array here)
    zeros = {}
    for n, p in params.items():
        xp = namespace(p)
        zeros[n] = np.zeros(np.shape(p), np.result_type(p)) if xp is np else xp.zeros_like(p)
    return zeros


def adam_init(params: Params) -> AdamState:
    return AdamState(step=0, first_moment=_zeros(params), second_moment=_zeros(params))


def adam_update(
    params: Params,
    grads: Params,
    state: AdamState,
    hp: Hyper,
    *,
    decoupled_weight_decay: bool = False,
    bias_correction: bool | str = True,
    eps_placement: str = "outside_sqrt",
) -> tuple[dict[str, np.ndarray], AdamState]:
    """Adam (Kingma & Ba) with weight decay coupled (Adam) or decoupled (AdamW).

        g_t = g_t + weight_decay * theta_{t-1}            (coupled, Adam)
        theta_{t-1} = theta_{t-1} (1 - lr * weight_decay)  (decoupled, AdamW)
        m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        m_hat = m_t / (1 - beta1^t),  v_hat = v_t / (1 - beta2^t)
        theta_t = theta_{t-1} - lr * m_hat / (sqrt(v_hat) + eps)

    ``eps_placement="inside_sqrt"`` uses sqrt(v_hat + eps) instead,
    ``bias_correction=False`` drops the two divisions and ``"without_power"`` divides
    by 1 - beta instead of 1 - beta^t; they exist to describe implementations that do
    so (the bug catalogue, gradparity.check.bugs), not as defaults.
    optax.adam / optax.adamw compute the same quantities (eps_root = 0).
    """
    lr, beta1, beta2, eps, decay = hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"]
    t = state.step + 1
    if decoupled_weight_decay:
        start = {n: params[n] * (1 - lr * decay) for n in params}
        g = dict(grads)
    else:
        start = dict(params)
        g = {n: grads[n] + decay * params[n] for n in params}
    m = {n: beta1 * state.first_moment[n] + (1 - beta1) * g[n] for n in params}
    v = {n: beta2 * state.second_moment[n] + (1 - beta2) * g[n] * g[n] for n in params}
    new_params = {}
    power = t if bias_correction != "without_power" else 1
    for n in params:
        m_hat = m[n] / (1 - beta1**power) if bias_correction else m[n]
        v_hat = v[n] / (1 - beta2**power) if bias_correction else v[n]
        xp = namespace(v_hat)
        if eps_placement == "outside_sqrt":
            denominator = xp.sqrt(v_hat) + eps
        else:
            denominator = xp.sqrt(v_hat + eps)
        new_params[n] = start[n] - lr * m_hat / denominator
    return new_params, AdamState(step=t, first_moment=m, second_moment=v)


def adamw_update(
    params: Params, grads: Params, state: AdamState, hp: Hyper, **variant: Any
) -> tuple[dict[str, np.ndarray], AdamState]:
    """AdamW: Adam with decoupled weight decay (see :func:`adam_update`)."""
    return adam_update(params, grads, state, hp, decoupled_weight_decay=True, **variant)


def _denominator(second: np.ndarray, eps: float, eps_in_sqrt: bool) -> np.ndarray:
    # torch.optim: sqrt(v) + eps; optax (rmsprop default, adagrad always): sqrt(v + eps)
    xp = namespace(second)
    return xp.sqrt(second + eps) if eps_in_sqrt else xp.sqrt(second) + eps


class RMSpropState(NamedTuple):
    step: int
    square_avg: dict[str, np.ndarray]  # v
    grad_avg: dict[str, np.ndarray]  # g_bar (used when centered)
    momentum_buffer: dict[str, np.ndarray]  # b (used when momentum > 0)


def rmsprop_init(params: Params) -> RMSpropState:
    return RMSpropState(0, _zeros(params), _zeros(params), _zeros(params))


def rmsprop_update(
    params: Params, grads: Params, state: RMSpropState, hp: Hyper
) -> tuple[dict[str, np.ndarray], RMSpropState]:
    """RMSprop (torch.optim.RMSprop's form; optax.rmsprop with eps_in_sqrt=False matches).

        v_t     = alpha v_{t-1} + (1 - alpha) g_t^2
        g_bar_t = alpha g_bar_{t-1} + (1 - alpha) g_t      (centered)
        s_t     = v_t - g_bar_t^2  (centered)  or  v_t
        d_t     = g_t / (sqrt(s_t) + eps)      (eps_in_sqrt: g_t / sqrt(s_t + eps))
        b_t     = momentum b_{t-1} + d_t;  theta_t = theta_{t-1} - lr b_t   (momentum > 0)
        theta_t = theta_{t-1} - lr d_t                                      (otherwise)

    ``lr_in_momentum`` (optax.rmsprop's order: scale_by_learning_rate before trace)
    accumulates lr-scaled steps instead, b_t = momentum b_{t-1} + lr_t d_t and
    theta_t = theta_{t-1} - b_t: the same numbers while lr is constant, different
    under a schedule (old steps keep their old learning rate).
    """
    alpha, momentum = hp["alpha"], hp["momentum"]
    v = {n: alpha * state.square_avg[n] + (1 - alpha) * grads[n] * grads[n] for n in params}
    g_bar = {n: alpha * state.grad_avg[n] + (1 - alpha) * grads[n] for n in params}
    new_params, buffers = {}, {}
    for n in params:
        second = v[n] - g_bar[n] * g_bar[n] if hp["centered"] else v[n]
        direction = grads[n] / _denominator(second, hp["eps"], hp["eps_in_sqrt"])
        if momentum and hp.get("lr_in_momentum"):
            buffers[n] = momentum * state.momentum_buffer[n] + hp["lr"] * direction
            new_params[n] = params[n] - buffers[n]
            continue
        if momentum:
            buffers[n] = momentum * state.momentum_buffer[n] + direction
            direction = buffers[n]
        else:
            buffers[n] = state.momentum_buffer[n]
        new_params[n] = params[n] - hp["lr"] * direction
    return new_params, RMSpropState(state.step + 1, v, g_bar, buffers)


class AdagradState(NamedTuple):
    step: int
    sum_of_squares: dict[str, np.ndarray]


def adagrad_init(params: Params, initial: float = 0.0) -> AdagradState:
    return AdagradState(0, {n: namespace(p).full_like(p, initial) for n, p in params.items()})


def adagrad_update(
    params: Params, grads: Params, state: AdagradState, hp: Hyper
) -> tuple[dict[str, np.ndarray], AdagradState]:
    """Adagrad: s_t = s_{t-1} + g_t^2 (s_0 = initial_accumulator_value),
    theta_t = theta_{t-1} - lr g_t / (sqrt(s_t) + eps)   (torch.optim.Adagrad, lr_decay 0)
    or ... / sqrt(s_t + eps) with eps_in_sqrt (optax.adagrad's only form), with optax's
    guard: the step is 0 where s_t = 0."""
    if state.step == 0 and hp["initial_accumulator_value"]:
        state = adagrad_init(params, hp["initial_accumulator_value"])
    total = {n: state.sum_of_squares[n] + grads[n] * grads[n] for n in params}
    new_params = {}
    for n in params:
        if hp["eps_in_sqrt"]:
            # optax's guard: where(s > 0, g / sqrt(s + eps), 0). It differs only where
            # s = 0, and there only when eps underflows to 0 in the dtype (0 / 0): the
            # catalogued convention adagrad_zero_accumulator_guard
            with np.errstate(invalid="ignore", divide="ignore"):
                step = hp["lr"] * grads[n] / _denominator(total[n], hp["eps"], True)
                step = namespace(step).where(total[n] > 0, step, 0.0)
        else:
            step = hp["lr"] * grads[n] / _denominator(total[n], hp["eps"], False)
        new_params[n] = params[n] - step
    return new_params, AdagradState(state.step + 1, total)


class AMSGradState(NamedTuple):
    step: int
    first_moment: dict[str, np.ndarray]
    second_moment: dict[str, np.ndarray]
    max_second_moment: dict[str, np.ndarray]


def amsgrad_init(params: Params) -> AMSGradState:
    return AMSGradState(0, _zeros(params), _zeros(params), _zeros(params))


def amsgrad_update(
    params: Params, grads: Params, state: AMSGradState, hp: Hyper
) -> tuple[dict[str, np.ndarray], AMSGradState]:
    """AMSGrad: Adam whose denominator uses the running maximum of the second moment.

    torch.optim.Adam(amsgrad=True) keeps the maximum of the raw v_t and divides it
    by the current bias correction: sqrt(max_t v) / sqrt(1 - beta2^t) + eps.
    optax.amsgrad keeps the maximum of the bias-corrected v_hat_t:
    sqrt(max_t v_hat) + eps (``max_of_bias_corrected``). The two differ once
    the maximum is attained at an earlier step.
    """
    beta1, beta2, eps, t = hp["beta1"], hp["beta2"], hp["eps"], state.step + 1
    m = {n: beta1 * state.first_moment[n] + (1 - beta1) * grads[n] for n in params}
    v = {n: beta2 * state.second_moment[n] + (1 - beta2) * grads[n] * grads[n] for n in params}
    correction1, correction2 = 1 - beta1**t, 1 - beta2**t
    new_params, maxima = {}, {}
    for n in params:
        xp = namespace(v[n])
        if hp["max_of_bias_corrected"]:
            maxima[n] = xp.maximum(state.max_second_moment[n], v[n] / correction2)
            denominator = xp.sqrt(maxima[n]) + eps
        else:
            maxima[n] = xp.maximum(state.max_second_moment[n], v[n])
            # math.sqrt keeps a Python float (weak), a NumPy sqrt would make the
            # float32 arithmetic float64
            denominator = xp.sqrt(maxima[n]) / math.sqrt(correction2) + eps
        new_params[n] = params[n] - hp["lr"] * (m[n] / correction1) / denominator
    return new_params, AMSGradState(t, m, v, maxima)


def state_arrays(optimizer: str, state: Any, hp: Hyper, *,
                 copy: bool = True) -> dict[str, np.ndarray]:
    """The optimizer state as ``{"<slot>/<parameter>": array}``, only the slots in use;
    copies unless ``copy=False`` (for a reader that is done before the next update: the
    updates make new arrays, they never write into the state's).

    Slot names are the reference's field names (``momentum_buffer``,
    ``first_moment``, ``second_moment``, ``max_second_moment``, ``square_avg``,
    ``grad_avg``, ``sum_of_squares``); adapters report their framework's state
    under the same names so every slot can be compared after every step.
    """
    unused = set()
    if optimizer == "rmsprop":
        if not hp["centered"]:
            unused.add("grad_avg")
        if not hp["momentum"]:
            unused.add("momentum_buffer")
    arrays = {}
    for slot, value in state._asdict().items():
        if isinstance(value, dict) and slot not in unused:
            arrays.update({f"{slot}/{name}": _copy(array) if copy else array
                           for name, array in value.items()})
    return arrays


def clip_gradients(grads: Params, hp: Hyper) -> dict[str, np.ndarray]:
    """Clipping before the update, by value then by global norm (0 disables either).

        g <- clip(g, -clip_value, clip_value)                   (torch clip_grad_value_,
                                                                  optax.clip)
        g <- g * min(1, clip_norm / (||g||_2 + clip_norm_eps))  (||g|| over every parameter)

    torch.nn.utils.clip_grad_norm_ adds 1e-6 to the norm, optax.clip_by_global_norm adds
    nothing: ``clip_norm_eps`` (default 1e-6) names that convention.
    """
    clipped = dict(grads)
    if hp.get("clip_value"):
        clipped = {n: namespace(g).clip(g, -hp["clip_value"], hp["clip_value"])
                   for n, g in clipped.items()}
    if hp.get("clip_norm"):
        norm = math.sqrt(sum(float(_squared_sum(g)) for g in clipped.values()))
        scale = hp["clip_norm"] / (norm + hp["clip_norm_eps"])
        if scale < 1:
            clipped = {n: g * scale for n, g in clipped.items()}
    return clipped


def _squared_sum(g: np.ndarray) -> np.ndarray:
    """sum(g^2) in float64."""
    xp = namespace(g)
    return xp.sum(xp.astype(g, xp.float64) ** 2)


def _clipping_first(update: Callable[..., Any]) -> Callable[..., Any]:
    def clipped_update(params, grads, state, hp, **variant):
        # the update is elementwise: on a large model, computed in cache-sized blocks
        return in_blocks(update, params, clip_gradients(grads, hp), state, hp, **variant)

    clipped_update.__doc__ = update.__doc__
    return clipped_update


CLIPPING = {"clip_value": 0.0, "clip_norm": 0.0, "clip_norm_eps": 1e-6}


@dataclass(frozen=True)
class Optimizer:
    """A named optimizer and its hyperparameters with defaults (``None`` = required).

    Defaults are PyTorch's. Boolean defaults mark flags, which take True/False.
    """

    name: str
    hyperparameters: Mapping[str, float | bool | None]
    init: Callable[[Params], Any]
    update: Callable[..., tuple[dict[str, np.ndarray], Any]]


_ADAM_DEFAULTS = {"lr": None, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

_UNCLIPPED: dict[str, Optimizer] = {
    "sgd": Optimizer(
        "sgd",
        {"lr": None, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0},
        sgd_init,
        sgd_update,
    ),
    "adam": Optimizer("adam", {**_ADAM_DEFAULTS, "weight_decay": 0.0}, adam_init, adam_update),
    "adamw": Optimizer("adamw", {**_ADAM_DEFAULTS, "weight_decay": 0.01}, adam_init, adamw_update),
    "amsgrad": Optimizer("amsgrad", {**_ADAM_DEFAULTS, "max_of_bias_corrected": False},
                         amsgrad_init, amsgrad_update),
    "rmsprop": Optimizer(
        "rmsprop",
        {"lr": None, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False,
         "eps_in_sqrt": False},
        rmsprop_init, rmsprop_update,
    ),
    "adagrad": Optimizer(
        "adagrad",
        {"lr": None, "eps": 1e-10, "initial_accumulator_value": 0.0, "eps_in_sqrt": False},
        adagrad_init, adagrad_update,
    ),
}

OPTIMIZERS: dict[str, Optimizer] = {
    name: Optimizer(name, {**optimizer.hyperparameters, **CLIPPING}, optimizer.init,
                    _clipping_first(optimizer.update))
    for name, optimizer in _UNCLIPPED.items()
}
"""The registry of optimizers (every one with optional gradient clipping first)."""
