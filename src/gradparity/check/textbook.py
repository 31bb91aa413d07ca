"""The reference in plug-in form: ``gradients(params, x, y, case)`` and ``step(...)``.

:class:`Textbook` runs the reference's own forward pass and backward pass
(:class:`gradparity.reference.network.Backprop`) behind the contract of
``gradparity check``, optionally with known bugs (:mod:`gradparity.check.bugs`)
applied to single steps. ``gradparity check gradparity.check.textbook:gradients``
must pass; every mutant of :mod:`gradparity.check.mutants` and every hypothesis of
the diagnosis is this textbook with bugs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradparity.check.bugs import Bug, UpdateBug
from gradparity.check.layer_bugs import LayerBackwardBug, overrides
from gradparity.reference import LOSSES, OPTIMIZERS
from gradparity.reference.layers import build as build_layer
from gradparity.reference.network import Backprop, ForwardCache, forward
from gradparity.reference.schedules import step_hyperparameters
from gradparity.spec.data import Batch
from gradparity.spec.evaluation import evaluate


class _BuggyBackprop(Backprop):
    """The reference's backward pass with each step passed through ``bugs`` in turn."""

    def __init__(self, bugs: Sequence[Bug]) -> None:
        self.bugs = tuple(bugs)

    def output_gradient(self, cache: ForwardCache) -> np.ndarray:
        value = super().output_gradient(cache)
        for bug in self.bugs:
            value = bug.output_gradient(value, cache)
        return value

    def activation_derivative(self, layer: int, cache: ForwardCache) -> np.ndarray:
        value = super().activation_derivative(layer, cache)
        for bug in self.bugs:
            value = bug.activation_derivative(value, layer, cache)
        return value

    def weight_gradient(self, a_prev: np.ndarray, delta: np.ndarray) -> np.ndarray:
        value = super().weight_gradient(a_prev, delta)
        for bug in self.bugs:
            value = bug.weight_gradient(value, a_prev, delta)
        return value

    def bias_gradient(self, delta: np.ndarray) -> np.ndarray:
        value = super().bias_gradient(delta)
        for bug in self.bugs:
            value = bug.bias_gradient(value, delta)
        return value

    def weight_for_propagation(self, layer: int, weight_gradient: np.ndarray,
                               cache: ForwardCache) -> np.ndarray:
        value = super().weight_for_propagation(layer, weight_gradient, cache)
        for bug in self.bugs:
            value = bug.weight_for_propagation(value, layer, weight_gradient, cache)
        return value

    def propagate(self, delta: np.ndarray, weight: np.ndarray) -> np.ndarray:
        value = super().propagate(delta, weight)
        for bug in self.bugs:
            value = bug.propagate(value, delta, weight)
        return value


class Textbook:
    """Forward with cached activations, backward by the chain rule, one optimizer step.

    ``bugs``: known mistakes applied to the backward pass (each where it applies to
    the case); ``update_bug``: a wrong optimizer step used instead of the right one
    where it applies. Without either, this is the reference.
    """

    def __init__(self, bugs: Sequence[Bug] = (), update_bug: UpdateBug | None = None) -> None:
        self.bugs = tuple(bugs)
        self.update_bug = update_bug

    def _bugs(self, case: Any) -> tuple[Bug, ...]:
        sequence = bool(getattr(case, "is_sequence", False))
        return tuple(bug.bind(case) for bug in self.bugs
                     if isinstance(bug, LayerBackwardBug) == sequence and bug.applies(case))

    def gradients(self, params: dict, x: np.ndarray, y: np.ndarray, case: Any) -> tuple:
        """The plug-in contract: ``(loss, grads)`` at ``params`` on ``(x, y)``. A sequence
        network (``case.layers``) runs its layers' backward rules, with a layer bug's rule
        in place of the right one for its layer type; its running statistics are the
        initial ones (they enter only an eval-mode BatchNorm, which never updates them)."""
        bugs = self._bugs(case)
        if getattr(case, "is_sequence", False):
            result = evaluate(case, params, Batch(x, y, ()), _initial_state(case, params),
                              overrides=overrides(bugs))
            return float(result.loss), result.gradients
        for bug in bugs:
            params = bug.params_seen(params, case)
        cache = forward(params, x, y, case.activations, case.loss, case.all_options)
        loss = float(cache.loss)
        for bug in bugs:
            loss = bug.loss_value(loss, cache)
        return loss, _BuggyBackprop(bugs).backward(cache).params

    def step(self, params: dict, grads: dict, state: Any, case: Any) -> tuple[dict, Any]:
        """One update with the case's optimizer; ``state`` is None on the first call.

        The state counts completed steps, which sets the scheduled learning rate."""
        optimizer = OPTIMIZERS[case.optimizer]
        bug = self.update_bug if self.update_bug and self.update_bug.applies(case) else None
        if state is None or (bug is not None and bug.fresh_state):
            state = optimizer.init(params)
        hp = step_hyperparameters(case.hparams, case.all_options, state.step, case.steps)
        if bug is not None:
            return bug.update(optimizer, params, grads, state, hp)
        return optimizer.update(params, grads, state, hp)


def _initial_state(case: Any, params: dict) -> dict[str, np.ndarray]:
    """A sequence network's initial running statistics, in the parameters' dtype."""
    dtype = next(iter(params.values())).dtype if params else np.float64
    return {name: value.astype(dtype) for name, value in case.network().init_state().items()}


_TEXTBOOK = Textbook()


def gradients(params: dict, x: np.ndarray, y: np.ndarray, case: Any) -> tuple:
    """The plug-in contract, implemented by the textbook."""
    return _TEXTBOOK.gradients(params, x, y, case)


def step(params: dict, grads: dict, state: Any, case: Any) -> tuple[dict, Any]:
    """The optional update contract, implemented by the textbook."""
    return _TEXTBOOK.step(params, grads, state, case)


class TextbookLayer:
    """The layer-object contract implemented by the reference's layers: ``gradparity
    check gradparity.check.textbook:TextbookLayer --layer TYPE`` passes for every type."""

    def __init__(self, params: dict, settings: dict, kind: str | None = None) -> None:
        self.params = dict(params)
        self.settings = dict(settings)
        self.kind = kind or self.settings.pop("type", None)

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.kind is None:
            raise NotImplementedError("TextbookLayer needs the layer type")
        self.layer = build_layer({"type": self.kind, **self.settings})
        state = {n: self.params[n] for n in self.layer.STATE if n in self.params}
        y, self.cache = self.layer.forward(self.params, x, True, state)
        self.params.update(self.layer.new_state(self.cache, state) if state else {})
        return y

    def backward(self, dy: np.ndarray) -> tuple[np.ndarray, dict]:
        return self.layer.backward(self.params, self.cache, dy)

    @property
    def running_mean(self):  # the contract reads running statistics by name
        return self.params.get("running_mean")

    @property
    def running_var(self):
        return self.params.get("running_var")


def textbook_layer(kind: str):
    """A factory for ``kind``'s TextbookLayer (``target(params, settings)``)."""
    return lambda params, settings: TextbookLayer(params, settings, kind)


class TextbookLoss:
    """The loss-object contract implemented by the reference's losses."""

    def __init__(self, settings: dict, name: str | None = None) -> None:
        self.settings, self.name = dict(settings), name

    def forward(self, y_hat: np.ndarray, y: np.ndarray) -> float:
        self.loss = LOSSES[self.name].bound(self.settings)
        self.y_hat, self.y = y_hat, y
        return float(self.loss.value(y_hat, y))

    def backward(self) -> np.ndarray:
        return self.loss.gradient(self.y_hat, self.y)
