"""The NumPy reference behind the adapter interface (optionally computing with another
array API namespace: CuPy on a GPU; every result comes back as NumPy arrays)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gradparity import reference
from gradparity.adapters.base import (
    Adapter,
    Availability,
    LayerResult,
    LossResult,
    TrainingSession,
)
from gradparity.reference.layers import build as build_layer
from gradparity.reference.namespace import named, to_namespace, to_numpy
from gradparity.reference.network import freeze
from gradparity.reference.optimizers import state_arrays
from gradparity.reference.schedules import step_hyperparameters
from gradparity.reference.sequence import running_entries
from gradparity.spec.case import Case
from gradparity.spec.data import Problem, placed
from gradparity.spec.evaluation import evaluate


def _host_copy(array: Any) -> np.ndarray:
    """A NumPy copy of ``array`` that the caller owns (another namespace's: moved)."""
    return array.copy() if isinstance(array, np.ndarray) else to_numpy(array)


class _ReferenceSession:
    def __init__(self, case: Case, problem: Problem,
                 conventions: Mapping[str, Any] | None = None, xp: Any = np) -> None:
        if xp is not np and case.is_sequence:
            raise ValueError(f"reference_namespace: invalid value {xp.__name__!r} for the "
                             f"sequence network of {case.id}; allowed: numpy (only dense "
                             "MLPs run on another array namespace)")
        self._case = case
        self._problem = placed(problem, xp)
        self._xp = xp
        self._options = {**case.all_options, **(conventions or {})}
        # the session's own arrays, never written to (an update makes new ones): read-only,
        # so that the forward pass keeps them without a copy
        self._params = self._own(problem.params)  # NumPy's, copied into the namespace
        self._running = {name: np.array(value) for name, value in problem.state.items()}
        self._optimizer = reference.OPTIMIZERS[case.optimizer]
        self._state = self._optimizer.init(self._params)
        self._grads: dict[str, np.ndarray] | None = None

    def loss_and_gradients(self, evaluation: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        result = evaluate(self._case, self._params, self._problem.batch(evaluation),
                          self._running, options=self._options)
        self._grads, self._deltas = result.gradients, result.deltas
        self._running = result.state or self._running  # a training pass updates them
        return to_numpy(result.loss), {name: _host_copy(grad)
                                       for name, grad in self._grads.items()}

    def backward_signals(self) -> dict[str, np.ndarray]:
        return {name: np.array(to_numpy(d)) for name, d in self._deltas.items()}

    def _own(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Copies of ``params`` in the session's namespace (NumPy's marked read-only)."""
        return freeze(to_namespace({name: np.array(value) for name, value in params.items()},
                                   self._xp))

    def set_parameters(self, params) -> None:
        self._params = self._own(params)

    def step(self, completed_steps: int) -> dict[str, np.ndarray]:
        if self._grads is None:
            raise RuntimeError("step() before loss_and_gradients()")
        hp = step_hyperparameters(self._case.hparams, self._options, completed_steps,
                                  self._case.steps)
        params, self._state = self._optimizer.update(self._params, self._grads, self._state, hp)
        self._params = freeze(params)
        return {name: _host_copy(value) for name, value in self._params.items()}

    def optimizer_state(self) -> dict[str, np.ndarray]:
        state = state_arrays(self._case.optimizer, self._state, self._case.hparams,
                             copy=self._xp is np)  # another namespace's are moved: copies
        return {**to_numpy(state),
                **running_entries({n: v.copy() for n, v in self._running.items()})}


class NumpyAdapter(Adapter):
    """The hand-written reference (``gradparity.reference``); ``conventions`` sets
    catalogued conventions to another framework's setting (e.g.
    ``{"leaky_relu_derivative_at_zero": "slope"}``, PyTorch's), to show that setting
    reproduces that framework. ``namespace`` (one of
    :data:`gradparity.reference.namespace.NAMESPACES`) is the array library a training
    run computes with, NumPy unless asked (the float64 oracle on a GPU: ``"cupy"``); its
    results are NumPy arrays whatever it is."""

    name = "numpy"

    def __init__(self, conventions: Mapping[str, Any] | None = None,
                 namespace: str = "numpy") -> None:
        self.conventions = dict(conventions or {})
        named(namespace)  # ValueError or ImportError now, not mid-run
        self.namespace = namespace  # its name: the adapter stays picklable

    def availability(self) -> Availability:
        return Availability(True, np.__version__, "")

    def start(self, case: Case, problem: Problem) -> TrainingSession:
        return _ReferenceSession(case, problem, self.conventions, named(self.namespace))

    def run_layer(self, spec, params, x, dy, training=True, state=None) -> LayerResult:
        layer = build_layer(spec)
        params = {name: np.asarray(value) for name, value in params.items()}
        if state is None:
            state = {n: v.astype(np.asarray(dy).dtype)
                     for n, v in layer.init_state(np.shape(x)[1:]).items()}
        y, cache = layer.forward(params, np.asarray(x), training, state)
        dx, grads = layer.backward(params, cache, np.asarray(dy))
        new_state = layer.new_state(cache, state) if state else {}
        return LayerResult(self.name, np.asarray(y), np.asarray(dx), grads, new_state)

    def run_loss(self, name, options, y_hat, y) -> LossResult:
        loss = reference.LOSSES[name].bound({**options, **self.conventions})
        return LossResult(self.name, float(loss.value(y_hat, y)),
                          np.asarray(loss.gradient(y_hat, y)))


ADAPTER = NumpyAdapter()
