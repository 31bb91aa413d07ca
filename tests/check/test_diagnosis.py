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
        ({"W1", "b1"}, "only layer 1 is wrong; right: W2, b2, W3, b3"),
        ({"W3", "b3"}, "only layer 3 is wrong (the output layer"),
        ({"W1", "b1", "W2", "b2"}, "enters the backward pass at layer 2"),
        ({"W1", "b1", "W2", "b2", "W3", "b3"}, "every parameter is wrong"),
        ({"W1", "b1", "W3", "b3"}, "wrong: W1, b1, W3, b3; right: W2, b2"),
        ({"W1", "b1", "W2"}, "wrong: W1, b1, W2; right: b2, W3, b3"),
        # only biases, or only weights: the deltas are right, so say which are right
        ({"b1", "b2", "b3"}, "only bias gradients are wrong (b1, b2, b3); every weight "
                             "gradient is right"),
        ({"W3"}, "only weight gradients are wrong (W3); the bias gradients of those layers "
                 "are right"),
    ],
)
def test_localisation(wrong: set[str], text: str) -> None:
    assert text in localise(wrong, CASE).message


def test_a_square_weight_transposed_is_named() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((5, 5))
    finding = classify("W2", ref.T, ref, Case((4, 5, 5, 3)), {})
    assert finding.kind == "transposed"
    assert finding.message.startswith("W2 is the transpose of the correct gradient")


def test_no_scale_is_claimed_within_the_resolution_of_float32() -> None:
    """x0.999927 of the correct gradient in float32 is rounding-level, not a wrong scale."""
    ref = np.linspace(-1.0, 1.0, 12).reshape(3, 4) + 0.1
    finding = classify("W1", ref * 0.999927, ref, Case((3, 4, 2), dtype="float32"), {})
    assert finding.kind == "differs"
    assert "below the resolution" in finding.message and "x0.999" not in finding.message
    # in float64 the same factor is far outside the resolution: a scale, named exactly
    wide = classify("W1", ref * 0.999927, ref, Case((3, 4, 2)), {})
    assert wide.kind == "scale" and "x0.999927" in wide.message
