"""Ridders' extrapolated central differences, the engine of the finite-difference
oracle (:mod:`gradparity.compare.finite_differences` says how it is used).

For k stencils at once, central differences

    D(h) = (L(p + h u) - L(p - h u)) / (2 h)

at the steps h_j = h_0 / 2^j (j = 0 .. STEP_LEVELS - 1) are extrapolated to h = 0 in a
Neville tableau, each entry with an estimate of its own error (Ridders 1982; Numerical
Recipes section 5.7). The perturbed networks of a dense MLP run as one stack through
the reference's forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gradparity.reference import ACTIVATIONS, forward

FIRST_STEP = 1e-3
"""h_0 relative to the element's scale: large enough that the tableau's smallest step
(FIRST_STEP / 2^(STEP_LEVELS - 1)) is still far above rounding."""
STEP_LEVELS = 6
STEP_SHRINK = 2.0
TABLEAU_STOP = 2.0
"""Ridders' SAFE: stop once a new diagonal entry moves by more than this many times the
best error estimate (rounding has taken over)."""
ROUNDING_ULPS = 4.0
"""The losses' rounding, in ulps, that every estimate's error includes."""
EPS64 = float(np.finfo(np.float64).eps)
STACK_ELEMENTS = 2**21
"""At most this many activation values per stacked forward pass (memory, not speed)."""
STACK_PARAMETERS = 2**24
"""At most this many parameter values per stacked forward pass (each network of a stack
of directions holds a whole copy of the parameters)."""
Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Given one step per stencil (shape (k,)), the loss above, the loss below and whether
the stencil crossed a kink, each shaped (k,)."""


