"""Deterministic data and weights."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.matrix import xor_case


def test_same_seed_gives_identical_arrays() -> None:
    case = Case((4, 16, 16, 3), loss="softmax_cross_entropy")
    first, second = make_problem(case), make_problem(case)
    for name in first.params:
        np.testing.assert_array_equal(first.params[name], second.params[name])
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)


def test_different_seed_gives_different_arrays() -> None:
    one = make_problem(Case((4, 8, 3), seed=1))
    two = make_problem(Case((4, 8, 3), seed=2))
    assert not np.array_equal(one.params["W1"], two.params["W1"])
    assert not np.array_equal(one.x, two.x)


def test_weights_do_not_depend_on_the_data_set() -> None:
    regression = make_problem(Case((4, 8, 3), loss="mse"))
    blobs = make_problem(Case((4, 8, 3), loss="softmax_cross_entropy"))
    np.testing.assert_array_equal(regression.params["W2"], blobs.params["W2"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_shapes_dtypes_and_read_only(dtype: str) -> None:
    problem = make_problem(Case((4, 16, 16, 3), dtype=dtype, batch_size=5))
    expected = {"W1": (4, 16), "b1": (16,), "W2": (16, 16), "b2": (16,), "W3": (16, 3),
                "b3": (3,)}
    assert {name: value.shape for name, value in problem.params.items()} == expected
    for array in [*problem.params.values(), problem.x, problem.y]:
        assert array.dtype == np.dtype(dtype)
        assert not array.flags.writeable
    assert problem.x.shape == (5, 4)
    assert problem.y.shape == (5, 3)


def test_float32_arrays_are_the_float64_draw_rounded_once() -> None:
    wide = make_problem(Case((4, 8, 3), dtype="float64"))
    narrow = make_problem(Case((4, 8, 3), dtype="float32"))
    np.testing.assert_array_equal(narrow.params["W1"], wide.params["W1"].astype(np.float32))


def test_initial_weights_lie_in_the_fan_in_range() -> None:
    problem = make_problem(Case((9, 25, 3)))
    assert np.abs(problem.params["W1"]).max() <= 1 / 3
    assert np.abs(problem.params["W2"]).max() <= 1 / 5
    assert np.abs(problem.params["b2"]).min() > 0  # biases are exercised, not zero


def test_xor_is_the_classic_truth_table() -> None:
    problem = make_problem(xor_case())
    np.testing.assert_array_equal(problem.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(problem.y, [[0], [1], [1], [0]])


def test_blobs_labels() -> None:
    labels = make_problem(Case((2, 8, 4), loss="softmax_cross_entropy", batch_size=64)).y
    assert labels.dtype == np.int64
    assert labels.shape == (64,)
    assert set(labels.tolist()) <= {0, 1, 2, 3}
    assert len(set(labels.tolist())) > 1
    binary = make_problem(Case((2, 8, 1), loss="binary_cross_entropy_with_logits", batch_size=16))
    assert set(binary.y.ravel().tolist()) <= {0.0, 1.0}
    multi = make_problem(Case((2, 8, 3), loss="binary_cross_entropy_with_logits"))
    np.testing.assert_array_equal(multi.y.sum(axis=1), np.ones(8))
