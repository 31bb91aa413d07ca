"""Comparing two implementations' results for one case, check by check.

:func:`compare_results` turns two :class:`~gradparity.adapters.RunResult` into rows
(:class:`~gradparity.compare.metrics.Difference`), one per quantity and parameter.
The tolerances come from a model the caller passes in: this module decides *what* is
compared, never *how much* may differ (that is :mod:`gradparity.compare.tolerances`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from gradparity.adapters.base import RunResult
from gradparity.compare.batched import compare_many, worst_steps
from gradparity.compare.metrics import Difference, compare_arrays
from gradparity.spec.case import Case


class ToleranceModel(Protocol):
    """What the comparison asks of a tolerance model (``Tolerances`` and
    ``FixedTolerance`` in :mod:`gradparity.compare.tolerances` both answer it)."""

    def normwise(self, quantity: str, parameter: str,
                 frameworks: tuple[str, ...] = ()) -> float:
        """The normwise relative tolerance of one check between ``frameworks``."""
        ...

    def step_limits(self, prefix: str, names: tuple[str, ...], steps: int,
                    frameworks: tuple[str, ...] = ()) -> np.ndarray:
        """``normwise("<prefix>@<t>", name)`` for t = 1..steps (rows) and ``names``."""
        ...


def checkpoints(case: Case) -> tuple[int, ...]:
    """Optimizer steps after which parameters are compared: the first and the last."""
    return tuple(sorted({1, case.steps})) if case.steps else ()


def compare_results(
    result: RunResult,
    baseline: RunResult,
    case: Case,
    model: ToleranceModel,
    *,
    steps: Sequence[int] | None = None,
) -> list[Difference]:
    """Every quantity of ``result`` against ``baseline``, each against ``model``'s tolerance.

    The loss, every gradient, the backward signals dL/dz_l (when both expose
    them), the parameters after each step in ``steps`` (default: the first and
    the last), the loss after every step, and two checks per parameter and per
    optimizer state slot over *every* step: ``trajectory`` (the parameters) and
    ``state`` (e.g. ``first_moment/W1``). Each of those is the worst step by
    observed/allowed, each step judged against its own tolerance; its
    ``worst_index`` starts with that step.

    ``model`` is the tolerance model (derived, its floors, or one fixed tolerance:
    see :mod:`gradparity.compare.tolerances`); the caller chooses it, this module
    only compares.
    """
    return _compare_results(result, baseline, case, model, steps)


def _compare_results(result, baseline, case, model, steps) -> list[Difference]:
    sides = (result.framework, baseline.framework)

    def allowed(quantity: str, parameter: str) -> float:
        return model.normwise(quantity, parameter, sides)

    def limits(prefix: str, names: tuple[str, ...], count: int) -> np.ndarray:
        """Tolerances of ``<prefix>@<t>`` for t = 1..count (rows) and ``names`` (columns)."""
        return model.step_limits(prefix, names, count, sides)

    def compare(
        value: np.ndarray | None, base: np.ndarray, quantity: str, parameter: str
    ) -> Difference:
        return compare_arrays(
            value, base, case_id=case.id, dtype=case.dtype, framework=result.framework,
            baseline_name=baseline.framework, quantity=quantity, parameter=parameter,
            tolerance=allowed(quantity, parameter),
        )

    items: list[tuple] = []

    def item(value, base, quantity: str, parameter: str) -> int:
        """Queue one comparison; its row will be ``rows[position]``."""
        items.append((value, base, quantity, parameter, allowed(quantity, parameter)))
        return len(items) - 1

    order: list = [item(np.asarray(result.loss), np.asarray(baseline.loss), "loss", "loss")]
    for name in baseline.gradients:
        order.append(item(result.gradients.get(name), baseline.gradients[name], "gradient", name))
    if result.deltas and baseline.deltas:
        for name, value in baseline.deltas[0].items():
            order.append(item(result.deltas[0].get(name), value, "delta", name))
    trajectory = []
    mine = ([result.parameters_after(t) for t in range(1, len(baseline.trajectory) + 1)]
            if steps is None else [])
    if mine:
        trajectory = worst_steps(mine, list(baseline.trajectory), tuple(baseline.trajectory[0]),
                                 limits, "params", compare)
    at_checkpoint: dict[tuple[int, str], int] = {}
    for step in checkpoints(case) if steps is None else steps:
        after, base_after = result.parameters_after(step), baseline.parameters_after(step)
        for name in base_after:
            at_checkpoint[(step, name)] = item(after.get(name), base_after[name],
                                               f"params@{step}", name)
            order.append(at_checkpoint[(step, name)])
    if len(result.losses) > 1:
        order.append(item(result.losses, baseline.losses, "losses", "loss"))

    def worst_row(name: str, step: int, row: Difference | None, prefix: str, values: list,
                  bases: Sequence) -> Difference | int:
        """A worst step's row: given (irregular values), already queued, or queued now."""
        if row is not None:
            return row
        if prefix == "params" and (step, name) in at_checkpoint:
            return at_checkpoint[(step, name)]
        return item(values[step - 1].get(name), bases[step - 1][name], f"{prefix}@{step}", name)

    order += [("trajectory", step, worst_row(name, step, row, "params", mine,
                                             baseline.trajectory))
              for name, step, row in trajectory]
    if steps is None and result.states and baseline.states:
        slots = sorted(set(baseline.states[0]) | set(result.states[0]))
        shared = tuple(s for s in slots if s in baseline.states[0] and s in result.states[0])
        state_rows = {name: ("state", step, worst_row(name, step, row, "state", result.states,
                                                      baseline.states))
                      for name, step, row in (worst_steps(
                          list(result.states), list(baseline.states), shared, limits, "state",
                          compare) if shared else [])}
        order += [state_rows[slot] if slot in state_rows
                  else _missing_slot(result, baseline, case, slot) for slot in slots]
    rows = compare_many(items, case_id=case.id, dtype=case.dtype, framework=result.framework,
                        baseline_name=baseline.framework)

    def resolve(entry) -> Difference:
        if isinstance(entry, Difference):
            return entry
        if isinstance(entry, int):
            return rows[entry]
        quantity, step, inner = entry
        return _at_step(resolve(inner), step, quantity)

    return [resolve(entry) for entry in order]


