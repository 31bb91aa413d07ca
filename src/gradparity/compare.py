"""Comparison metrics, per-dtype tolerances and assertion helpers.

For two arrays ``a`` (the implementation under test) and ``b`` (its baseline):

* ``max_abs``   = max |a - b|
* ``max_rel``   = max |a - b| / |b| over elements, with 0/0 = 0 and x/0 = inf
* ``normwise``  = max |a - b| / max |b|   (the pass/fail metric)
* ``normwise_eps`` = normwise / eps(dtype)

The normwise measure is used for pass/fail because elementwise relative error
explodes on entries that are nearly zero by cancellation, where a few ulps of
absolute error are the expected outcome of correct arithmetic.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gradparity.adapters.base import RunResult
from gradparity.case import Case

TOLERANCE_EPS: dict[str, float] = {"float32": 256.0, "float64": 256.0}
"""A fixed fallback tolerance per dtype, in eps, for :func:`compare_arrays` calls
that name none (and the scale on which :mod:`gradparity.diagnosis` matches).

Checks between implementations use the per-case, per-quantity tolerances
derived in :mod:`gradparity.tolerances` instead; 256 eps is the order of the
worst-case bound n*eps for the built-in network sizes (Higham, *Accuracy and
Stability of Numerical Algorithms*, section 3.1).
"""


def format_eps(value: float) -> str:
    """``"3.2 eps"``, or ``"2.86e+15 eps"`` once fixed point stops being readable."""
    return f"{value:.1f} eps" if value < 1e4 else f"{value:.2e} eps"


@functools.cache
def machine_epsilon(dtype: str) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def tolerance_for(dtype: str) -> float:
    """The normwise relative tolerance used for pass/fail in ``dtype``."""
    if dtype not in TOLERANCE_EPS:
        raise ValueError(f"dtype: invalid value {dtype!r}; allowed: {', '.join(TOLERANCE_EPS)}")
    return TOLERANCE_EPS[dtype] * machine_epsilon(dtype)


@dataclass(frozen=True)
class Difference:
    """How far one quantity of one implementation is from its baseline."""

    case_id: str
    dtype: str
    framework: str
    baseline: str
    quantity: str  # "loss", "gradient", "delta", "params@<step>", "trajectory", "state", "losses"
    parameter: str  # "W1", "b1", ..., "loss", or a state slot "first_moment/W1"
    max_abs: float
    max_rel: float
    normwise: float
    normwise_eps: float
    tolerance: float
    worst_index: tuple[int, ...]
    value: float
    baseline_value: float
    passed: bool
    note: str = ""

    @property
    def pair(self) -> str:
        return f"{self.framework} vs {self.baseline}"

    @property
    def headroom(self) -> float:
        """observed / allowed: below 1 passes."""
        return self.normwise / self.tolerance

    def message(self) -> str:
        """Which case, pair, parameter and index, both values, and by how much."""
        what = self.quantity if self.parameter == "loss" else f"{self.quantity} of {self.parameter}"
        where = f"case {self.case_id}: {self.pair}, {what}"
        if self.note:
            return f"{where}: {self.note}"
        eps = machine_epsilon(self.dtype)
        return (
            f"{where}: normwise relative difference {self.normwise:.3e} "
            f"({format_eps(self.normwise_eps)}) {'<=' if self.passed else '>'} tolerance "
            f"{self.tolerance:.3e} ({self.tolerance / eps:.0f} eps); worst index "
            f"{self.worst_index}: {self.framework}={self.value!r}, "
            f"{self.baseline}={self.baseline_value!r}, |diff|={self.max_abs:.3e}"
        )


def _nonfinite_summary(array: np.ndarray) -> str:
    nan, inf = np.isnan(array), np.isinf(array)
    if not (nan.any() or inf.any()):
        return "all finite"
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(nan | inf)), array.shape))
    return f"{int(nan.sum())} NaN and {int(inf.sum())} Inf (first at {first})"


def nonfinite_note(a: np.ndarray, b: np.ndarray, framework: str, baseline: str) -> str:
    """Counts and first index of NaN/Inf on each side. Never a match: two NaN at the same
    place are said to be that, explicitly, and the check fails."""
    same = (np.array_equal(np.isnan(a), np.isnan(b)) and np.isnan(a).any()
            and np.array_equal(np.isinf(a) & (a > 0), np.isinf(b) & (b > 0))
            and np.array_equal(np.isinf(a) & (a < 0), np.isinf(b) & (b < 0)))
    text = (f"non-finite values: {framework} has {_nonfinite_summary(a)}; {baseline} has "
            f"{_nonfinite_summary(b)}")
    if same:
        text += (" - both produce NaN at the same places: reported as non-finite, not as "
                 "agreement")
    return text


def compare_arrays(
    value: np.ndarray | None,
    baseline: np.ndarray,
    *,
    case_id: str,
    dtype: str,
    framework: str,
    baseline_name: str,
    quantity: str,
    parameter: str,
    tolerance: float | None = None,
) -> Difference:
    """Compare one array with its baseline (both computed in float64 for exactness)."""
    tol = tolerance_for(dtype) if tolerance is None else tolerance
    common = {
        "case_id": case_id, "dtype": dtype, "framework": framework,
        "baseline": baseline_name, "quantity": quantity, "parameter": parameter,
        "tolerance": tol,
    }
    failed = {
        "max_abs": np.inf, "max_rel": np.inf, "normwise": np.inf, "normwise_eps": np.inf,
        "passed": False,
    }
    b = np.asarray(baseline, dtype=np.float64)
    if value is None:
        return Difference(
            **common, **failed, worst_index=(), value=np.nan, baseline_value=np.nan,
            note=f"missing from the {framework} result",
        )
    a = np.asarray(value, dtype=np.float64)
    if a.shape != b.shape:
        return Difference(
            **common, **failed, worst_index=(), value=np.nan, baseline_value=np.nan,
            note=f"shape {a.shape} does not match the {baseline_name} shape {b.shape}",
        )
    nonfinite = ~(np.isfinite(a) & np.isfinite(b))
    if nonfinite.any():
        index = np.unravel_index(int(np.argmax(nonfinite)), a.shape)
        return Difference(
            **common, **failed, worst_index=tuple(int(i) for i in index),
            value=float(a[index]), baseline_value=float(b[index]),
            note=nonfinite_note(a, b, framework, baseline_name),
        )
    diff = np.abs(a - b)
    index = np.unravel_index(int(np.argmax(diff)), a.shape) if a.size else ()
    max_abs = float(diff.max()) if a.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    normwise = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(diff == 0, 0.0, diff / np.abs(b))
    return Difference(
        **common,
        max_abs=max_abs,
        max_rel=float(relative.max()) if a.size else 0.0,
        normwise=normwise,
        normwise_eps=normwise / machine_epsilon(dtype),
        worst_index=tuple(int(i) for i in index),
        value=float(a[index]) if a.size else np.nan,
        baseline_value=float(b[index]) if b.size else np.nan,
        passed=bool(normwise <= tol),
    )


def checkpoints(case: Case) -> tuple[int, ...]:
    """Optimizer steps after which parameters are compared: the first and the last."""
    return tuple(sorted({1, case.steps})) if case.steps else ()


def compare_results(
    result: RunResult,
    baseline: RunResult,
    case: Case,
    *,
    tolerance: float | None = None,
    steps: Sequence[int] | None = None,
    screen: bool = False,
    problem=None,
) -> list[Difference]:
    """Every quantity of ``result`` against ``baseline``.

    The loss, every gradient, the backward signals dL/dz_l (when both expose
    them), the parameters after each step in ``steps`` (default: the first and
    the last), the loss after every step, and two checks per parameter and per
    optimizer state slot over *every* step: ``trajectory`` (the parameters) and
    ``state`` (e.g. ``first_moment/W1``). Each of those is the worst step by
    observed/allowed, each step judged against its own tolerance; its
    ``worst_index`` starts with that step. ``tolerance`` overrides the derived
    per-quantity tolerances of :mod:`gradparity.tolerances`.

    ``screen=True`` judges every check against its floor first
    (:func:`gradparity.tolerances.floors`, a lower bound of each derived tolerance)
    and derives the full model only when some check exceeds its floor: the same
    verdicts for less work, but a check that passed its floor reports the floor as
    its tolerance. ``problem``: the weights and data the case ran on, where they are not
    the generated ones (the tolerance model is evaluated on them).
    """
    from gradparity.tolerances import derive, floors

    if tolerance is None and screen:
        screened = _compare_results(result, baseline, case, floors(case, problem), None, steps)
        if all(d.passed for d in screened):
            return screened
    model = derive(case, problem) if tolerance is None else None
    return _compare_results(result, baseline, case, model, tolerance, steps)


def _compare_results(result, baseline, case, model, tolerance, steps) -> list[Difference]:
    sides = (result.framework, baseline.framework)

    def allowed(quantity: str, parameter: str) -> float:
        return tolerance if model is None else model.normwise(quantity, parameter, sides)

    def limits(prefix: str, names: tuple[str, ...], count: int) -> np.ndarray:
        """Tolerances of ``<prefix>@<t>`` for t = 1..count (rows) and ``names`` (columns)."""
        if model is None:
            return np.full((count, len(names)), tolerance)
        return model.step_limits(prefix, names, count, sides)

    def compare(
        value: np.ndarray | None, base: np.ndarray, quantity: str, parameter: str
    ) -> Difference:
        return compare_arrays(
            value, base, case_id=case.id, dtype=case.dtype, framework=result.framework,
            baseline_name=baseline.framework, quantity=quantity, parameter=parameter,
            tolerance=allowed(quantity, parameter),
        )

    from gradparity.batched import compare_many, worst_steps

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
    result: RunResult, baseline: RunResult, case: Case, problem=None
) -> tuple[int, int] | None:
    """``(step, layer)``: the first step whose backward signals disagree, and the layer
    nearest the output (where backward starts) that disagrees at that step."""
    from gradparity.tolerances import floors

    model = floors(case, problem)  # the delta tolerances need no trajectory: floors has them
    for step, (mine, theirs) in enumerate(zip(result.deltas, baseline.deltas, strict=False)):
        failing = [
            int(name[1:]) for name, value in theirs.items()
            if not compare_arrays(
                mine[name], value, case_id=case.id, dtype=case.dtype,
                framework=result.framework, baseline_name=baseline.framework,
                quantity="delta", parameter=name, tolerance=model.normwise("delta", name),
            ).passed
        ]
        if failing:
            return step, max(failing)
    return None


class ParityError(AssertionError):
    """Raised by :func:`assert_parity`; ``differences`` holds the failed checks."""

    def __init__(self, differences: list[Difference]) -> None:
        self.differences = differences
        lines = [d.message() for d in differences[:10]]
        if len(differences) > 10:
            lines.append(f"... and {len(differences) - 10} more failed checks")
        super().__init__(f"{len(differences)} check(s) failed:\n" + "\n".join(lines))


def assert_parity(differences: Iterable[Difference]) -> None:
    """Raise :class:`ParityError` naming every check that exceeded its tolerance."""
    __tracebackhide__ = True  # pytest: show the message, not this frame's locals
    failed = [d for d in differences if not d.passed]
    if failed:
        raise ParityError(failed)
