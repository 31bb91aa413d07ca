"""Optimizer update equations, written out.

Each optimizer is a pair of pure functions in the optax style: ``init(params)``
returns a state, ``update(params, grads, state, hyperparameters)`` returns
``(new_params, new_state)``. Nothing is updated in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

Params = Mapping[str, np.ndarray]


class SGDState(NamedTuple):
    """Plain SGD keeps no state beyond the step count."""

    step: int


def sgd_init(params: Params) -> SGDState:
    return SGDState(step=0)


def sgd_update(
    params: Params, grads: Params, state: SGDState, hyperparameters: Mapping[str, float]
) -> tuple[dict[str, np.ndarray], SGDState]:
    """theta_{t+1} = theta_t - lr * g_t   (torch.optim.SGD and optax.sgd agree here)."""
    lr = hyperparameters["lr"]
    new_params = {name: params[name] - lr * grads[name] for name in params}
    return new_params, SGDState(step=state.step + 1)


@dataclass(frozen=True)
class Optimizer:
    """A named optimizer: its hyperparameters (with defaults, ``None`` = required)."""

    name: str
    hyperparameters: Mapping[str, float | None]
    init: Callable[[Params], Any]
    update: Callable[..., tuple[dict[str, np.ndarray], Any]]


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer("sgd", {"lr": None}, sgd_init, sgd_update),
}
"""The registry of optimizers: case validation, adapters, tests and the CLI read it."""
