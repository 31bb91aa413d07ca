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
) -> FiniteDifferenceResult:
    """Estimate dL/dparam for every element of every parameter, in float64."""
    base = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    x64 = np.asarray(x, dtype=np.float64)
    y64 = y if y.dtype.kind == "i" else np.asarray(y, dtype=np.float64)

    def evaluate(point: Mapping[str, np.ndarray]) -> tuple[float, list]:
        cache = forward(point, x64, y64, activations, loss)
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
