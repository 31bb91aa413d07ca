"""One pair's comparisons in a few vectorised passes instead of one call per array.

:func:`compare_many` gives, for every item, exactly the row
:func:`gradparity.compare.metrics.compare_arrays` gives (a test holds the two to
equality); :func:`worst_steps` finds, for every parameter or state slot at once,
the step with the largest observed/allowed ratio. They exist because the harness
should cost little next to the frameworks it checks (``nox -s bench``): one pair
of a 10-step case is about 40 rows, and per-array calls spend most of their time
in NumPy's per-call overhead on arrays of a few hundred entries.

Anything irregular (a missing value, a shape mismatch, an empty array, a NaN or
Inf anywhere) goes through ``compare_arrays`` one array at a time, which explains it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gradparity.compare.metrics import (
    NOT_DETERMINED,
    Difference,
    compare_arrays,
    largest_difference_and_scale,
    machine_epsilon,
    within,
)

Item = tuple  # (value or None, baseline, quantity, parameter, tolerance)


STACKED_ELEMENTS = 2**22
"""Below this many values in all, ``compare_many`` and ``worst_steps`` measure them in
one stacked pass; above, one array at a time (the stack would copy every array into
float64 at once, and per-array overhead no longer matters)."""


def compare_many(items: Sequence[Item], *, case_id: str, dtype: str, framework: str,
                 baseline_name: str) -> list[Difference]:
    """``compare_arrays`` for every ``(value, baseline, quantity, parameter, tolerance)``."""
    common = {"case_id": case_id, "dtype": dtype, "framework": framework,
              "baseline_name": baseline_name}

    def one(item: Item) -> Difference:
        value, base, quantity, parameter, tolerance = item
        return compare_arrays(value, base, quantity=quantity, parameter=parameter,
                              tolerance=tolerance, **common)

    rows: list[Difference | None] = [None] * len(items)
    if sum(np.size(item[1]) for item in items) > STACKED_ELEMENTS:
        # large arrays: per-array overhead is nothing next to the arithmetic, and a
        # stack would copy every array into float64 at once
        return [one(item) for item in items]
    regular: list[tuple[int, np.ndarray, np.ndarray]] = []
    for position, item in enumerate(items):
        value, base = item[0], np.asarray(item[1], dtype=np.float64)
        mine = None if value is None else np.asarray(value, dtype=np.float64)
        if mine is None or mine.shape != base.shape or not mine.size:
            rows[position] = one(item)
        else:
            regular.append((position, mine, base))
    if not regular:
        return rows
    a = np.concatenate([mine.ravel() for _, mine, _ in regular])
    b = np.concatenate([base.ravel() for _, _, base in regular])
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        for position, _, _ in regular:
            rows[position] = one(items[position])
        return rows
    sizes = np.array([base.size for _, _, base in regular])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    diff, magnitude = np.abs(a - b), np.abs(b)
    max_abs = np.maximum.reduceat(diff, starts)
    scale = np.maximum.reduceat(magnitude, starts)
    # each segment's first entry equal to its maximum: the entry argmax picks
    hits = np.flatnonzero(diff == np.repeat(max_abs, sizes))
    worst = hits[np.searchsorted(hits, starts)]
    relative = np.zeros_like(diff)
    np.divide(diff, magnitude, out=relative, where=magnitude > 0)
    relative[(diff > 0) & (magnitude == 0)] = np.inf  # x/0 = inf, 0/0 = 0
    max_rel = np.maximum.reduceat(relative, starts)
    eps = machine_epsilon(dtype)
    for (position, _, base), start, flat, worst_abs, biggest, rel in zip(
            regular, starts.tolist(), worst.tolist(), max_abs.tolist(), scale.tolist(),
            max_rel.tolist(), strict=True):
        _, _, quantity, parameter, tolerance = items[position]
        normwise = worst_abs / biggest if biggest > 0 else (0.0 if worst_abs == 0 else np.inf)
        rows[position] = Difference(
            case_id, dtype, framework, baseline_name, quantity, parameter,
            max_abs=worst_abs, max_rel=rel, normwise=normwise, normwise_eps=normwise / eps,
            tolerance=tolerance,
            worst_index=tuple(int(i) for i in np.unravel_index(flat - start, base.shape)),
            value=float(a[flat]), baseline_value=float(b[flat]),
            passed=within(normwise, worst_abs, tolerance, dtype, quantity))
    return rows


def _step_maxima(mine: list[dict], theirs: list[dict], names: tuple[str, ...]
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(max |a - b|, max |b|)`` per step and name, shaped (steps, names), in float64;
    None when some value is not finite or there is nothing to measure."""
    count, sizes = len(mine), [theirs[0][n].size for n in names]
    if not sum(sizes):
        return None
    max_abs = np.zeros((count, len(names)))
    scale = np.zeros((count, len(names)))
    if count * sum(sizes) <= STACKED_ELEMENTS:
        a = np.array([np.concatenate([m[n].ravel() for n in names]) for m in mine], np.float64)
        b = np.array([np.concatenate([t[n].ravel() for n in names]) for t in theirs],
                     np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            return None
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        # reduceat needs every segment non-empty; an empty parameter has no difference
        nonempty = np.array(sizes) > 0
        max_abs[:, nonempty] = np.maximum.reduceat(np.abs(a - b), starts[nonempty], axis=1)
        scale[:, nonempty] = np.maximum.reduceat(np.abs(b), starts[nonempty], axis=1)
        return max_abs, scale
    for step, (m, t) in enumerate(zip(mine, theirs, strict=True)):
        for column, name in enumerate(names):
            if not sizes[column]:
                continue
            # |b|'s maximum is exact in b's own dtype
            max_abs[step, column], scale[step, column] = largest_difference_and_scale(
                m[name], t[name])
    # a NaN or Inf on either side makes its step's maximum NaN or Inf
    if not (np.isfinite(max_abs).all() and np.isfinite(scale).all()):
        return None
    return max_abs, scale


def worst_steps(mine: list[dict], theirs: list[dict], names: tuple[str, ...],
                limits: Callable[[str, tuple[str, ...], int], np.ndarray], prefix: str,
                compare: Callable[..., Difference]) -> list[tuple[str, int, Difference | None]]:
    """Per name, ``(name, step, row)``: the step with the largest observed/allowed, each
    step against its own tolerance ``limits(prefix, names, steps)[step - 1]``.

    On regular values every step of every name is measured at once and ``row`` is
    None: the caller compares that one step in full. Otherwise (missing, misshapen
    or non-finite values) every step is compared with ``compare`` and ``row`` is the
    worst of those rows, which explains the problem."""
    count = min(len(mine), len(theirs))
    regular = len(mine) == len(theirs) and all(
        isinstance(m.get(n), np.ndarray) and m[n].shape == t[n].shape
        for m, t in zip(mine, theirs, strict=False) for n in names)
    maxima = _step_maxima(mine, theirs, names) if regular else None
    if maxima is not None:
        max_abs, scale = maxima
        with np.errstate(divide="ignore", invalid="ignore"):
            normwise = np.where(max_abs == 0, 0.0, max_abs / scale)
            allowed = limits(prefix, names, count)
            # a step that is not determined is not judged: it is never the worst
            headroom = np.where((normwise == 0) | (allowed >= NOT_DETERMINED), 0.0,
                                normwise / allowed)
        return [(name, int(step), None)
                for name, step in zip(names, np.argmax(headroom, axis=0) + 1, strict=True)]
    rows = []
    for name in names:
        per_step = [compare(m.get(name), t[name], f"{prefix}@{s}", name)
                    for s, m, t in zip(range(1, count + 1), mine, theirs, strict=False)]
        step, worst = max(enumerate(per_step, start=1), key=lambda item: item[1].headroom)
        rows.append((name, step, worst))
    return rows
