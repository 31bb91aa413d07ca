"""The NumPy reference behind the adapter interface."""

from __future__ import annotations

import numpy as np

from gradparity import reference
from gradparity.adapters.base import Adapter, Availability, TrainingSession
from gradparity.case import Case
from gradparity.data import Problem


class _ReferenceSession:
    def __init__(self, case: Case, problem: Problem) -> None:
        self._case = case
        self._x, self._y = problem.x, problem.y
        self._params = {name: np.array(value) for name, value in problem.params.items()}
        self._optimizer = reference.OPTIMIZERS[case.optimizer]
        self._state = self._optimizer.init(self._params)
        self._grads: dict[str, np.ndarray] | None = None

    def loss_and_gradients(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        cache = reference.forward(
            self._params, self._x, self._y, self._case.activations, self._case.loss
        )
        self._grads = reference.backward(cache)
        self._deltas = reference.backward_deltas(cache)
        return np.asarray(cache.loss), {name: grad.copy() for name, grad in self._grads.items()}

    def backward_signals(self) -> dict[str, np.ndarray]:
        return {f"z{layer}": np.array(d) for layer, d in enumerate(self._deltas, start=1)}

    def set_parameters(self, params) -> None:
        self._params = {name: np.array(value) for name, value in params.items()}

    def step(self) -> dict[str, np.ndarray]:
        if self._grads is None:
            raise RuntimeError("step() before loss_and_gradients()")
        self._params, self._state = self._optimizer.update(
            self._params, self._grads, self._state, self._case.hparams
        )
        return {name: value.copy() for name, value in self._params.items()}


class NumpyAdapter(Adapter):
    """The hand-written reference (``gradparity.reference``)."""

    name = "numpy"

    def availability(self) -> Availability:
        return Availability(True, np.__version__, "")

    def start(self, case: Case, problem: Problem) -> TrainingSession:
        return _ReferenceSession(case, problem)


ADAPTER = NumpyAdapter()