def ridders(evaluate: Evaluate, first_steps: np.ndarray, *, stop_early: bool = True
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridders' extrapolated central differences for k stencils at once.

    Returns ``(estimate, error, crossed)``: per stencil the best tableau entry, its error
    estimate (inf where no two usable steps exist) and whether kinks left no two usable
    steps. ``stop_early``: evaluate no smaller step once no later one can change an
    answer (:func:`_settled`; the same answers, ``False`` runs all ``STEP_LEVELS``).
    Where the loss's rounding sets every error, as on a large network's smooth loss,
    that is after three of the six steps."""
    k = first_steps.shape[0]
    factor = STEP_SHRINK**2
    previous: list[np.ndarray] = []  # the tableau column of the previous step
    previous_ok: list[np.ndarray] = []  # which entries of that column avoid kinks
    best = np.full(k, np.nan)
    error = np.full(k, np.inf)
    stopped = np.zeros(k, dtype=bool)
    single = np.full(k, np.nan)  # a lone usable central difference, if nothing better
    ever_crossed = np.zeros(k, dtype=bool)
    for level in range(STEP_LEVELS):
        steps = first_steps / STEP_SHRINK**level
        above, below, crossed = evaluate(steps)
        ever_crossed |= crossed
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            column = [(above - below) / (2 * steps)]
            # the losses' own rounding, which no tableau difference sees where the loss
            # is flat in floating point (every difference exactly 0): relative to the
            # loss, and never below that of terms of order one (a loss that is exactly 0
            # because its terms cancel or underflow still rounds like its terms)
            magnitude = np.maximum(np.maximum(np.abs(above), np.abs(below)), 1.0)
            noise = ROUNDING_ULPS * EPS64 * magnitude / steps
        usable = [~crossed]
        single = np.where(np.isnan(single) & usable[0], column[0], single)
        scale = factor
        for order in range(1, level + 1):
            with np.errstate(invalid="ignore", over="ignore"):
                extrapolated = (column[order - 1] * scale - previous[order - 1]) / (scale - 1)
                moved = np.maximum(np.abs(extrapolated - column[order - 1]),
                                   np.abs(extrapolated - previous[order - 1]))
                moved = np.maximum(moved, noise)
            ok = usable[order - 1] & previous_ok[order - 1]
            better = ok & ~stopped & (moved <= error)
            best = np.where(better, extrapolated, best)
            error = np.where(better, moved, error)
            column.append(extrapolated)
            usable.append(ok)
            scale *= factor
        if level:
            with np.errstate(invalid="ignore"):
                drift = np.abs(column[level] - previous[level - 1])
            stopped |= usable[level] & previous_ok[level - 1] & (drift >= TABLEAU_STOP * error)
            if stop_early and _settled(stopped, best, error, first_steps, level):
                break
        previous, previous_ok = column, usable
    # no two usable steps: a kink is why (or the loss is not finite there); the lone
    # difference, if any, has no error estimate, so it is never judged
    crossed_everywhere = np.isnan(best) & ever_crossed
    best = np.where(np.isnan(best), single, best)
    return best, error, crossed_everywhere


def _settled(stopped: np.ndarray, best: np.ndarray, error: np.ndarray,
             first_steps: np.ndarray, level: int) -> bool:
    """Whether no level after ``level`` can change any answer: every stencil has a best
    entry and has stopped, or has an error below the noise floor of every later level.

    A later entry replaces the best only if its ``moved`` is at most ``error``, and
    ``moved`` is at least that level's noise, ``ROUNDING_ULPS * EPS64 * magnitude /
    step`` with ``magnitude >= 1`` and a smaller step: at least the floor computed here
    with magnitude 1 and the next step (the same operations, so the same rounding). The
    lone difference and the kink flags are read only where no best entry exists."""
    if np.isnan(best).any():
        return False
    with np.errstate(divide="ignore", over="ignore"):
        floor = ROUNDING_ULPS * EPS64 * 1.0 / (first_steps / STEP_SHRINK**(level + 1))
    return bool((stopped | (error < floor)).all())


def kink_sides(pre_activations: tuple[np.ndarray, ...], activations: tuple[str, ...]) -> list:
    sides = []
    for z, name in zip(pre_activations, activations, strict=True):
        for kink in ACTIVATIONS[name].kinks:
            sides.append(np.sign(z - kink))
    return sides


def stacked_parameters(params: Mapping[str, np.ndarray], offsets: Mapping[str, np.ndarray],
             sign: float) -> dict:
    """The parameters of a stack of networks: ``params[name] + sign * offsets[name][k]``
    (read-only: the forward pass keeps them without a copy)."""
    stacked = dict(params)
    for name, offset in offsets.items():
        moved = params[name] + offset if sign > 0 else params[name] - offset
        moved.setflags(write=False)
        stacked[name] = moved[:, None, :] if params[name].ndim == 1 else moved
    return stacked


def stacked_evaluator(params, offsets_of, x, y, activations, loss, options, masks) -> Evaluate:
    """``evaluate(steps)`` for stencils whose unit offsets ``offsets_of`` gives."""

    def run(offsets: Mapping[str, np.ndarray], sign: float) -> tuple[np.ndarray, list]:
        cache = forward(stacked_parameters(params, offsets, sign), x, y, activations, loss, options,
                        masks)
        return np.broadcast_to(cache.loss, (next(iter(offsets.values())).shape[0],)), \
            kink_sides(cache.pre_activations, activations)

    def evaluate(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        offsets = {n: u * shaped(steps, u) for n, u in offsets_of().items()}
        above, sides_above = run(offsets, 1.0)
        below, sides_below = run(offsets, -1.0)
        crossed = np.zeros(steps.shape[0], dtype=bool)
        for a, b in zip(sides_above, sides_below, strict=True):
            if a.ndim == 3 or b.ndim == 3:  # a stacked layer: compare each network's signs
                a, b = np.broadcast_arrays(a, b)
                crossed |= (a != b).reshape(a.shape[0], -1).any(axis=1)
        return above, below, crossed

    return evaluate


def shaped(steps: np.ndarray, unit: np.ndarray) -> np.ndarray:
    return steps.reshape((-1,) + (1,) * (unit.ndim - 1))


def first_steps(value: np.ndarray, fallback: float) -> np.ndarray:
    """h_0 per element: FIRST_STEP times the larger of |p_i| and its tensor's rms."""
    rms = float(np.sqrt(np.mean(value * value))) if value.size else 0.0
    scale = np.maximum(np.abs(value), rms if rms > 0 else fallback)
    return FIRST_STEP * scale.ravel()


def chunk_size(total: int, batch: int, widths: tuple[int, ...], parameters: int) -> int:
    """How many networks one stacked pass runs: bounded by its activations and by the
    copies of the parameters it holds."""
    by_activations = STACK_ELEMENTS // max(1, batch * max(widths))
    by_parameters = STACK_PARAMETERS // max(1, parameters)
    return max(1, min(total, by_activations, by_parameters))


def widened(params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
            masks: tuple[np.ndarray, ...]) -> tuple[dict[str, np.ndarray], np.ndarray,
                                                    np.ndarray, tuple[np.ndarray, ...]]:
    """The oracles' inputs in float64: copies of the parameters (they are perturbed in
    place), the data and masks (integer labels stay integers)."""
    base = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    x64 = np.asarray(x, dtype=np.float64)
    y64 = y if y.dtype.kind == "i" else np.asarray(y, dtype=np.float64)
    return base, x64, y64, tuple(np.asarray(m, dtype=np.float64) for m in masks)
