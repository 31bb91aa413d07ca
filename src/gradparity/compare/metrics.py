"""Comparison metrics and assertion helpers: how far one array is from its baseline.

For two arrays ``a`` (the implementation under test) and ``b`` (its baseline):

* ``max_abs``   = max |a - b|
* ``max_rel``   = max |a - b| / |b| over elements, with 0/0 = 0 and x/0 = inf
* ``normwise``  = max |a - b| / max |b|   (the pass/fail metric)
* ``normwise_eps`` = normwise / eps(dtype)

The normwise measure is used for pass/fail because elementwise relative error
explodes on entries that are nearly zero by cancellation, where a few ulps of
absolute error are the expected outcome of correct arithmetic.

A check passes when ``normwise <= tolerance``, or when every difference is below the
smallest normal number of the dtype (:func:`underflow_level`): values that small are
not representable to any relative precision there (a float64 gradient of 1e-107 is 0
in float32), so such a difference is underflow, not a disagreement.

A check of a step of training whose tolerance is at least :data:`NOT_DETERMINED` is *not
determined* in its dtype: the tolerance model says rounding alone can move the quantity
by its own size, so no difference there can be told from rounding. It is not judged (it
passes when both sides are finite and of the same shape), its ``headroom`` is 0, and the
report lists it. A single pass (:func:`of_training`) is always judged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gradparity.reference.blocks import BLOCK_ENTRIES


def format_eps(value: float) -> str:
    """``"3.2 eps"``, or ``"2.86e+15 eps"`` once fixed point stops being readable."""
    return f"{value:.1f} eps" if value < 1e4 else f"{value:.2e} eps"


ORACLE = "float64 oracle"
"""The baseline name of the NumPy reference rerun in float64 (float32 cases)."""
FINITE_DIFFERENCES = "finite differences"
"""The baseline name of the framework-free finite-difference oracle."""


@functools.cache
def machine_epsilon(dtype: str) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


@functools.cache
def underflow_level(dtype: str) -> float:
    """The smallest normal number of ``dtype``: differences below it are underflow."""
    return float(np.finfo(np.dtype(dtype)).tiny)


def of_training(quantity: str) -> bool:
    """Whether a check is of a step of training: the parameters or optimizer state after a
    step (``params@t``, ``state@t``) or the loss trajectory (``losses``). Only these can be
    not determined: a single pass (a network's first, a layer object's) is always judged,
    and a value within rounding of a kink can give its array a tolerance above 1 while the
    rest of the array is still worth judging."""
    return quantity == "losses" or quantity.startswith(("params@", "state@"))


NOT_DETERMINED = 1.0
"""A normwise relative tolerance at or above this, on a step of training, is the tolerance
model saying that rounding alone can move the quantity by its own size in this dtype:
its value there is rounding noise (the parameters and RMSprop's ``square_avg`` of a tanh
network saturated by raw pixels, whose ``1 - a^2`` is 0 or a few ulps: 15 times apart
between two correct float32 runs). The check is *not determined*: not judged, and listed
by the report. Only the case and its data enter a tolerance, never the implementation
under test, so a bug cannot make its own check undetermined."""


def determined(quantity: str, tolerance: float) -> bool:
    """Whether a check is judged: every single pass, and a step of training whose
    tolerance is below :data:`NOT_DETERMINED`."""
    return bool(not of_training(quantity) or tolerance < NOT_DETERMINED)


def within(normwise: float, max_abs: float, tolerance: float, dtype: str,
           quantity: str) -> bool:
    """The pass rule: within the normwise tolerance, every difference underflows, or the
    check is not determined in this dtype."""
    return bool(normwise <= tolerance or max_abs < underflow_level(dtype)
                or not determined(quantity, tolerance))


@dataclass(frozen=True)
class Difference:
    """How far one quantity of one implementation is from its baseline."""

    case_id: str
    dtype: str
    framework: str
    baseline: str
    quantity: str  # "loss", "gradient", "delta", "params@<step>", "trajectory", "state", "losses"
    parameter: str  # "W1", "b1", ..., "loss", or a state slot "first_moment/W1"
    max_abs: float
    max_rel: float
    normwise: float
    normwise_eps: float
    tolerance: float
    worst_index: tuple[int, ...]
    value: float
    baseline_value: float
    passed: bool
    note: str = ""

    @property
    def pair(self) -> str:
        return f"{self.framework} vs {self.baseline}"

    @property
    def determined(self) -> bool:
        """False where the tolerance model says rounding can move the quantity by its own
        size: the check is not judged (see :data:`NOT_DETERMINED`). A check with a note
        (missing, misshapen or non-finite values) is always judged: it fails."""
        return bool(self.note) or determined(self.quantity, self.tolerance)

    @property
    def headroom(self) -> float:
        """observed / allowed: at most 1 passes (0 where every difference underflows, and
        where the check is not determined)."""
        if self.max_abs < underflow_level(self.dtype) or not self.determined:
            return 0.0
        return self.normwise / self.tolerance

    def message(self) -> str:
        """Which case, pair, parameter and index, both values, and by how much."""
        what = self.quantity if self.parameter == "loss" else f"{self.quantity} of {self.parameter}"
        where = f"case {self.case_id}: {self.pair}, {what}"
        if self.note:
            return f"{where}: {self.note}"
        eps = machine_epsilon(self.dtype)
        if not self.determined:
            return (f"{where}: not determined in {self.dtype}, not judged (its tolerance "
                    f"{self.tolerance:.3e} lets rounding move it by its own size); normwise "
                    f"relative difference {self.normwise:.3e}, worst index "
                    f"{self.worst_index}: {self.framework}={self.value!r}, "
                    f"{self.baseline}={self.baseline_value!r}")
        return (
            f"{where}: normwise relative difference {self.normwise:.3e} "
            f"({format_eps(self.normwise_eps)}) {'<=' if self.passed else '>'} tolerance "
            f"{self.tolerance:.3e} ({self.tolerance / eps:.0f} eps); worst index "
            f"{self.worst_index}: {self.framework}={self.value!r}, "
            f"{self.baseline}={self.baseline_value!r}, |diff|={self.max_abs:.3e}"
        )


def _nonfinite_summary(array: np.ndarray) -> str:
    nan, inf = np.isnan(array), np.isinf(array)
    if not (nan.any() or inf.any()):
        return "all finite"
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(nan | inf)), array.shape))
    return f"{int(nan.sum())} NaN and {int(inf.sum())} Inf (first at {first})"


def nonfinite_note(a: np.ndarray, b: np.ndarray, framework: str, baseline: str) -> str:
    """Counts and first index of NaN/Inf on each side. Never a match: two NaN at the same
    place are said to be that, explicitly, and the check fails."""
    same = (np.array_equal(np.isnan(a), np.isnan(b)) and np.isnan(a).any()
            and np.array_equal(np.isinf(a) & (a > 0), np.isinf(b) & (b > 0))
            and np.array_equal(np.isinf(a) & (a < 0), np.isinf(b) & (b < 0)))
    text = (f"non-finite values: {framework} has {_nonfinite_summary(a)}; {baseline} has "
            f"{_nonfinite_summary(b)}")
    if same:
        text += (" - both produce NaN at the same places: reported as non-finite, not as "
                 "agreement")
    return text


def largest(values: np.ndarray) -> float:
    """max |values| without a copy of |values| (0 for an empty array)."""
    return max(float(values.max()), -float(values.min())) if values.size else 0.0


TILE = math.isqrt(BLOCK_ENTRIES)
"""Rows and columns of a block of two matrices whose layouts differ (see :func:`_blocks`)."""


class _Block(NamedTuple):
    index: tuple[slice, ...]
    row: int  # the block's first row and column: its entries' flat (C-order) indices
    column: int


def _blocks(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[_Block], int]:
    """Two arrays of one shape (a 0-d array as one entry), their blocks and the entries
    of the largest.

    A pass over large arrays block by block keeps its float64 temporaries in the cache.
    Blocks are slices of the first axis of about ``BLOCK_ENTRIES`` entries, which copy
    nothing whatever the layout; an array that fits is one block. Two matrices of which
    one is not in C order (torch's weights arrive transposed) are cut into ``TILE`` x
    ``TILE`` squares instead: a slice of rows of a transposed matrix reads one entry per
    row of its memory, a page apart, and the pass ran about four times slower."""
    a = a.reshape(1) if not a.ndim else a
    b = b.reshape(a.shape)
    if a.size <= BLOCK_ENTRIES:
        return a, b, [_Block((slice(None),), 0, 0)], a.size
    if a.ndim == 2 and not (a.flags.c_contiguous and b.flags.c_contiguous):
        rows, columns = a.shape
        return a, b, [_Block((slice(r, r + TILE), slice(c, c + TILE)), r, c)
                      for r in range(0, rows, TILE) for c in range(0, columns, TILE)], \
            min(TILE, rows) * min(TILE, columns)
    row = a.size // a.shape[0]
    rows = max(1, BLOCK_ENTRIES // row)
    return a, b, [_Block((slice(start, start + rows),), start, 0)
                  for start in range(0, a.shape[0], rows)], min(rows, a.shape[0]) * row


def _into(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return buffer[:math.prod(shape)].reshape(shape)


def _flat_index(array: np.ndarray, block: _Block, local: int, shape: tuple[int, ...]) -> int:
    """The flat (C-order) index in ``array`` of entry ``local`` of ``block`` (of ``shape``)."""
    if array.ndim == 2 and block.index[1:]:
        r, c = np.unravel_index(local, shape)
        return (block.row + int(r)) * array.shape[1] + block.column + int(c)
    return block.row * (array.size // array.shape[0]) + local


def largest_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| of two arrays of one shape, in float64 (each side converted first,
    which is exact for float32), block by block: no float64 copy of either side.
    NaN where either side has a NaN or both the same Inf; 0 for empty arrays."""
    return _difference_pass(a, b, scaled=False)[0]


def largest_difference_and_scale(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(largest_difference(a, b), largest(b))`` in one pass, each block of ``b`` read
    once while it is in the cache; both NaN where the difference is NaN (a NaN or an
    Inf on either side makes the difference NaN or Inf)."""
    return _difference_pass(a, b, scaled=True)


def _difference_pass(a: np.ndarray, b: np.ndarray, scaled: bool) -> tuple[float, float]:
    a, b = np.asarray(a), np.asarray(b)
    # one pass where its float64 temporary is small, or where the shapes differ (NumPy
    # broadcasts them or says why not; blocks would pair the wrong entries)
    if a.size <= BLOCK_ENTRIES or a.shape != b.shape:
        with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf
            worst = largest(np.subtract(a, b, dtype=np.float64))
        return (worst, worst) if np.isnan(worst) else (worst, largest(b) if scaled else 0.0)
    a, b, blocks, entries = _blocks(a, b)
    worst, scale, buffer = 0.0, 0.0, np.empty(entries)
    with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf
        for block in blocks:
            part = block.index
            difference = np.subtract(a[part], b[part], dtype=np.float64,
                                     out=_into(buffer, a[part].shape))
            largest_here = float(np.abs(difference, out=difference).max())
            if not largest_here <= worst:  # larger, or NaN, which no later block undoes
                worst = largest_here
                if np.isnan(largest_here):
                    return worst, worst
            if scaled:  # |b|'s maximum is exact in b's own dtype
                scale = max(scale, largest(b[part]))
    return worst, scale


class _Extremes(NamedTuple):
    """What a comparison reads off |a - b| (in float64) and |b| (in b's dtype)."""

    max_abs: float  # NaN or Inf where either side has one
    worst: int  # the first flat (C-order) index of max_abs
    scale: float  # max |b|
    max_rel: float  # max |a - b| / |b|, with 0/0 = 0 and x/0 = inf


def _extremes(a: np.ndarray, b: np.ndarray) -> _Extremes:
    """The extremes of two non-empty arrays of one shape, block by block: the same
    numbers as whole-array passes (maxima do not depend on the order they are taken
    in; of the blocks with the largest maximum, the one whose first occurrence has the
    lowest flat index holds the first index)."""
    a, b, blocks, entries = _blocks(a, b)
    max_abs, worst, scale, max_rel = -np.inf, 0, 0.0, 0.0
    buffer, relative = np.empty(entries), np.empty(entries)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # Inf - Inf, x / 0
        for block in blocks:
            part = block.index
            diff = np.subtract(a[part], b[part], dtype=np.float64,
                               out=_into(buffer, a[part].shape))
            np.abs(diff, out=diff)
            largest_here = float(diff.max())
            magnitude = np.abs(b[part])  # exact in b's own dtype
            scale = max(scale, float(magnitude.max()))
            if not (np.isfinite(largest_here) and np.isfinite(scale)):
                return _Extremes(largest_here, 0, scale, np.nan)  # the caller explains them
            if largest_here >= max_abs:
                first = _flat_index(a, block, int(np.argmax(diff)), diff.shape)
                if largest_here > max_abs or first < worst:
                    max_abs, worst = largest_here, first
            ratio = np.divide(diff, magnitude, dtype=np.float64, out=_into(relative, diff.shape))
            ratio[diff == 0] = 0.0  # x/0 = inf, 0/0 = 0
            max_rel = max(max_rel, float(ratio.max()))
    return _Extremes(max_abs, worst, scale, max_rel)


def compare_arrays(
    value: np.ndarray | None,
    baseline: np.ndarray,
    *,
    case_id: str,
    dtype: str,
    framework: str,
    baseline_name: str,
    quantity: str,
    parameter: str,
    tolerance: float,
) -> Difference:
    """Compare one array with its baseline (both computed in float64 for exactness); the
    check passes when the normwise relative difference is at most ``tolerance``."""
    tol = tolerance
    common = {
        "case_id": case_id, "dtype": dtype, "framework": framework,
        "baseline": baseline_name, "quantity": quantity, "parameter": parameter,
        "tolerance": tol,
    }
    failed = {
        "max_abs": np.inf, "max_rel": np.inf, "normwise": np.inf, "normwise_eps": np.inf,
        "passed": False,
    }
    b = np.asarray(baseline)
    if value is None:
        return Difference(
            **common, **failed, worst_index=(), value=np.nan, baseline_value=np.nan,
            note=f"missing from the {framework} result",
        )
    a = np.asarray(value)
    if a.shape != b.shape:
        return Difference(
            **common, **failed, worst_index=(), value=np.nan, baseline_value=np.nan,
            note=f"shape {a.shape} does not match the {baseline_name} shape {b.shape}",
        )
    if not a.size:
        return Difference(**common, max_abs=0.0, max_rel=0.0, normwise=0.0, normwise_eps=0.0,
                          worst_index=(), value=np.nan, baseline_value=np.nan,
                          passed=within(0.0, 0.0, tol, dtype, quantity))
    shape = a.shape
    extremes = _extremes(a, b)
    max_abs, scale = extremes.max_abs, extremes.scale
    if not (np.isfinite(max_abs) and np.isfinite(scale)):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        nonfinite = ~(np.isfinite(a) & np.isfinite(b))
        flat = int(np.argmax(nonfinite))
        return Difference(
            **common, **failed,
            worst_index=tuple(int(i) for i in np.unravel_index(flat, shape)),
            value=float(a.flat[flat]), baseline_value=float(b.flat[flat]),
            note=nonfinite_note(a, b, framework, baseline_name),
        )
    flat = extremes.worst
    normwise = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else np.inf)
    return Difference(
        **common,
        max_abs=max_abs,
        max_rel=extremes.max_rel,
        normwise=normwise,
        normwise_eps=normwise / machine_epsilon(dtype),
        worst_index=tuple(int(i) for i in np.unravel_index(flat, shape)),
        value=float(a.flat[flat]),
        baseline_value=float(b.flat[flat]),
        passed=within(normwise, max_abs, tol, dtype, quantity),
    )


class ParityError(AssertionError):
    """Raised by :func:`assert_parity`; ``differences`` holds the failed checks."""

    def __init__(self, differences: list[Difference]) -> None:
        self.differences = differences
        lines = [d.message() for d in differences[:10]]
        if len(differences) > 10:
            lines.append(f"... and {len(differences) - 10} more failed checks")
        super().__init__(f"{len(differences)} check(s) failed:\n" + "\n".join(lines))


def assert_parity(differences: Iterable[Difference]) -> None:
    """Raise :class:`ParityError` naming every check that exceeded its tolerance."""
    __tracebackhide__ = True  # pytest: show the message, not this frame's locals
    failed = [d for d in differences if not d.passed]
    if failed:
        raise ParityError(failed)
