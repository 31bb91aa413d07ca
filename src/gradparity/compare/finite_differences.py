"""A gradient oracle that uses no framework: finite differences in float64, with their
own error estimate.

For each parameter element p_i (or, for large networks, along random unit
directions) the derivative is estimated by Ridders' method: central differences

    D(h) = (L(p + h e_i) - L(p - h e_i)) / (2 h)

at the steps h_j = h_0 / 2^j (j = 0 .. STEP_LEVELS - 1), extrapolated to h = 0 in a
Neville tableau (Richardson extrapolation of the h^2, h^4, ... error terms). Each
tableau entry comes with an estimate of its own error (how far it moved from its
neighbours); the entry with the smallest estimate is the answer, and the tableau
stops where rounding starts to dominate (Ridders 1982; Numerical Recipes section
5.7; numdifftools does the same). The first step is chosen per element from the
scale of the parameter, ``h_0 = FIRST_STEP * max(|p_i|, rms of its tensor)``.

So the oracle says how much it can be trusted: a comparison allows its error
estimate (:func:`compare_with_estimate`), and where the estimate is too large to
judge (a flat loss, saturation, inputs scaled by 1e6) the entry is reported as
*inconclusive*, never as the reference being wrong.

A stencil that crosses a kink of a piecewise activation (relu at 0) does not
estimate a derivative at all; the steps whose stencil crosses one are left out of
the tableau, and an element whose every usable combination crosses one is reported
in ``kink_elements`` instead of being compared.

The perturbed networks of one parameter tensor run as one stack through the
reference's forward pass (every element and every step at once), so the oracle
costs a few vectorised passes per tensor, not two Python-level passes per element.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from gradparity.compare.metrics import FINITE_DIFFERENCES, Difference, compare_arrays
from gradparity.compare.tolerances import (
    FINITE_DIFFERENCE_ERROR_SAFETY,
    FINITE_DIFFERENCE_INCONCLUSIVE,
    FINITE_DIFFERENCE_TOLERANCE,
)
from gradparity.reference import ACTIVATIONS, forward
from gradparity.reference.layers import ActivationLayer
from gradparity.reference.layers.pool import MaxPool2d
from gradparity.reference.layers.residual import Residual
from gradparity.spec.evaluation import evaluate

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
MAX_FULL_PARAMETERS = 2000
RANDOM_DIRECTIONS = 16
STACK_ELEMENTS = 2**21
"""At most this many activation values per stacked forward pass (memory, not speed)."""
STACK_PARAMETERS = 2**24
"""At most this many parameter values per stacked forward pass (each network of a stack
of directions holds a whole copy of the parameters)."""
ORACLE_WORK = 2**27
"""Parameters x examples above which the reference is checked on the first rows of the
batch only (see :func:`oracle_rows`): the oracle's ~200 float64 passes would otherwise
cost far more than the frameworks' runs it checks."""
ORACLE_MIN_ROWS = 8
"""Never fewer examples than this for the oracle's batch."""


@dataclass(frozen=True)
class FiniteDifferenceResult:
    """Estimated gradients, each element's error estimate, and a mask of elements whose
    stencils crossed a kink at every usable step."""

    gradients: dict[str, np.ndarray]
    kink_elements: dict[str, np.ndarray]
    errors: dict[str, np.ndarray]

    @property
    def kink_count(self) -> int:
        return int(sum(mask.sum() for mask in self.kink_elements.values()))


class RandomDirections(Sequence):
    """``count`` random unit directions in parameter space drawn from ``seed``: each a
    dict of standard normals shaped like the parameters, scaled to unit norm together.

    They are kept once drawn while they fit in ``STACK_PARAMETERS`` values; past that
    they are drawn again from the seed whenever read: for a large network, 16 directions
    would hold 16 copies of its parameters."""

    def __init__(self, seed: int, shapes: Mapping[str, tuple[int, ...]], count: int) -> None:
        self.seed = seed
        self.shapes = dict(shapes)
        self.count = count
        size = sum(int(np.prod(shape)) for shape in self.shapes.values())
        self._kept = list(self._drawn()) if size * count <= STACK_PARAMETERS else None

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self._kept) if self._kept is not None else self._drawn()

    def _drawn(self) -> Iterator[dict[str, np.ndarray]]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.count):
            raw = {n: rng.standard_normal(shape) for n, shape in self.shapes.items()}
            norm = np.sqrt(sum(float((r * r).sum()) for r in raw.values()))
            yield {n: r / norm for n, r in raw.items()}

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return list(itertools.islice(iter(self), *index.indices(self.count)))
        if not -self.count <= index < self.count:
            raise IndexError(f"direction {index} of {self.count}")
        return next(itertools.islice(iter(self), index % self.count, None))

    def chunks(self, size: int) -> Iterator[list[dict[str, np.ndarray]]]:
        """The directions in consecutive lists of at most ``size``."""
        directions = iter(self)
        while chunk := list(itertools.islice(directions, size)):
            yield chunk


