"""The comparison fails, and says where, when a gradient is wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gradparity.adapters import get_adapter
from gradparity.compare.derivation import derive
from gradparity.compare.metrics import ParityError, assert_parity, compare_arrays
from gradparity.harness.runner import compare_pair
from gradparity.reference import activations
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from tests.conftest import run_once

CASE = Case((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy", dtype="float64")


def _tampered(result, **changes):
    return dataclasses.replace(result, **changes)


def test_one_wrong_gradient_element_fails_and_names_it(framework: str) -> None:
    reference = run_once(CASE, "numpy")
    grads = dict(reference.gradients)
    wrong = grads["W2"].copy()
    wrong[3, 5] *= 1.001
    grads["W2"] = wrong
    tampered = _tampered(reference, framework="numpy-with-bug", gradients=grads)
    with pytest.raises(ParityError) as error:
        assert_parity(compare_pair(tampered, run_once(CASE, framework), CASE))
    message = str(error.value)
    assert CASE.id in message
    assert f"numpy-with-bug vs {framework}, gradient of W2" in message
    assert "worst index (3, 5)" in message
    allowed = derive(CASE).normwise("gradient", "W2")
    assert f"tolerance {allowed:.3e}" in message
    failed = error.value.differences
    assert [(d.quantity, d.parameter) for d in failed] == [("gradient", "W2")]


def test_dropped_activation_derivative_fails_against_torch(monkeypatch) -> None:
    """The acceptance check: break tanh' in the reference, the parity test names W1."""
    require_torch = get_adapter("torch").availability()
    if not require_torch.available:
        pytest.skip(f"torch adapter unavailable: {require_torch.reason}")
    broken = dataclasses.replace(
        activations.ACTIVATIONS["tanh"], derivative=lambda z, a: np.ones_like(z)
    )
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", broken)
    problem = make_problem(CASE)
    buggy = get_adapter("numpy").run(CASE, problem)
    with pytest.raises(ParityError) as error:
        assert_parity(compare_pair(get_adapter("torch").run(CASE, problem), buggy, CASE))
    failed = {(d.quantity, d.parameter) for d in error.value.differences}
    # the output layer does not pass through tanh, so W3 is right; W1 and W2 are not
    assert ("gradient", "W1") in failed and ("gradient", "W2") in failed
    assert ("gradient", "W3") not in failed
    assert "gradient of W1" in str(error.value)


def test_transposed_gradient_fails_with_a_shape_note() -> None:
    difference = compare_arrays(
        np.ones((3, 4)), np.ones((4, 3)), case_id="c", dtype="float64", framework="mine",
        baseline_name="numpy", quantity="gradient", parameter="W1", tolerance=1.0,
    )
    assert not difference.passed
    assert "shape (3, 4) does not match the numpy shape (4, 3)" in difference.message()


def test_nan_never_passes() -> None:
    difference = compare_arrays(
        np.array([1.0, np.nan]), np.array([1.0, np.nan]), case_id="c", dtype="float64",
        framework="mine", baseline_name="numpy", quantity="gradient", parameter="b1",
        tolerance=1.0,
    )
    assert not difference.passed
    assert "mine has 1 NaN and 0 Inf (first at (1,))" in difference.message()
    assert "not as agreement" in difference.message()


def test_missing_parameter_fails() -> None:
    reference = run_once(CASE, "numpy")
    grads = {k: v for k, v in reference.gradients.items() if k != "b3"}
    differences = compare_pair(_tampered(reference, gradients=grads), reference, CASE)
    failed = [d for d in differences if not d.passed]
    assert [(d.parameter, d.note) for d in failed] == [("b3", "missing from the numpy result")]