def _at_step(worst: Difference, step: int, quantity: str) -> Difference:
    """A worst-step row: ``quantity`` over every step, ``worst_index`` led by the step."""
    return replace(worst, quantity=quantity, worst_index=(step, *worst.worst_index))


def _missing_slot(result: RunResult, baseline: RunResult, case: Case, slot: str) -> Difference:
    holder, lacking = ((baseline, result) if slot in baseline.states[0] else (result, baseline))
    return Difference(
        case_id=case.id, dtype=case.dtype, framework=result.framework,
        baseline=baseline.framework, quantity="state", parameter=slot, max_abs=np.inf,
        max_rel=np.inf, normwise=np.inf, normwise_eps=np.inf, tolerance=0.0, worst_index=(),
        value=np.nan, baseline_value=np.nan, passed=False,
        note=f"optimizer state slot {slot!r} exists in {holder.framework} but not in "
        f"{lacking.framework}",
    )


def first_backward_divergence(
    result: RunResult, baseline: RunResult, case: Case, model: ToleranceModel
) -> tuple[int, int] | None:
    """``(step, layer)``: the first step whose backward signals disagree, and the layer
    nearest the output (where backward starts) that disagrees at that step. The delta
    tolerances need no trajectory: the model's floors have them."""
    for step, (mine, theirs) in enumerate(zip(result.deltas, baseline.deltas, strict=False)):
        failing = [  # signals come in forward order: z1 .. zL, or layer by layer
            layer for layer, (name, value) in enumerate(theirs.items(), start=1)
            if not compare_arrays(
                mine[name], value, case_id=case.id, dtype=case.dtype,
                framework=result.framework, baseline_name=baseline.framework,
                quantity="delta", parameter=name, tolerance=model.normwise("delta", name),
            ).passed
        ]
        if failing:
            return step, max(failing)
    return None