@dataclass(frozen=True)
class DirectionalEstimate:
    """Directional derivatives along random unit directions, their error estimates, and
    which crossed a kink."""

    directions: Sequence[dict[str, np.ndarray]]
    estimates: np.ndarray
    crossed: np.ndarray
    errors: np.ndarray


Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Given one step per stencil (shape (k,)), the loss above, the loss below and whether
the stencil crossed a kink, each shaped (k,)."""


def ridders(evaluate: Evaluate, first_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Ridders' extrapolated central differences for k stencils at once.

    Returns ``(estimate, error, crossed)``: per stencil the best tableau entry, its error
    estimate (inf where no two usable steps exist) and whether kinks left no two usable
    steps."""
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
        previous, previous_ok = column, usable
    # no two usable steps: a kink is why (or the loss is not finite there); the lone
    # difference, if any, has no error estimate, so it is never judged
    crossed_everywhere = np.isnan(best) & ever_crossed
    best = np.where(np.isnan(best), single, best)
    return best, error, crossed_everywhere


def _kink_sides(pre_activations: tuple[np.ndarray, ...], activations: tuple[str, ...]) -> list:
    sides = []
    for z, name in zip(pre_activations, activations, strict=True):
        for kink in ACTIVATIONS[name].kinks:
            sides.append(np.sign(z - kink))
    return sides


def _stacked(params: Mapping[str, np.ndarray], offsets: Mapping[str, np.ndarray],
             sign: float) -> dict:
    """The parameters of a stack of networks: ``params[name] + sign * offsets[name][k]``
    (read-only: the forward pass keeps them without a copy)."""
    stacked = dict(params)
    for name, offset in offsets.items():
        moved = params[name] + offset if sign > 0 else params[name] - offset
        moved.setflags(write=False)
        stacked[name] = moved[:, None, :] if params[name].ndim == 1 else moved
    return stacked


