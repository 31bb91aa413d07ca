"""Metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.compare.metrics import compare_arrays, largest, machine_epsilon
from gradparity.compare.tolerances import FIXED_TOLERANCE_EPS, fixed_tolerance


def _compare(a, b, dtype="float64"):
    return compare_arrays(
        np.asarray(a), np.asarray(b), case_id="c", dtype=dtype, framework="x",
        baseline_name="y", quantity="gradient", parameter="W1",
        tolerance=fixed_tolerance(dtype),
    )


def test_metrics_by_hand() -> None:
    d = _compare([[1.0, 2.5], [-4.0, 0.0]], [[1.0, 2.0], [-3.0, 0.0]])
    assert d.max_abs == 1.0
    assert d.worst_index == (1, 0)
    assert (d.value, d.baseline_value) == (-4.0, -3.0)
    assert d.max_rel == pytest.approx(1 / 3)
    assert d.normwise == pytest.approx(1 / 3)  # 1.0 / max(|b|) = 1 / 3
    assert d.normwise_eps == pytest.approx((1 / 3) / 2.0**-52)
    assert not d.passed


def test_elementwise_relative_handles_zeros() -> None:
    d = _compare([0.0, 1e-3], [0.0, 0.0])
    assert d.max_rel == np.inf
    assert d.normwise == np.inf
    assert not d.passed
    same = _compare([0.0, 0.0], [0.0, 0.0])
    assert same.normwise == 0.0 and same.max_rel == 0.0 and same.passed


def test_boundary_of_the_tolerance() -> None:
    tol = fixed_tolerance("float32")
    assert tol == FIXED_TOLERANCE_EPS * machine_epsilon("float32") == 256 * 2.0**-23
    assert _compare([1.0 + tol * 0.5], [1.0], "float32").passed
    assert not _compare([1.0 + tol * 2], [1.0], "float32").passed


def test_unknown_dtype_names_allowed_values() -> None:
    expected = r"dtype: invalid value 'float16'; allowed: float32, float64"
    with pytest.raises(ValueError, match=expected):
        fixed_tolerance("float16")


def test_float32_sides_compared_exactly_in_float64() -> None:
    # 1 + 2^-23 and 1 are adjacent float32 numbers: their difference is exact in float64
    a, b = np.float32([1 + 2.0**-23, 3.0]), np.float32([1.0, 3.0])
    d = _compare(a, b, "float32")
    assert d.max_abs == 2.0**-23 and d.worst_index == (0,)
    assert d.normwise == 2.0**-23 / 3.0 and d.normwise_eps == 1 / 3.0
    assert d.value == 1 + 2.0**-23 and d.baseline_value == 1.0


def test_zero_dimensional_values_are_compared() -> None:
    d = _compare(2.5, 2.0)
    assert (d.max_abs, d.normwise, d.max_rel, d.worst_index) == (0.5, 0.25, 0.25, ())
    assert (d.value, d.baseline_value) == (2.5, 2.0)


@pytest.mark.parametrize("value, baseline", [
    ([1.0, np.inf], [1.0, np.inf]),  # Inf - Inf: no warning, still not agreement
    ([1.0, 2.0], [1.0, -np.inf]),
    ([np.nan, 2.0], [1.0, 2.0]),
], ids=["inf-both", "inf-baseline", "nan-value"])
def test_non_finite_values_name_their_first_position(value, baseline) -> None:
    d = _compare(value, baseline)
    first = next(i for i, (x, y) in enumerate(zip(value, baseline, strict=True))
                 if not (np.isfinite(x) and np.isfinite(y)))
    assert not d.passed and d.normwise == np.inf and d.note
    assert d.worst_index == (first,)


def test_largest_magnitude_without_a_copy() -> None:
    assert largest(np.array([[-3.0, 2.0], [1.0, 0.5]])) == 3.0
    assert largest(np.array([0.25, -0.125])) == 0.25
    assert largest(np.zeros((0, 3))) == 0.0


def _judged(a, b, tolerance: float, dtype: str = "float32"):
    return compare_arrays(np.asarray(a), np.asarray(b), case_id="c", dtype=dtype,
                          framework="torch", baseline_name="numpy", quantity="state@5",
                          parameter="square_avg/W2", tolerance=tolerance)


def test_a_check_whose_tolerance_reaches_its_own_size_is_not_determined() -> None:
    # RMSprop's square_avg through saturated tanh units, raw pixels, float32: two correct
    # runs' values 1.51 and 2.4e-6 where the model allows 2.8 relative (held-out grid)
    noise = _judged([1.51, 0.1], [2.4e-6, 0.1], tolerance=2.8)
    assert noise.normwise == pytest.approx((1.51 - 2.4e-6) / 0.1)
    assert not noise.determined and noise.passed and noise.headroom == 0.0
    assert "not determined in float32, not judged" in noise.message()
    assert "square_avg/W2" in noise.message() and "1.510e+01" in noise.message()
    # just below the threshold the check is judged as ever: 15 relative fails 0.999
    judged = _judged([1.51, 0.1], [2.4e-6, 0.1], tolerance=1.0 - 1e-9)
    assert judged.determined and not judged.passed
    assert judged.headroom == pytest.approx(noise.normwise / (1.0 - 1e-9))


@pytest.mark.parametrize("value, baseline, note", [
    ([np.nan, 0.1], [2.4e-6, 0.1], "NaN"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], "does not match"),
], ids=["nan", "shape"])
def test_an_undetermined_check_still_fails_on_non_finite_values_and_shapes(
        value, baseline, note) -> None:
    d = _judged(value, baseline, tolerance=5.0)
    assert not d.passed and note in d.note
    # and it stays a failing check's headroom, so the pair's worst check is this one
    assert d.determined and d.headroom > 1


def test_the_first_pass_is_judged_whatever_its_tolerance() -> None:
    # a delta whose tolerance exceeds 1 (a value within rounding of a relu kink) is still
    # judged on the rest of its array: a sign error of its largest entry fails
    d = compare_arrays(np.array([-1.0, 0.5]), np.array([1.0, 0.5]), case_id="c",
                       dtype="float32", framework="torch", baseline_name="numpy",
                       quantity="delta", parameter="z2", tolerance=1.45)
    assert d.determined and not d.passed and d.headroom == pytest.approx(2.0 / 1.45)


@pytest.mark.parametrize("quantity", ["output", "dx", "input gradient", "loss"])
def test_a_layer_objects_single_pass_is_judged_whatever_its_tolerance(quantity) -> None:
    d = compare_arrays(np.array([-1.0, 0.5]), np.array([1.0, 0.5]), case_id="c",
                       dtype="float32", framework="yours", baseline_name="torch",
                       quantity=quantity, parameter="x", tolerance=1.45)
    assert d.determined and not d.passed
