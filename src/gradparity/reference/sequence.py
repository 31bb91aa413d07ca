"""A network described as a sequence of layers (convolutions, norms, attention, ...), with
its loss: the reference for every case that gives ``layers`` instead of ``layer_sizes``.

    forward:  out = layer_L(... layer_1(x)),   L = loss(flat(out), flat(y))
    backward: dL/d(out) from the loss, then each layer's own backward, last to first

``flat`` joins every axis but the last: a token model's (batch, T, vocab) logits become
(batch * T, vocab) rows against (batch * T) next-token labels, so every position is one
term of the loss's mean. Parameters and running statistics are named as the
:class:`~gradparity.reference.layers.Stack` names them (``conv1.W``, ``bn1.running_mean``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.reference.layers import Stack, build
from gradparity.reference.layers.stack import Backward, StackPass
from gradparity.reference.losses import LOSSES


@dataclass(frozen=True)
class SequenceCache:
    """What backward needs: the stack's caches, the output, the targets and the loss."""

    run: StackPass
    output: np.ndarray
    targets: np.ndarray
    loss: np.ndarray
    options: Mapping[str, Any]
    loss_name: str

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The running statistics after this (training) forward pass."""
        return self.run.state


@dataclass(frozen=True)
class SequenceGradients:
    params: dict[str, np.ndarray]
    deltas: dict[str, np.ndarray]  # dL/d(output of each layer), by layer name


def flat(values: np.ndarray) -> np.ndarray:
    """Every axis but the last joined (rows of outputs, or of labels)."""
    return values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values


class SequenceNetwork:
    """``layers`` (specs) on inputs of ``input_shape`` per example, then ``loss``."""

    def __init__(self, layers: Sequence[Mapping[str, Any]], input_shape: tuple[int, ...],
                 loss: str) -> None:
        self.specs = [dict(spec) for spec in layers]
        self.stack = Stack([build(spec) for spec in self.specs], input_shape)
        self.loss_name = loss

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.stack.parameter_shapes()

    def init(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.stack.init(rng)

    def init_state(self) -> dict[str, np.ndarray]:
        return self.stack.init_state()

    def forward(self, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                options: Mapping[str, Any] | None = None,
                state: Mapping[str, np.ndarray] | None = None,
                perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> SequenceCache:
        options = dict(options or {})
        output, run = self.stack.forward(params, x, state, perturb, options)
        targets = y.reshape(-1) if y.dtype.kind == "i" else flat(y)
        loss = LOSSES[self.loss_name].bound(options).value(flat(output), targets)
        return SequenceCache(run, output, targets, loss, options, self.loss_name)

    def backward(self, params: Mapping[str, np.ndarray], cache: SequenceCache,
                 overrides: Mapping[str, Backward] | None = None) -> SequenceGradients:
        loss = LOSSES[cache.loss_name].bound(cache.options)
        dy = loss.gradient(flat(cache.output), cache.targets).reshape(cache.output.shape)
        _, grads, deltas = self.stack.backward(params, cache.run, dy, overrides)
        return SequenceGradients(grads, deltas)


RUNNING_SLOT = "running"
"""Running statistics are compared with the optimizer state after every step, keyed
``running/<layer>.<statistic>`` (``running/bn1.running_var``) beside ``<slot>/<param>``."""


def running_entries(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A stack's running statistics as state entries (``running/bn1.running_mean``)."""
    return {f"{RUNNING_SLOT}/{name}": value for name, value in state.items()}