def _evaluator(params, offsets_of, x, y, activations, loss, options, masks) -> Evaluate:
    """``evaluate(steps)`` for stencils whose unit offsets ``offsets_of`` gives."""

    def run(offsets: Mapping[str, np.ndarray], sign: float) -> tuple[np.ndarray, list]:
        cache = forward(_stacked(params, offsets, sign), x, y, activations, loss, options,
                        masks)
        return np.broadcast_to(cache.loss, (next(iter(offsets.values())).shape[0],)), \
            _kink_sides(cache.pre_activations, activations)

    def evaluate(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        offsets = {n: u * _shaped(steps, u) for n, u in offsets_of().items()}
        above, sides_above = run(offsets, 1.0)
        below, sides_below = run(offsets, -1.0)
        crossed = np.zeros(steps.shape[0], dtype=bool)
        for a, b in zip(sides_above, sides_below, strict=True):
            if a.ndim == 3 or b.ndim == 3:  # a stacked layer: compare each network's signs
                a, b = np.broadcast_arrays(a, b)
                crossed |= (a != b).reshape(a.shape[0], -1).any(axis=1)
        return above, below, crossed

    return evaluate


def _shaped(steps: np.ndarray, unit: np.ndarray) -> np.ndarray:
    return steps.reshape((-1,) + (1,) * (unit.ndim - 1))


def _first_steps(value: np.ndarray, fallback: float) -> np.ndarray:
    """h_0 per element: FIRST_STEP times the larger of |p_i| and its tensor's rms."""
    rms = float(np.sqrt(np.mean(value * value))) if value.size else 0.0
    scale = np.maximum(np.abs(value), rms if rms > 0 else fallback)
    return FIRST_STEP * scale.ravel()


def _chunk(total: int, batch: int, widths: tuple[int, ...], parameters: int) -> int:
    """How many networks one stacked pass runs: bounded by its activations and by the
    copies of the parameters it holds."""
    by_activations = STACK_ELEMENTS // max(1, batch * max(widths))
    by_parameters = STACK_PARAMETERS // max(1, parameters)
    return max(1, min(total, by_activations, by_parameters))


def central_differences(
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    activations: tuple[str, ...],
    loss: str,
    options: Mapping | None = None,
    masks: tuple[np.ndarray, ...] = (),
) -> FiniteDifferenceResult:
    """Estimate dL/dparam for every element of every parameter, in float64, with errors."""
    base = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    x64 = np.asarray(x, dtype=np.float64)
    y64 = y if y.dtype.kind == "i" else np.asarray(y, dtype=np.float64)
    masks64 = tuple(np.asarray(m, dtype=np.float64) for m in masks)
    everything = np.concatenate([v.ravel() for v in base.values()]) if base else np.zeros(1)
    overall = float(np.sqrt(np.mean(everything * everything))) or 1.0
    widths = tuple(v.shape[-1] for v in base.values())
    gradients, errors, kinks = {}, {}, {}
    for name, value in base.items():
        estimate = np.empty(value.size)
        error = np.empty(value.size)
        crossed = np.empty(value.size, dtype=bool)
        steps = _first_steps(value, overall)
        size = _chunk(value.size, x64.shape[0], widths, value.size)
        for start in range(0, value.size, size):
            entries = np.arange(start, min(start + size, value.size))

            def units(entries=entries, name=name, value=value):
                unit = np.zeros((entries.size, value.size))
                unit[np.arange(entries.size), entries] = 1.0
                return {name: unit.reshape((entries.size, *value.shape))}

            evaluate = _evaluator(base, units, x64, y64, activations, loss, options, masks64)
            found = ridders(evaluate, steps[entries])
            estimate[entries], error[entries], crossed[entries] = found
        gradients[name] = estimate.reshape(value.shape)
        errors[name] = error.reshape(value.shape)
        kinks[name] = crossed.reshape(value.shape)
    return FiniteDifferenceResult(gradients, kinks, errors)


def directional_differences(
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    activations: tuple[str, ...],
    loss: str,
    directions: int = RANDOM_DIRECTIONS,
    seed: int = 0,
    options: Mapping | None = None,
    masks: tuple[np.ndarray, ...] = (),
) -> DirectionalEstimate:
    """Ridders' differences along random unit directions (for networks too large to
    probe every parameter)."""
    base = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    x64 = np.asarray(x, dtype=np.float64)
    y64 = y if y.dtype.kind == "i" else np.asarray(y, dtype=np.float64)
    masks64 = tuple(np.asarray(m, dtype=np.float64) for m in masks)
    vectors = RandomDirections(seed, {n: v.shape for n, v in base.items()}, directions)
    scale = max(1.0, max(float(np.abs(v).max()) for v in base.values()))
    widths = tuple(v.shape[-1] for v in base.values())
    estimates, errors, crossed = [], [], []
    size = _chunk(directions, x64.shape[0], widths, sum(v.size for v in base.values()))
    for chosen in vectors.chunks(size):
        stacked = {n: np.stack([v[n] for v in chosen]) for n in base}
        evaluate = _evaluator(base, lambda stacked=stacked: stacked, x64, y64, activations,
                              loss, options, masks64)
        found = ridders(evaluate, np.full(len(chosen), FIRST_STEP * scale))
        estimates.append(found[0])
        errors.append(found[1])
        crossed.append(found[2])
    return DirectionalEstimate(vectors, np.concatenate(estimates), np.concatenate(crossed),
                               np.concatenate(errors))


def _sequence_sides(layers, run) -> list[np.ndarray]:
    """Which side of every kink a sequence network's pass was on: the sign of each
    kinked activation's input against its kink, and each max-pool window's arg max."""
    sides = []
    for layer, cache in zip(layers, run.caches, strict=True):
        if isinstance(layer, ActivationLayer):
            z = cache[0]
            sides.extend(np.sign(z - kink) for kink in ACTIVATIONS[layer.activation].kinks)
        elif isinstance(layer, MaxPool2d):
            sides.append(cache[1])
        elif isinstance(layer, Residual):
            stack, inner = cache
            sides.extend(_sequence_sides(stack.layers, inner))
    return sides


def _sequence_evaluator(case, params, batch, state, directions) -> Evaluate:
    """``evaluate(steps)`` of a sequence network along ``directions``: one forward pass
    per stencil side (its layers take one network at a time)."""
    net = case.network()
    x, y, _ = batch

    def run(moved) -> tuple[float, list]:
        cache = net.forward(moved, x, y, case.all_options, state)
        return float(cache.loss), _sequence_sides(net.stack.layers, cache.run)

    def evaluate(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        above, below = np.empty(steps.size), np.empty(steps.size)
        crossed = np.zeros(steps.size, dtype=bool)
        for k, (step, unit) in enumerate(zip(steps, directions, strict=True)):
            up = {n: p + step * unit[n] if n in unit else p for n, p in params.items()}
            down = {n: p - step * unit[n] if n in unit else p for n, p in params.items()}
            above[k], sides_above = run(up)
            below[k], sides_below = run(down)
            crossed[k] = any((a != b).any() for a, b in zip(sides_above, sides_below,
                                                             strict=True))
        return above, below, crossed

    return evaluate


def sequence_directional_differences(case, problem,
                                     directions: int = RANDOM_DIRECTIONS
                                     ) -> DirectionalEstimate:
    """Ridders' differences of a sequence network's loss along random unit directions in
    parameter space, in float64 (the gradient at the initial parameters, evaluation 0)."""
    wide = problem.as_float64()
    base = wide.params
    vectors = RandomDirections(case.seed, {n: v.shape for n, v in base.items()}, directions)
    scale = max(1.0, max(float(np.abs(v).max()) for v in base.values()))
    evaluate = _sequence_evaluator(case, base, wide.batch(0), wide.state, vectors)
    found = ridders(evaluate, np.full(directions, FIRST_STEP * scale))
    return DirectionalEstimate(vectors, found[0], found[2], found[1])


def estimate_for(case, problem) -> FiniteDifferenceResult | DirectionalEstimate:
    """Every parameter of a network with at most ``MAX_FULL_PARAMETERS`` parameters,
    else ``RANDOM_DIRECTIONS`` random directional derivatives (computed once, compared
    with as many implementations as needed). A sequence network (convolutions,
    attention, ...) always takes the directional derivatives: its layers run one network
    at a time, so probing every parameter would cost two passes per entry and step."""
    if case.is_sequence:
        return sequence_directional_differences(case, problem)
    size = sum(value.size for value in problem.params.values())
    x, y, masks = problem.batch(0)  # the gradient at the initial parameters: evaluation 0
    if size <= MAX_FULL_PARAMETERS:
        return central_differences(problem.params, x, y, case.activations, case.loss,
                                   case.all_options, masks)
    return directional_differences(
        problem.params, x, y, case.activations, case.loss, seed=case.seed,
        options=case.all_options, masks=masks)


def _judged(mine: np.ndarray, estimate: np.ndarray, error: np.ndarray,
            skipped: np.ndarray, floor: float) -> tuple[np.ndarray, float, int]:
    """The oracle to compare ``mine`` with (``mine`` itself where an entry is not judged),
    the tolerance, and how many entries were inconclusive.

    An entry is inconclusive when its error estimate exceeds FINITE_DIFFERENCE_INCONCLUSIVE
    of the gradient's scale; the tolerance is the oracle's own largest error over the
    judged entries (times a safety), never below ``floor``."""
    judged = ~skipped & np.isfinite(estimate)
    scale = float(np.abs(estimate[judged]).max()) if judged.any() else 0.0
    scale = max(scale, float(np.abs(mine).max()) if mine.size else 0.0)
    limit = FINITE_DIFFERENCE_INCONCLUSIVE * scale
    conclusive = judged & np.isfinite(error) & (error <= limit)
    inconclusive = int((judged & ~conclusive).sum())
    oracle = np.where(conclusive, estimate, mine)
    own = float(error[conclusive].max()) if conclusive.any() else 0.0
    tolerance = max(floor, FINITE_DIFFERENCE_ERROR_SAFETY * own / scale if scale > 0 else 0.0)
    return oracle, tolerance, inconclusive


def _label(name: str, kinks: int, inconclusive: int, total: int) -> str:
    notes = []
    if kinks:
        notes.append(f"{kinks} kink entries skipped")
    if inconclusive:
        notes.append(f"finite differences inconclusive at {inconclusive} of {total} entries"
                     if inconclusive < total else "finite differences inconclusive here")
    return f"{name} ({'; '.join(notes)})" if notes else name


def compare_with_estimate(
    case, estimate: FiniteDifferenceResult | DirectionalEstimate,
    gradients: Mapping[str, np.ndarray], framework: str,
    tolerance: float = FINITE_DIFFERENCE_TOLERANCE,
) -> list[Difference]:
    """``gradients`` against the estimate, as ``Difference`` rows.

    Each row allows the oracle's own error estimate (at least ``tolerance``). Entries
    whose stencil crosses a kink, and entries where the estimate is too uncertain to
    judge, are not compared (the gradient is compared with itself there); each row's
    ``parameter`` says how many were left out and why.
    """
    common = {"case_id": case.id, "dtype": case.dtype, "framework": framework,
              "baseline_name": FINITE_DIFFERENCES}
    if isinstance(estimate, FiniteDifferenceResult):
        rows = []
        for name, fd in estimate.gradients.items():
            mine = np.asarray(gradients[name], np.float64)
            kinks = estimate.kink_elements[name]
            if mine.shape != fd.shape:
                rows.append(compare_arrays(mine, fd, quantity="gradient", parameter=name,
                                           tolerance=tolerance, **common))
                continue
            oracle, allowed, inconclusive = _judged(mine, fd, estimate.errors[name], kinks,
                                                    tolerance)
            label = _label(name, int(kinks.sum()), inconclusive, fd.size)
            rows.append(compare_arrays(mine, oracle, quantity="gradient", parameter=label,
                                       tolerance=allowed, **common))
        return rows
    shapes = (estimate.directions.shapes if isinstance(estimate.directions, RandomDirections)
              else {n: np.shape(v) for n, v in estimate.directions[0].items()})
    wrong = [n for n in shapes if np.shape(gradients[n]) != shapes[n]]
    if wrong:  # no directional derivative of a wrongly shaped gradient: say so per parameter
        return [compare_arrays(np.asarray(gradients[n]), np.zeros(shapes[n]), quantity="gradient",
                               parameter=n, tolerance=tolerance, **common) for n in wrong]
    predicted = np.array([
        sum(float((np.asarray(gradients[n], np.float64) * v[n]).sum()) for n in v)
        for v in estimate.directions
    ])
    oracle, allowed, inconclusive = _judged(predicted, estimate.estimates, estimate.errors,
                                            estimate.crossed, tolerance)
    label = f"{RANDOM_DIRECTIONS} random directions"
    notes = _label("", int(estimate.crossed.sum()), inconclusive, predicted.size).strip()
    if notes:
        label += " " + notes.replace("kink entries", "directions crossing a kink")
    return [compare_arrays(predicted, oracle, quantity="gradient", parameter=label,
                           tolerance=allowed, **common)]


def oracle_rows(case, problem) -> int | None:
    """How many examples the finite-difference check of the reference uses: ``None`` (the
    whole batch of evaluation 0) unless parameters x examples exceed ``ORACLE_WORK``,
    then as many first rows as fit (at least ``ORACLE_MIN_ROWS``).

    The check is of the reference's backward code, which is the same for any batch, so
    a few rows test it as well as all of them, at a fraction of the oracle's cost."""
    parameters = sum(value.size for value in problem.params.values())
    rows = problem.batch(0).x.shape[0]
    if parameters * rows <= ORACLE_WORK:
        return None
    fewer = max(ORACLE_MIN_ROWS, ORACLE_WORK // parameters)
    return fewer if fewer < rows else None


def check_against_finite_differences(case, problem, reference) -> list[Difference]:
    """The reference gradient against finite differences (see :func:`estimate_for`).

    For a large network (:func:`oracle_rows`) the reference's float64 gradient is
    evaluated again on the first rows of the batch, and compared with finite differences
    on those rows; each row of the result says so."""
    rows = oracle_rows(case, problem)
    if rows is None:
        return compare_with_estimate(case, estimate_for(case, problem), reference.gradients,
                                     reference.framework)
    total = problem.batch(0).x.shape[0]
    fewer = problem.first_rows(rows).as_float64()
    gradients = evaluate(case, fewer.params, fewer.batch(0), fewer.state).gradients
    found = compare_with_estimate(case, estimate_for(case, fewer), gradients,
                                  reference.framework)
    return [replace(row, parameter=f"{row.parameter} (first {rows} of {total} examples)")
            for row in found]
