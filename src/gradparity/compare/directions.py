"""Directional finite differences: Ridders' differences of the loss along random unit
directions in parameter space, for networks too large to probe every element."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gradparity.compare.ridders import (
    FIRST_STEP,
    STACK_PARAMETERS,
    Evaluate,
    chunk_size,
    ridders,
    stacked_evaluator,
    widened,
)
from gradparity.reference import ACTIVATIONS
from gradparity.reference.layers import ActivationLayer
from gradparity.reference.layers.pool import MaxPool2d
from gradparity.reference.layers.residual import Residual

RANDOM_DIRECTIONS = 16
"""How many random directions a directional estimate takes."""


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


def projection(gradients: Mapping[str, np.ndarray], direction: Mapping[str, np.ndarray]
               ) -> float:
    """The directional derivative a gradient predicts: sum over parameters of g . v, in
    float64."""
    return sum(float((np.asarray(gradients[n], np.float64) * v).sum())
               for n, v in direction.items())


@dataclass(frozen=True)
class DirectionalEstimate:
    """Directional derivatives along random unit directions, their error estimates, and
    which crossed a kink. ``projected``: a gradient given while the directions were at
    hand, and its :func:`projection` on each (a large network's directions are drawn
    again from their seed whenever read)."""

    directions: Sequence[dict[str, np.ndarray]]
    estimates: np.ndarray
    crossed: np.ndarray
    errors: np.ndarray
    projected: tuple[Mapping[str, np.ndarray], np.ndarray] | None = None


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
    against: Mapping[str, np.ndarray] | None = None,
) -> DirectionalEstimate:
    """Ridders' differences along random unit directions (for networks too large to
    probe every parameter); ``against``: a gradient to project on each direction while
    it is drawn (``DirectionalEstimate.projected``)."""
    base, x64, y64, masks64 = widened(params, x, y, masks)
    vectors = RandomDirections(seed, {n: v.shape for n, v in base.items()}, directions)
    scale = max(1.0, max(float(np.abs(v).max()) for v in base.values()))
    widths = tuple(v.shape[-1] for v in base.values())
    estimates, errors, crossed, projections = [], [], [], []
    if against is not None and any(np.shape(against.get(n)) != v.shape
                                   for n, v in base.items()):
        against = None  # a wrongly shaped gradient is reported, not projected
    size = chunk_size(directions, x64.shape[0], widths, sum(v.size for v in base.values()))
    for chosen in vectors.chunks(size):
        if against is not None:
            projections += [projection(against, v) for v in chosen]
        stacked = {n: np.stack([v[n] for v in chosen]) for n in base}
        evaluate = stacked_evaluator(base, lambda stacked=stacked: stacked, x64, y64, activations,
                              loss, options, masks64)
        found = ridders(evaluate, np.full(len(chosen), FIRST_STEP * scale))
        estimates.append(found[0])
        errors.append(found[1])
        crossed.append(found[2])
    return DirectionalEstimate(vectors, np.concatenate(estimates), np.concatenate(crossed),
                               np.concatenate(errors),
                               None if against is None else (against, np.array(projections)))


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


def _sequencestacked_evaluator(case, params, batch, state, directions) -> Evaluate:
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
    evaluate = _sequencestacked_evaluator(case, base, wide.batch(0), wide.state, vectors)
    found = ridders(evaluate, np.full(directions, FIRST_STEP * scale))
    return DirectionalEstimate(vectors, found[0], found[2], found[1])
