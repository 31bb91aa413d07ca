"""Formulas and kink conventions live in docstrings, so ``help()`` shows them."""

from __future__ import annotations

import pydoc

import pytest

from gradparity.reference import ACTIVATIONS, LOSSES


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_each_activation_states_its_formula_and_derivative(name: str) -> None:
    activation = ACTIVATIONS[name]
    assert "a =" in (activation.forward.__doc__ or ""), name
    assert "da/dz" in (activation.derivative.__doc__ or ""), name
    if activation.kinks:
        text = activation.derivative.__doc__
        assert ("kink" in text and "z == 0" in text) or "alpha" in text, name


def test_help_shows_the_kink_convention() -> None:
    text = pydoc.render_doc(ACTIVATIONS["leaky_relu"].derivative, renderer=pydoc.plaintext)
    assert "At the kink z == 0 the derivative is **1**" in text


@pytest.mark.parametrize("name", ["mse", "softmax_cross_entropy", "huber", "smooth_l1",
                                  "binary_cross_entropy", "softmax_cross_entropy_weighted"])
def test_losses_state_value_and_gradient(name: str) -> None:
    loss = LOSSES[name]
    assert "L =" in (loss.value.__doc__ or "") or "l(d) =" in (loss.value.__doc__ or ""), name
    assert "dL/d" in (loss.gradient.__doc__ or "") or "dl/dd" in (loss.gradient.__doc__ or "")
