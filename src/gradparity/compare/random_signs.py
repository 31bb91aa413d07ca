"""Random-sign perturbations, like rounding, of arrays as large as a model's parameters.

The tolerance model's trajectories move every gradient entry, optimizer state entry and
running statistic by a relative or absolute amount with a random sign (one uniform draw
per entry: below 1/2 is minus). Written as ``values * (1 + delta * signs)``, that is
five passes over the whole array, and on a large model each pass is a trip to memory.
Here each slice of ``BLOCK_ENTRIES`` entries (the blocked optimizer update's block) is
drawn and applied while it is in the cache. The draws are the same (a generator's
uniforms come in the same order whatever the sizes they are asked for in) and so is the
arithmetic: ``1 + delta * (-1.0)`` is
``1 - delta`` to the bit, and ``x + a * (-1.0)`` is ``x - a``.

Arrays of another array API namespace (CuPy on a GPU) take the same draws, made on the
host and moved to the arrays' device, and the same arithmetic, on the whole array.
"""

from __future__ import annotations

import numpy as np

from gradparity.reference.blocks import BLOCK_ENTRIES
from gradparity.reference.namespace import namespace


def _negative(values, rng: np.random.Generator):
    """One draw per entry of ``values`` (another namespace's array), below 1/2 where the
    sign is minus, on the arrays' device."""
    xp = namespace(values)
    return xp.asarray(rng.random(tuple(values.shape)) < 0.5)


def _blocked(values: np.ndarray, rng: np.random.Generator, apply) -> np.ndarray:
    flat = np.reshape(values, -1)
    out = np.empty(flat.shape, np.result_type(values, np.float64))
    for start in range(0, flat.size, BLOCK_ENTRIES):
        block = slice(start, start + BLOCK_ENTRIES)
        apply(flat[block], rng.random(flat[block].size) < 0.5, block, out[block])
    return out.reshape(np.shape(values))


def scaled(values: np.ndarray, relative: float, rng: np.random.Generator) -> np.ndarray:
    """``values * (1 + relative * s)``, one random sign ``s`` per entry (in float64)."""
    down, up = 1 + relative * -1.0, 1 + relative * 1.0
    xp = namespace(values)
    if xp is not np:
        factors = xp.where(_negative(values, rng), xp.asarray(down, dtype=xp.float64), up)
        return xp.astype(values, xp.float64) * factors

    def apply(entries, negative, _, out):
        np.multiply(entries, np.where(negative, down, up), out=out)

    return _blocked(values, rng, apply)


def moved(values: np.ndarray, amounts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``values + amounts * s``, one random sign ``s`` per entry (in float64);
    ``amounts`` is shaped like ``values``."""
    xp = namespace(values)
    if xp is not np:
        amounts = xp.broadcast_to(xp.astype(amounts, xp.float64), values.shape)
        return xp.astype(values, xp.float64) + xp.where(_negative(values, rng), -amounts,
                                                        amounts)
    flat_amounts = np.reshape(np.broadcast_to(amounts, np.shape(values)), -1)

    def apply(entries, negative, block, out):
        amount = flat_amounts[block]
        np.add(entries, np.where(negative, -amount, amount), out=out)

    return _blocked(values, rng, apply)
