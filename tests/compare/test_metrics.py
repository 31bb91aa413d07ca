"""Metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.compare.metrics import compare_arrays, machine_epsilon
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
