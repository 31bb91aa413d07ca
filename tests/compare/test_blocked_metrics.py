"""Comparisons of large arrays, measured block by block, against whole-array formulas.

The oracle below is the textbook computation on whole float64 copies; the blocked
passes must give the same numbers to the bit (maxima do not depend on the order they
are taken in) and the same first index of the worst entry."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.compare.metrics import (
    TILE,
    compare_arrays,
    largest_difference,
    largest_difference_and_scale,
)
from gradparity.reference.blocks import BLOCK_ENTRIES

ROWS = 3 * BLOCK_ENTRIES // 128 + 5  # several blocks of a (rows, 128) array and a partial one


def _whole(a: np.ndarray, b: np.ndarray) -> tuple[float, int, float, float]:
    """(max |a - b|, its first C-order index, max |b|, max |a - b| / |b|) on float64 copies."""
    a64, b64 = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)
    diff = np.abs(a64 - b64)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(diff == 0, 0.0, diff / np.abs(b64))
    return float(diff.max()), int(np.argmax(diff)), float(np.abs(b64).max()), float(relative.max())


def _pair(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(shape).astype(dtype)
    a = (b * (1 + 1e-4 * rng.standard_normal(shape))).astype(dtype)
    return a, b


def _layouts():
    """(name, a, b): contiguous, transposed (a framework's (out, in) weight read as the
    reference's (in, out)), mixed dtypes, a long vector, rows longer than a block,
    exact zeros in the baseline, and a tie between blocks."""
    a, b = _pair((ROWS, 128), np.float32)
    yield "contiguous float32", a, b
    at, bt = _pair((128, ROWS), np.float32, seed=1)
    yield "transposed", at.T, bt.T
    yield "float32 against float64", a, b.astype(np.float64) + 1e-9
    yield "vector", *_pair((5 * BLOCK_ENTRIES + 3,), np.float64, seed=2)
    yield "rows longer than a block", *_pair((3, 2 * BLOCK_ENTRIES + 1), np.float64, seed=3)
    zeros_a, zeros_b = _pair((ROWS, 128), np.float64, seed=4)
    zeros_b[::7] = 0.0
    zeros_a[::14] = 0.0  # 0/0 = 0 on half the zero rows, x/0 = inf on the others
    yield "zeros in the baseline", zeros_a, zeros_b
    tie_a, tie_b = np.zeros((ROWS, 128)), np.zeros((ROWS, 128))
    tie_a[2, 5] = tie_a[ROWS - 1, 0] = 3.0  # the same difference in the first and last block
    tie_b[0, 0] = 1.0
    yield "a tie across blocks", tie_a, tie_b
    # matrices whose layouts differ go in TILE x TILE squares, partial ones at both edges
    square_a, square_b = _pair((2 * TILE + 7, 3 * TILE + 11), np.float32, seed=5)
    yield "tiles: transposed against C order", np.asfortranarray(square_a), square_b
    yield "tiles: C order against transposed", square_a, np.asfortranarray(square_b)
    yield "tiles: both transposed, mixed dtypes", np.asfortranarray(square_a), \
        np.asfortranarray(square_b.astype(np.float64))
    yield "tiles: a strided view", square_a[:, ::2].copy(), _pair(
        (2 * TILE + 7, 3 * TILE + 11), np.float32, seed=6)[1][:, ::2]
    # the first C-order occurrence lies in a square visited after another that holds one
    late_a, late_b = np.zeros((2 * TILE, 2 * TILE)), np.zeros((2 * TILE, 2 * TILE))
    late_a[TILE - 1, 3] = late_a[0, TILE + 2] = late_a[2 * TILE - 1, 2 * TILE - 1] = 2.0
    late_b[1, 1] = 1.0
    yield "tiles: a tie whose first entry is in a later square", np.asfortranarray(late_a), \
        late_b


@pytest.mark.parametrize("a, b", [pytest.param(a, b, id=name) for name, a, b in _layouts()])
def test_blocked_comparison_equals_whole_array_formulas(a, b) -> None:
    max_abs, worst, scale, max_rel = _whole(a, b)
    assert largest_difference(a, b) == max_abs
    assert largest_difference_and_scale(a, b) == (max_abs, scale)
    d = compare_arrays(a, b, case_id="c", dtype="float64", framework="x", baseline_name="y",
                       quantity="gradient", parameter="W1", tolerance=1.0)
    assert (d.max_abs, d.max_rel) == (max_abs, max_rel)
    assert d.normwise == max_abs / scale
    assert d.worst_index == tuple(int(i) for i in np.unravel_index(worst, a.shape))
    assert (d.value, d.baseline_value) == (float(a.flat[worst]), float(b.flat[worst]))


def test_the_first_of_tied_entries_is_reported() -> None:
    a, b = np.zeros((ROWS, 128)), np.zeros((ROWS, 128))
    a[2, 5] = a[ROWS - 1, 0] = 3.0
    d = compare_arrays(a, b + 1.0, case_id="c", dtype="float64", framework="x",
                       baseline_name="y", quantity="gradient", parameter="W1", tolerance=1.0)
    assert d.worst_index == (2, 5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_entry_in_a_late_block_is_found(bad) -> None:
    a, b = _pair((ROWS, 128), np.float64)
    a[ROWS - 2, 100] = bad
    d = compare_arrays(a, b, case_id="c", dtype="float64", framework="x", baseline_name="y",
                       quantity="gradient", parameter="W1", tolerance=1.0)
    assert not d.passed and d.worst_index == (ROWS - 2, 100)
    assert "non-finite" in d.note
    difference = largest_difference(a, b)
    assert np.isnan(difference) if np.isnan(bad) else difference == np.inf
    with_scale = largest_difference_and_scale(a, b)
    assert (np.isnan(with_scale).all() if np.isnan(bad)
            else with_scale == (np.inf, float(np.abs(b).max())))
    swapped = largest_difference_and_scale(b, a)  # the entry in the baseline: its scale
    assert np.isnan(swapped).all() if np.isnan(bad) else swapped == (np.inf, np.inf)


def test_largest_difference_of_equal_infinities_is_nan_and_of_empty_arrays_zero() -> None:
    a = np.ones((ROWS, 128))
    a[-1, -1] = np.inf
    assert np.isnan(largest_difference(a, a.copy()))  # Inf - Inf: not a match
    assert largest_difference(np.zeros((0, 3)), np.zeros((0, 3))) == 0.0
    assert largest_difference(np.float32(1.5), np.float64(1.25)) == 0.25  # 0-d sides
    assert np.isnan(largest_difference_and_scale(a, a.copy())).all()
    assert largest_difference_and_scale(np.zeros((0, 3)), np.zeros((0, 3))) == (0.0, 0.0)
    assert largest_difference_and_scale(np.float32(1.5), np.float64(-1.25)) == (2.75, 1.25)


def test_largest_difference_of_different_shapes_is_refused_as_numpy_would() -> None:
    """Blocks of two shapes would pair the wrong entries: NumPy's broadcasting rules
    apply instead, as for small arrays."""
    with pytest.raises(ValueError, match="broadcast"):
        largest_difference(np.zeros((ROWS, 128)), np.zeros((128, ROWS)))
    assert largest_difference(np.zeros((ROWS, 128)), np.ones(128)) == 1.0  # broadcast


def test_a_tie_across_squares_reports_the_first_entry_in_c_order() -> None:
    a, b = np.zeros((2 * TILE, 2 * TILE)), np.ones((2 * TILE, 2 * TILE))
    # the square (0, 0) is visited first and holds (TILE - 1, 3); (0, TILE + 2), in the
    # square visited second, comes first in C order
    a[TILE - 1, 3] = a[0, TILE + 2] = 4.0
    d = compare_arrays(np.asfortranarray(a), b, case_id="c", dtype="float64", framework="x",
                       baseline_name="y", quantity="gradient", parameter="W1", tolerance=1.0)
    assert d.worst_index == (0, TILE + 2)
    assert (d.max_abs, d.value, d.baseline_value) == (3.0, 4.0, 1.0)
