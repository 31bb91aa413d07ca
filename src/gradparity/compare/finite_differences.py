"""Central finite differences in float64: a gradient oracle that uses no framework.

For each parameter element p_i the derivative is estimated as

    dL/dp_i ~ (L(p + h_i e_i) - L(p - h_i e_i)) / (2 h_i),   h_i = eps^(1/3) max(1, |p_i|)

The step balances truncation error O(h^2) against rounding error O(eps / h);
eps^(1/3) ~ 6e-6 in float64 makes both about 1e-11 relative for smooth losses.

A stencil that crosses a kink of a piecewise activation (relu at 0) does not
estimate a derivative at all; such elements are detected by comparing which
side of every kink each pre-activation lies on at p - h and p + h, and are
reported in ``kink_elements`` instead of being compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gradparity.compare.metrics import compare_arrays
from gradparity.compare.tolerances import FINITE_DIFFERENCE_TOLERANCE
from gradparity.reference import ACTIVATIONS, forward

STEP_SCALE = float(np.finfo(np.float64).eps) ** (1 / 3)


@dataclass(frozen=True)
class FiniteDifferenceResult:
    """Estimated gradients, and per parameter a mask of elements whose stencil crossed a kink."""

    gradients: dict[str, np.ndarray]
    kink_elements: dict[str, np.ndarray]

    @property
    def kink_count(self) -> int:
        return int(sum(mask.sum() for mask in self.kink_elements.values()))


def _kink_sides(pre_activations: tuple[np.ndarray, ...], activations: tuple[str, ...]) -> list:
    sides = []
    for z, name in zip(pre_activations, activations, strict=True):
        for kink in ACTIVATIONS[name].kinks:
            sides.append(np.sign(z - kink))
    return sides


def central_differences(
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    activations: tuple[str, ...],
    loss: str,
    options: Mapping | None = None,
    masks: tuple[np.ndarray, ...] = (),
) -> FiniteDifferenceResult:
    """Estimate dL/dparam for every element of every parameter, in float64."""
    base = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    x64 = np.asarray(x, dtype=np.float64)
    y64 = y if y.dtype.kind == "i" else np.asarray(y, dtype=np.float64)
    masks64 = tuple(np.asarray(m, dtype=np.float64) for m in masks)

    def evaluate(point: Mapping[str, np.ndarray]) -> tuple[float, list]:
        cache = forward(point, x64, y64, activations, loss, options, masks64)
        return float(cache.loss), _kink_sides(cache.pre_activations, activations)

    gradients: dict[str, np.ndarray] = {}
    kinks: dict[str, np.ndarray] = {}
    for name, value in base.items():
        grad = np.zeros_like(value)
        crossed = np.zeros(value.shape, dtype=bool)
        for index in np.ndindex(value.shape):
            step = STEP_SCALE * max(1.0, abs(value[index]))
            plus, minus = dict(base), dict(base)
            plus[name], minus[name] = value.copy(), value.copy()
            plus[name][index] += step
            minus[name][index] -= step
            # the step actually taken, after rounding p +- h to float64
            width = plus[name][index] - minus[name][index]
            loss_plus, sides_plus = evaluate(plus)
            loss_minus, sides_minus = evaluate(minus)
            grad[index] = (loss_plus - loss_minus) / width
            crossed[index] = any(
                not np.array_equal(a, b) for a, b in zip(sides_plus, sides_minus, strict=True)
            )
        gradients[name] = grad
        kinks[name] = crossed
    return FiniteDifferenceResult(gradients, kinks)


MAX_FULL_PARAMETERS = 2000
RANDOM_DIRECTIONS = 16


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
) -> tuple[list[dict[str, np.ndarray]], np.ndarray, np.ndarray]:
    """Central differences along random unit directions (for networks too large to probe
    every parameter): returns the directions, the estimates and a mask of stencils that
    crossed a kink."""
    base = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    x64 = np.asarray(x, dtype=np.float64)
    y64 = y if y.dtype.kind == "i" else np.asarray(y, dtype=np.float64)
    masks64 = tuple(np.asarray(m, dtype=np.float64) for m in masks)
    rng = np.random.default_rng(seed)
    scale = max(1.0, max(float(np.abs(v).max()) for v in base.values()))
    step = STEP_SCALE * scale
    vectors, estimates, crossed = [], [], []
    for _ in range(directions):
        raw = {n: rng.standard_normal(v.shape) for n, v in base.items()}
        norm = np.sqrt(sum(float((r * r).sum()) for r in raw.values()))
        direction = {n: r / norm for n, r in raw.items()}
        plus = forward({n: base[n] + step * direction[n] for n in base}, x64, y64,
                       activations, loss, options, masks64)
        minus = forward({n: base[n] - step * direction[n] for n in base}, x64, y64,
                        activations, loss, options, masks64)
        vectors.append(direction)
        estimates.append((float(plus.loss) - float(minus.loss)) / (2 * step))
        crossed.append(any(
            not np.array_equal(a, b) for a, b in zip(
                _kink_sides(plus.pre_activations, activations),
                _kink_sides(minus.pre_activations, activations), strict=True)
        ))
    return vectors, np.array(estimates), np.array(crossed)


@dataclass(frozen=True)
class DirectionalEstimate:
    """Directional derivatives along random unit directions, and which crossed a kink."""

    directions: list[dict[str, np.ndarray]]
    estimates: np.ndarray
    crossed: np.ndarray


def estimate_for(case, problem) -> FiniteDifferenceResult | DirectionalEstimate:
    """Every parameter of a network with at most ``MAX_FULL_PARAMETERS`` parameters,
    else ``RANDOM_DIRECTIONS`` random directional derivatives (computed once, compared
    with as many implementations as needed)."""
    size = sum(value.size for value in problem.params.values())
    x, y, masks = problem.batch(0)  # the gradient at the initial parameters: evaluation 0
    if size <= MAX_FULL_PARAMETERS:
        return central_differences(problem.params, x, y, case.activations, case.loss,
                                   case.all_options, masks)
    return DirectionalEstimate(*directional_differences(
        problem.params, x, y, case.activations, case.loss, seed=case.seed,
        options=case.all_options, masks=masks))


def compare_with_estimate(
    case, estimate: FiniteDifferenceResult | DirectionalEstimate,
    gradients: Mapping[str, np.ndarray], framework: str,
    tolerance: float = FINITE_DIFFERENCE_TOLERANCE,
) -> list:
    """``gradients`` against the estimate, as ``Difference`` rows.

    Entries whose stencil crosses a kink are not compared (the gradient is
    compared with itself there); each row's ``parameter`` says how many were
    left out.
    """
    common = {"case_id": case.id, "dtype": case.dtype, "framework": framework,
              "baseline_name": "finite differences", "tolerance": tolerance}
    if isinstance(estimate, FiniteDifferenceResult):
        rows = []
        for name, fd in estimate.gradients.items():
            mine = np.asarray(gradients[name], np.float64)
            kinks = estimate.kink_elements[name]
            oracle = np.where(kinks, mine, fd) if mine.shape == fd.shape else fd
            label = name if not kinks.any() else f"{name} ({int(kinks.sum())} kink entries skipped)"
            rows.append(compare_arrays(mine, oracle, quantity="gradient", parameter=label,
                                       **common))
        return rows
    shapes = {n: v.shape for n, v in estimate.directions[0].items()}
    wrong = [n for n in shapes if np.shape(gradients[n]) != shapes[n]]
    if wrong:  # no directional derivative of a wrongly shaped gradient: say so per parameter
        return [compare_arrays(np.asarray(gradients[n]), np.zeros(shapes[n]), quantity="gradient",
                               parameter=n, **common) for n in wrong]
    predicted = np.array([
        sum(float((np.asarray(gradients[n], np.float64) * v[n]).sum()) for n in v)
        for v in estimate.directions
    ])
    oracle = np.where(estimate.crossed, predicted, estimate.estimates)
    label = f"{RANDOM_DIRECTIONS} random directions"
    if estimate.crossed.any():
        label += f" ({int(estimate.crossed.sum())} crossing a kink skipped)"
    return [compare_arrays(predicted, oracle, quantity="gradient", parameter=label, **common)]


def check_against_finite_differences(case, problem, reference) -> list:
    """The reference gradient against central differences (see :func:`estimate_for`)."""
    return compare_with_estimate(case, estimate_for(case, problem), reference.gradients,
                                 reference.framework)
