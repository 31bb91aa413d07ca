"""An elementwise optimizer update computed block by block: the same numbers, faster.

Every optimizer in :mod:`gradparity.reference.optimizers` is elementwise: each entry's
new parameter and state depend only on that entry's parameter, gradient and state, and on
scalars (the step count, the hyperparameters; clipping by the global norm happens before,
on the whole gradient). Written as textbook array expressions, Adam makes about a dozen
temporaries the size of the parameters, and a 6M-parameter model's do not fit in any
cache: every operation is a trip to memory. Run on slices of a few hundred KiB, the same
expressions stay in the cache. The arithmetic of every entry is unchanged, so the result
is the same to the bit (a test holds every optimizer to that). Only NumPy's arrays are
blocked: the caches are the CPU's (a GPU's arrays go to the update whole).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradparity.reference.namespace import namespace

BLOCK_ENTRIES = 1 << 15
"""Entries per block: 256 KiB per float64 array, so an update's dozen arrays fit in L2."""

BLOCKED_FROM = 1 << 18
"""Below this many parameter entries in all, one call: there is nothing to gain."""


def in_blocks(update: Callable[..., tuple[dict[str, np.ndarray], Any]],
              params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], state: Any,
              hp: Mapping[str, Any], *, block: int = BLOCK_ENTRIES,
              **variant: Any) -> tuple[dict[str, np.ndarray], Any]:
    """``update(params, grads, state, hp, **variant)`` for an elementwise ``update``,
    evaluated on consecutive slices of ``block`` entries of every flattened parameter.

    ``state`` is a NamedTuple whose per-parameter slots are dicts keyed like ``params``
    (or None); its other fields (the step count) are taken from the update's answer."""
    if (namespace(*params.values()) is not np
            or sum(np.size(value) for value in params.values()) < BLOCKED_FROM):
        return update(params, grads, state, hp, **variant)
    slots = {field: value for field, value in state._asdict().items()
             if isinstance(value, dict)}
    new_params: dict[str, np.ndarray] = {}
    new_slots: dict[str, Any] = {}
    answer = state
    for name, value in params.items():
        param, grad = value.reshape(-1), np.reshape(grads[name], -1)
        flat_slots = {field: slot[name].reshape(-1) for field, slot in slots.items()}
        written: dict[str, np.ndarray] = {}
        # a parameter with no entries still takes one (empty) block
        for start in range(0, max(value.size, 1), block):
            part = slice(start, start + block)
            sliced = state._replace(**{field: {name: flat[part]}
                                       for field, flat in flat_slots.items()})
            moved, answer = update({name: param[part]}, {name: grad[part]}, sliced, hp,
                                   **variant)
            pieces = {"": moved[name], **{field: slot[name]
                                          for field, slot in answer._asdict().items()
                                          if isinstance(slot, dict)}}
            for field, piece in pieces.items():
                if field not in written:  # arrays that own their memory, like the update's
                    written[field] = np.empty(value.shape, dtype=piece.dtype)
                written[field].reshape(-1)[part] = piece
        new_params[name] = written.pop("")
        for field, array in written.items():
            new_slots.setdefault(field, {})[name] = array
    # slots the update leaves unset (SGD without momentum keeps None)
    new_slots.update({field: None for field, slot in answer._asdict().items()
                      if slot is None})
    return new_params, answer._replace(**new_slots)


def elementwise(function: Callable[..., np.ndarray], *arrays: np.ndarray,
                block: int = BLOCK_ENTRIES) -> np.ndarray:
    """``function(*arrays)`` for an elementwise ``function`` of arrays of one shape,
    evaluated on consecutive slices of ``block`` entries of the flattened arrays.

    The same numbers to the bit: each entry's arithmetic is unchanged, and Python
    scalars promote alike in a slice and in the whole. Whole arrays where blocking has
    nothing to gain (fewer than ``BLOCKED_FROM`` entries) or cannot act (another
    namespace's arrays: the caches are the CPU's)."""
    shape = np.shape(arrays[0])
    if any(np.shape(array) != shape for array in arrays):
        raise ValueError(f"elementwise: the arrays' shapes differ: "
                         f"{[np.shape(array) for array in arrays]}")
    if namespace(*arrays) is not np or int(np.prod(shape)) < BLOCKED_FROM:
        return function(*arrays)
    flat = [np.reshape(array, -1) for array in arrays]
    first = function(*(values[:block] for values in flat))
    # an array that owns its memory, like the whole expression's (``network.freeze``)
    out = np.empty(shape, first.dtype)
    written = out.reshape(-1)
    written[:block] = first
    for start in range(block, written.size, block):
        part = slice(start, start + block)
        written[part] = function(*(values[part] for values in flat))
    return out
