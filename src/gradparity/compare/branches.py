"""Kinks within rounding: where rounding, not the math, decides a branch.

relu's derivative jumps at 0: a pre-activation a few eps from the kink lands on either
side depending on the order in which a framework sums it. The two sides differ by a
whole unit's backward signal (and, after a max-pooling layer, by which element of a
window of zeros gets the gradient), and an optimizer carries the difference into every
later step: a float32 trajectory can leave the float64 one by 1e-2 with no bug at all.

No relative probe sees this (``z (1 +- eps)`` never changes sign), so the model takes
the other branch on purpose: :class:`KinkFlip` is a ``perturb`` for
:func:`gradparity.spec.evaluation.evaluate` that mirrors every input of a kinked
activation lying within its rounding distance of the kink,

    near(z) = |z - k| <= C sqrt(n) eps max|z|,    z -> 2 k - z,

with ``n`` the number of terms summed on the way to ``z`` (every forward sum below it)
and ``C`` the model's sum safety. The conditioning probe takes it at the first pass
(gradients and deltas) and :mod:`gradparity.compare.derivation` reruns the trajectory
from the first pass that has such an input (``X_t``, see
:mod:`gradparity.compare.tolerances`). Nothing near a kink: nothing changes, nothing is
rerun.

A max-pooling window has a kink too: where its two largest values are within rounding of
each other, either may win and take the gradient. There the runner-up is mirrored around
the maximum (``r -> 2 max - r``, a change of rounding size). An exact tie is left alone:
every framework sees it, and which element takes it is a catalogued convention
(``max_pool_ties``).

Which intermediates feed a kink is known from the case: an MLP's ``z_l`` where layer
``l``'s activation has one, a sequence network's top-level layer output where the next
layer is such an activation or a max-pooling layer. (An activation inside a residual
block is not reached: the ``perturb`` hook sees top-level outputs only.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gradparity.compare.metrics import machine_epsilon
from gradparity.compare.tolerances import SUM_SAFETY
from gradparity.reference.activations import ACTIVATIONS
from gradparity.reference.layers.pool import MaxPool2d
from gradparity.reference.namespace import namespace
from gradparity.spec.case import Case


@dataclass(frozen=True)
class Watched:
    """One intermediate that feeds a kink: where an activation's kinks are (or the
    max-pooling layer whose windows it fills), and its rounding distance in units of
    ``max|z|``."""

    kinks: tuple[float, ...]
    reach: float
    pool: MaxPool2d | None = None


def watched_intermediates(case: Case) -> tuple[int, dict[int, Watched]]:
    """``(calls per pass, {call index: Watched})``: the ``perturb`` calls of one forward
    pass (an MLP calls it on z_1, a_1, z_2, ...; a sequence network on each top-level
    layer's output) whose values feed a kink."""
    eps = machine_epsilon(case.dtype)
    watched: dict[int, Watched] = {}
    if not case.is_sequence:
        summed = 0
        for layer, name in enumerate(case.activations, start=1):
            summed += case.layer_sizes[layer - 1] + 1  # fan-in and the bias
            kinks = ACTIVATIONS[name].kinks
            if kinks:
                watched[2 * (layer - 1)] = Watched(kinks, SUM_SAFETY * math.sqrt(summed) * eps)
        return 2 * case.num_layers, watched
    stack = case.network().stack
    summed = 0
    for index, (layer, shape) in enumerate(zip(stack.layers, stack.shapes, strict=False)):
        summed += layer.reduction_length(shape)
        following = stack.layers[index + 1] if index + 1 < len(stack.layers) else None
        name = getattr(following, "activation", None)
        kinks = ACTIVATIONS[name].kinks if name in ACTIVATIONS else ()
        pool = following if isinstance(following, MaxPool2d) else None
        if kinks or pool is not None:
            watched[index] = Watched(kinks, SUM_SAFETY * math.sqrt(summed) * eps, pool)
    return len(stack.layers), watched


class KinkFlip:
    """A ``perturb`` that mirrors every watched value within rounding of a kink (``flip``)
    or only counts them (``flip=False``, to find the first pass that has one). ``found``:
    how many it met since :meth:`reset`."""

    def __init__(self, case: Case, flip: bool = True) -> None:
        self.period, self.watched = watched_intermediates(case)
        self.flip = flip
        self.calls = 0
        self.found = 0

    @property
    def active(self) -> bool:
        """Whether the case has any kink to watch."""
        return bool(self.watched)

    def reset(self) -> KinkFlip:
        self.calls, self.found = 0, 0
        return self

    def __call__(self, values: np.ndarray) -> np.ndarray:
        watched = self.watched.get(self.calls % self.period)
        self.calls += 1
        if watched is None or not math.prod(values.shape):
            return values
        xp = namespace(values)  # an MLP's values may be another namespace's (a GPU's)
        reach = watched.reach * float(xp.max(xp.abs(values)))
        if watched.pool is not None:
            values = self._ties(watched.pool, values, reach)
        for kink in watched.kinks:
            # exactly at the kink: every framework computes it so
            near = xp.logical_and(xp.abs(values - kink) <= reach, values != kink)
            count = int(xp.count_nonzero(near))
            if count:
                self.found += count
                if self.flip:
                    values = xp.where(near, 2 * kink - values, values)
        return values

    def _ties(self, pool: MaxPool2d, values: np.ndarray, reach: float) -> np.ndarray:
        """Near ties of a max-pooling window: where the runner-up lies within ``reach``
        below the maximum (but not on it: an exact tie is the catalogued tie convention;
        nor is it an exact 0, see below), rounding may pick either, so the runner-up is
        mirrored around the maximum, ``r -> 2 max - r``: a change of rounding size that
        makes it the maximum."""
        _, cols = pool._windows(values, -np.inf)
        n, c, k, _, h, w = cols.shape
        flat = cols.reshape(n, c, k * k, h, w)
        order = np.argsort(-flat, axis=2, kind="stable")
        top = np.take_along_axis(flat, order[:, :, :1], axis=2)[:, :, 0]
        second = np.take_along_axis(flat, order[:, :, 1:2], axis=2)[:, :, 0]
        # a runner-up of exactly 0 is a relu's dead unit, the same in every framework:
        # whether the maximum beats it is the kink's question (its input is mirrored
        # there), not the window's
        near = ((top - second <= reach) & (top != second) & (second != 0)
                & np.isfinite(second))
        count = int(near.sum())
        if not count:
            return values
        self.found += count
        if not self.flip:
            return values
        values = np.array(values, copy=True)
        b, ch, row, col = np.nonzero(near)
        inside = order[b, ch, 1, row, col]  # the runner-up's index inside its window
        rows = row * pool.step + inside // k - pool.padding
        cols_ = col * pool.step + inside % k - pool.padding
        values[b, ch, rows, cols_] = 2 * top[near] - second[near]
        return values
