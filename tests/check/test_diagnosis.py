"""Diagnosis on arrays built by hand: each kind of wrong gradient gets its own name."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.check.diagnosis import classify, localise
from gradparity.spec.case import Case

CASE = Case((4, 16, 16, 3), "tanh", batch_size=8)  # batch 8, 3 outputs: 24 elements
REF = np.random.default_rng(0).standard_normal((16, 3))


@pytest.mark.parametrize(
    ("user", "kind", "text"),
    [
        (2 * REF, "factor", "x2: 2 (an extra factor 2)"),
        (REF / 8, "factor", "1/8 (divided by the batch size once too often)"),
        (24 * REF, "factor", "batch*outputs = 24 (the 1/n of the mean dropped)"),
        (-REF, "sign", "wrong sign"),
        (-2 * REF, "factor", "wrong sign and off by a constant factor x-2"),
        (1.37 * REF, "scale", "right direction, wrong scale: exactly x1.37"),
        (REF.T, "transposed", "transposed: shape (3, 16) instead of (16, 3)"),
        (np.zeros_like(REF), "zero", "all zeros"),
        (REF + 1e-3 * np.abs(REF).max() * np.random.default_rng(1).standard_normal(REF.shape),
         "direction", "nearly the right direction"),
        (np.random.default_rng(2).standard_normal((16, 3)), "differs", "differs: cosine"),
    ],
    ids=["x2", "over-batch", "missing-mean", "sign", "sign-and-factor", "scale", "transposed",
         "zero", "direction", "unrelated"],
)
def test_classify(user: np.ndarray, kind: str, text: str) -> None:
    finding = classify("W3", user, REF, CASE, {})
    assert finding.kind == kind
    assert text in finding.message, finding.message


def test_bias_reduced_over_the_batch_axis() -> None:
    finding = classify("b2", np.ones(8), np.ones(16), CASE, {})
    assert finding.kind == "wrong_axis"
    assert "reduced over the wrong axis: shape (8,)" in finding.message


def test_a_named_hypothesis_wins_over_a_generic_description() -> None:
    hypothesis = REF * np.linspace(0.5, 1.5, 3)
    finding = classify("W3", hypothesis, REF, CASE, {("my_bug", "my bug"): hypothesis})
    assert (finding.kind, finding.message) == ("my_bug", "matches a known bug: my bug")


def test_a_single_number_is_not_called_proportional() -> None:
    finding = classify("b3", np.array([3.7]), np.array([1.0]), Case((4, 1)), {})
    assert finding.kind == "differs" and "ratio 3.7" in finding.message


@pytest.mark.parametrize(
    ("wrong", "text"),
    [
        ({"W1", "b1"}, "only layer 1 is wrong"),
        ({"W3"}, "only layer 3 is wrong (the output layer"),
        ({"W1", "b1", "W2"}, "enters the backward pass at layer 2"),
        ({"W1", "W2", "W3"}, "every layer is wrong"),
        ({"W1", "W3"}, "wrong layers: 1, 3"),
    ],
)
def test_localisation(wrong: set[str], text: str) -> None:
    assert text in localise(wrong, CASE).message
