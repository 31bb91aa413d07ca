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

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from gradparity.compare.directions import (
    RANDOM_DIRECTIONS,
    DirectionalEstimate,
    RandomDirections,
    directional_differences,
    projection,
    sequence_directional_differences,
)
from gradparity.compare.metrics import FINITE_DIFFERENCES, Difference, compare_arrays
from gradparity.compare.ridders import (
    chunk_size,
    first_steps,
    ridders,
    stacked_evaluator,
    widened,
)
from gradparity.compare.tolerances import (
    FINITE_DIFFERENCE_ERROR_SAFETY,
    FINITE_DIFFERENCE_INCONCLUSIVE,
    FINITE_DIFFERENCE_TOLERANCE,
)
from gradparity.spec.evaluation import evaluate

MAX_FULL_PARAMETERS = 2000
"""Up to this many parameters every element is probed; above, random directions."""
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
    base, x64, y64, masks64 = widened(params, x, y, masks)
    everything = np.concatenate([v.ravel() for v in base.values()]) if base else np.zeros(1)
    overall = float(np.sqrt(np.mean(everything * everything))) or 1.0
    widths = tuple(v.shape[-1] for v in base.values())
    gradients, errors, kinks = {}, {}, {}
    for name, value in base.items():
        estimate = np.empty(value.size)
        error = np.empty(value.size)
        crossed = np.empty(value.size, dtype=bool)
        steps = first_steps(value, overall)
        size = chunk_size(value.size, x64.shape[0], widths, value.size)
        for start in range(0, value.size, size):
            entries = np.arange(start, min(start + size, value.size))

            def units(entries=entries, name=name, value=value):
                unit = np.zeros((entries.size, value.size))
                unit[np.arange(entries.size), entries] = 1.0
                return {name: unit.reshape((entries.size, *value.shape))}

            evaluate = stacked_evaluator(base, units, x64, y64, activations, loss, options, masks64)
            found = ridders(evaluate, steps[entries])
            estimate[entries], error[entries], crossed[entries] = found
        gradients[name] = estimate.reshape(value.shape)
        errors[name] = error.reshape(value.shape)
        kinks[name] = crossed.reshape(value.shape)
    return FiniteDifferenceResult(gradients, kinks, errors)


def estimate_for(case, problem, against: Mapping[str, np.ndarray] | None = None
                 ) -> FiniteDifferenceResult | DirectionalEstimate:
    """Every parameter of a network with at most ``MAX_FULL_PARAMETERS`` parameters,
    else ``RANDOM_DIRECTIONS`` random directional derivatives (computed once, compared
    with as many implementations as needed). A sequence network (convolutions,
    attention, ...) always takes the directional derivatives: its layers run one network
    at a time, so probing every parameter would cost two passes per entry and step.
    ``against``: a gradient that will be compared with a dense network's directional
    estimate, projected while the directions are drawn (not drawn again for it)."""
    if case.is_sequence:
        return sequence_directional_differences(case, problem)
    size = sum(value.size for value in problem.params.values())
    x, y, masks = problem.batch(0)  # the gradient at the initial parameters: evaluation 0
    if size <= MAX_FULL_PARAMETERS:
        return central_differences(problem.params, x, y, case.activations, case.loss,
                                   case.all_options, masks)
    return directional_differences(
        problem.params, x, y, case.activations, case.loss, seed=case.seed,
        options=case.all_options, masks=masks, against=against)


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
    tolerance: float | Mapping[str, float] = FINITE_DIFFERENCE_TOLERANCE,
) -> list[Difference]:
    """``gradients`` against the estimate, as ``Difference`` rows.

    Each row allows the oracle's own error estimate (at least ``tolerance``: one for
    every parameter, or one per parameter name; a row of random directions, which mixes
    every parameter, takes the largest). Entries
    whose stencil crosses a kink, and entries where the estimate is too uncertain to
    judge, are not compared (the gradient is compared with itself there); each row's
    ``parameter`` says how many were left out and why.
    """
    common = {"case_id": case.id, "dtype": case.dtype, "framework": framework,
              "baseline_name": FINITE_DIFFERENCES}

    def least(name: str) -> float:
        if isinstance(tolerance, Mapping):
            return tolerance.get(name, FINITE_DIFFERENCE_TOLERANCE)
        return tolerance

    if isinstance(estimate, FiniteDifferenceResult):
        rows = []
        for name, fd in estimate.gradients.items():
            mine = np.asarray(gradients[name], np.float64)
            kinks = estimate.kink_elements[name]
            if mine.shape != fd.shape:
                rows.append(compare_arrays(mine, fd, quantity="gradient", parameter=name,
                                           tolerance=least(name), **common))
                continue
            oracle, allowed, inconclusive = _judged(mine, fd, estimate.errors[name], kinks,
                                                    least(name))
            label = _label(name, int(kinks.sum()), inconclusive, fd.size)
            rows.append(compare_arrays(mine, oracle, quantity="gradient", parameter=label,
                                       tolerance=allowed, **common))
        return rows
    shapes = (estimate.directions.shapes if isinstance(estimate.directions, RandomDirections)
              else {n: np.shape(v) for n, v in estimate.directions[0].items()})
    wrong = [n for n in shapes if np.shape(gradients[n]) != shapes[n]]
    if wrong:  # no directional derivative of a wrongly shaped gradient: say so per parameter
        return [compare_arrays(np.asarray(gradients[n]), np.zeros(shapes[n]), quantity="gradient",
                               parameter=n, tolerance=least(n), **common) for n in wrong]
    if estimate.projected is not None and estimate.projected[0] is gradients:
        predicted = estimate.projected[1]
    else:
        predicted = np.array([projection(gradients, v) for v in estimate.directions])
    oracle, allowed, inconclusive = _judged(
        predicted, estimate.estimates, estimate.errors, estimate.crossed,
        max(least(n) for n in shapes))
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
        return compare_with_estimate(case, estimate_for(case, problem, reference.gradients),
                                     reference.gradients, reference.framework)
    total = problem.batch(0).x.shape[0]
    fewer = problem.first_rows(rows).as_float64()
    gradients = evaluate(case, fewer.params, fewer.batch(0), fewer.state).gradients
    found = compare_with_estimate(case, estimate_for(case, fewer, gradients), gradients,
                                  reference.framework)
    return [replace(row, parameter=f"{row.parameter} (first {rows} of {total} examples)")
            for row in found]
