"""The one interface every framework adapter implements.

An adapter turns a framework into a :class:`TrainingSession`: something that
can report the loss and parameter gradients at its current parameters and
apply one optimizer step. :func:`run_session` drives every session through the
same loop, converts nothing itself, and checks that every array that comes back
has the case dtype, so a float64 case can never silently run in float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from gradparity.spec.case import Case
from gradparity.spec.data import Problem


class PrecisionError(RuntimeError):
    """A framework produced a result in another dtype than the case asked for."""


class NotExpressibleError(ValueError):
    """The framework cannot express the case exactly; gradparity never emulates it."""


class Availability(NamedTuple):
    available: bool
    version: str | None
    reason: str  # why it is unavailable; empty when available


@dataclass(frozen=True)
class RunResult:
    """What one implementation computed for one case, in the reference layout.

    ``gradients``: dL/dparam at the initial parameters, keyed ``W1, b1, ...``,
    ``W`` shaped ``(fan_in, fan_out)`` (a sequence network: keyed as its stack names
    them, ``conv1.W``, see :class:`gradparity.spec.data.Problem`).
    ``trajectory[t]``: the parameters after ``t + 1`` optimizer steps.
    ``losses[t]``: the loss at the parameters after ``t`` steps (``t = 0..steps``).
    ``deltas[t]``: the backward signals dL/dz_l, keyed ``z1 .. zL`` (a sequence
    network: dL/d(each layer's output), keyed by layer name), at the
    parameters after ``t`` steps (``t = 0..steps``); empty for implementations
    that do not expose them.
    ``states[t]``: the optimizer state after ``t + 1`` steps, keyed
    ``<slot>/<parameter>`` (see ``reference.optimizers.state_arrays``), in the
    reference layout, and a sequence network's running statistics after the
    ``t + 1``-th training forward pass (``running/bn1.running_mean``); empty for
    implementations that do not expose it.
    """

    framework: str
    case_id: str
    loss: float
    gradients: Mapping[str, np.ndarray]
    trajectory: tuple[Mapping[str, np.ndarray], ...]
    losses: np.ndarray
    deltas: tuple[Mapping[str, np.ndarray], ...] = ()
    states: tuple[Mapping[str, np.ndarray], ...] = ()

    def parameters_after(self, step: int) -> Mapping[str, np.ndarray]:
        """Parameters after ``step`` optimizer steps (``step >= 1``)."""
        if not 1 <= step <= len(self.trajectory):
            raise ValueError(
                f"step: invalid value {step!r}; allowed: 1..{len(self.trajectory)} "
                f"(case {self.case_id} ran {len(self.trajectory)} steps)"
            )
        return self.trajectory[step - 1]


@dataclass(frozen=True)
class LayerResult:
    """One layer run forward on ``x`` and backward from an upstream gradient ``dy``, in the
    reference layout: the output, ``dL/dx``, ``dL/dparam`` per parameter, and the layer's
    state after the forward pass (running statistics), if it keeps any."""

    framework: str
    output: np.ndarray
    input_gradient: np.ndarray
    parameter_gradients: Mapping[str, np.ndarray]
    state: Mapping[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class LossResult:
    """A loss evaluated on outputs ``y_hat`` and targets: its value and dL/dy_hat."""

    framework: str
    value: float
    gradient: np.ndarray


class TrainingSession(Protocol):
    """A framework model holding its own parameters and optimizer state."""

    def loss_and_gradients(self, evaluation: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Loss and gradients at the current parameters on ``problem.batch(evaluation)``,
        as NumPy in reference layout."""
        ...

    def step(self, completed_steps: int) -> dict[str, np.ndarray]:
        """Apply one optimizer step with the last gradients (the ``completed_steps + 1``-th,
        which sets the scheduled learning rate); return the new parameters."""
        ...

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer state, keyed ``<slot>/<parameter>``, in reference layout."""
        ...

    def backward_signals(self) -> dict[str, np.ndarray]:
        """dL/dz_l per layer (``z1 .. zL``) from the last ``loss_and_gradients`` call."""
        ...

    def set_parameters(self, params: Mapping[str, np.ndarray]) -> None:
        """Overwrite the parameters (reference layout); the optimizer state is kept."""
        ...


class Adapter(ABC):
    """One framework behind the common interface."""

    name: str

    @abstractmethod
    def availability(self) -> Availability:
        """Whether the framework can run here, and its version."""

    def unsupported_reason(self, case: Case) -> str | None:
        """Why this framework cannot express ``case`` exactly (never emulated), or None."""
        return None

    def on_device(self, device: str) -> Adapter:
        """This adapter computing on ``device`` (``"cuda"``). The default: the CPU only,
        which the NumPy reference is by design."""
        return self

    @abstractmethod
    def start(self, case: Case, problem: Problem) -> TrainingSession:
        """Load the problem's parameters and data into the framework."""

    def run_layer(self, spec: Mapping[str, Any], params: Mapping[str, np.ndarray],
                  x: np.ndarray, dy: np.ndarray, training: bool = True,
                  state: Mapping[str, np.ndarray] | None = None) -> LayerResult:
        """One layer (``spec``: its type and settings) forward and backward, each in the
        framework's own machinery; parameters and results in the reference layout."""
        raise NotImplementedError(f"{self.name} runs no single layers")

    def run_loss(self, name: str, options: Mapping[str, Any], y_hat: np.ndarray,
                 y: np.ndarray) -> LossResult:
        """A loss and its gradient with respect to ``y_hat``, in the framework."""
        raise NotImplementedError(f"{self.name} runs no single losses")

    def layer_unsupported_reason(self, spec: Mapping[str, Any]) -> str | None:
        """Why this framework cannot express the layer ``spec`` exactly, or None."""
        return None

    def loss_unsupported_reason(self, loss: str) -> str | None:
        """Why this framework has no such loss, or None."""
        return None

    def run(self, case: Case, problem: Problem) -> RunResult:
        """Gradients at the initial parameters and ``case.steps`` optimizer steps."""
        reason = self.unsupported_reason(case)
        if reason is not None:
            raise NotExpressibleError(f"case {case.id} is not expressible in {self.name}: {reason}")
        check_problem_dtype(case, problem)
        return run_session(self.name, case, self.start(case, problem))


class UnavailableAdapter(Adapter):
    """Stands in for a framework that is not installed."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def availability(self) -> Availability:
        return Availability(False, None, self._reason)

    def start(self, case: Case, problem: Problem) -> TrainingSession:
        raise RuntimeError(f"framework {self.name!r} is unavailable: {self._reason}")


def check_problem_dtype(case: Case, problem: Problem) -> None:
    """Refuse inputs whose dtype differs from the case: no silent casts either way."""
    arrays = {**problem.params, **problem.state}
    if problem.x.dtype.kind == "f":  # token ids are integers
        arrays["x"] = problem.x
    if problem.y.dtype.kind == "f":
        arrays["y"] = problem.y
    for name, array in arrays.items():
        if array.dtype != np.dtype(case.dtype):
            raise ValueError(
                f"problem.{name}: dtype {array.dtype} does not match case.dtype "
                f"{case.dtype!r} (case {case.id})"
            )


def check_precision(framework: str, case: Case, what: str, array: np.ndarray) -> None:
    """Raise :class:`PrecisionError` unless ``array`` has exactly the case dtype."""
    if np.asarray(array).dtype != np.dtype(case.dtype):
        raise PrecisionError(
            f"{framework}: {what} came back as {np.asarray(array).dtype}, but case "
            f"{case.id} is {case.dtype}; refusing to compare a silently different precision"
        )


def _checked(framework: str, case: Case, what: str, arrays: dict[str, np.ndarray]) -> dict:
    for name, array in arrays.items():
        check_precision(framework, case, f"{what} {name}", array)
    return arrays


def run_session(framework: str, case: Case, session: TrainingSession) -> RunResult:
    """The training loop every adapter shares: grads at step 0, then ``case.steps`` steps."""
    loss, gradients = session.loss_and_gradients(0)
    check_precision(framework, case, "loss", loss)
    _checked(framework, case, "gradient of", gradients)
    losses = [loss]
    deltas = [_checked(framework, case, "backward signal", session.backward_signals())]
    trajectory, states = [], []
    for step in range(1, case.steps + 1):
        trajectory.append(_checked(framework, case, f"step {step} parameter",
                                   session.step(step - 1)))
        states.append(_checked(framework, case, f"step {step} optimizer state",
                               session.optimizer_state()))
        # gradients at the new parameters (on the next batch) feed the next step;
        # the loss is the loss after this step
        next_loss, _ = session.loss_and_gradients(step)
        check_precision(framework, case, f"loss after step {step}", next_loss)
        losses.append(next_loss)
        deltas.append(_checked(framework, case, "backward signal", session.backward_signals()))
    return RunResult(
        framework=framework,
        case_id=case.id,
        loss=float(loss),
        gradients=gradients,
        trajectory=tuple(trajectory),
        losses=np.array(losses, dtype=case.dtype),
        deltas=tuple(deltas),
        states=tuple(states),
    )


def run_teacher_forced(
    adapter: Adapter, case: Case, problem: Problem, reference: RunResult
) -> tuple[dict[str, np.ndarray], ...]:
    """Each step restarts from the reference's parameters: isolates the per-step error.

    Returns the framework's parameters after step t computed from the
    reference's parameters after step t - 1. The framework keeps its own
    optimizer state (torch.optim and optax state is not set from outside).
    """
    session = adapter.start(case, problem)
    trajectory = []
    for step in range(1, case.steps + 1):
        start = problem.params if step == 1 else reference.parameters_after(step - 1)
        session.set_parameters(start)
        session.loss_and_gradients(step - 1)
        trajectory.append(_checked(adapter.name, case, f"step {step} parameter",
                                   session.step(step - 1)))
    return tuple(trajectory)
