"""The layer-object contract: every layer type and loss is checkable one layer at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gradparity.adapters import get_adapter
from gradparity.check.layer_objects import (
    DEFAULT_INPUT_SHAPES,
    DEFAULT_SETTINGS,
    check_layer_object,
    check_loss_object,
)
from gradparity.check.textbook import TextbookLoss, textbook_layer
from gradparity.cli.main import main
from gradparity.reference import LOSSES
from gradparity.reference.layers import LAYERS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
import layers as example_layers  # noqa: E402

sys.path.remove(str(EXAMPLES))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_every_layer_type_is_checkable(kind: str, dtype: str) -> None:
    spec = {"type": kind, **DEFAULT_SETTINGS.get(kind, {})}
    check = check_layer_object(textbook_layer(kind), spec,
                               DEFAULT_INPUT_SHAPES.get(kind, (5,)), dtype)
    assert check.status == "pass", [d.message() for d in check.differences if not d.passed]
    baselines = {d.baseline for d in check.differences}
    expressible = {name for name in ("numpy", "torch", "jax")
                   if get_adapter(name).layer_unsupported_reason(spec) is None}
    assert expressible <= baselines and len(expressible) >= 2
    assert ("finite differences" in baselines) == (dtype == "float64")


@pytest.mark.parametrize("loss", list(LOSSES))
def test_every_loss_is_checkable(loss: str) -> None:
    check = check_loss_object(lambda settings: TextbookLoss(settings, loss), loss, {})
    assert check.status == "pass", [d.message() for d in check.differences if not d.passed]


def test_a_stale_weight_bug_is_caught_and_named(capsys) -> None:
    code = main(["check", f"{EXAMPLES / 'layers.py'}:DenseSGD", "--layer", "dense"])
    out = capsys.readouterr().out
    assert code == 1
    assert "input gradient: matches a known bug: the input gradient uses the weights " \
           "already updated inside backward" in out
    # the parameter gradients it exposes are right: only dx is wrong
    check = check_layer_object(example_layers.DenseSGD, {"type": "dense", "features": 4},
                               (6,))
    wrong = {(d.quantity, d.parameter) for d in check.differences if not d.passed}
    assert wrong == {("input gradient", "x"), ("input gradient", "x (4 random directions)")}


def test_the_example_layers_pass(capsys) -> None:
    for target, kind in (("Dense", "dense"), ("Tanh", "tanh"),
                         ("SoftmaxCrossEntropy", "softmax_cross_entropy")):
        assert main(["check", f"{EXAMPLES / 'layers.py'}:{target}", "--layer", kind,
                     "--quiet"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_a_layer_without_parameter_gradients_is_a_contract_error() -> None:
    class NoGrads(example_layers.Dense):
        def backward(self, dout):
            return dout @ self.W.T

    check = check_layer_object(NoGrads, {"type": "dense", "features": 3}, (4,))
    assert check.status == "contract error"
    assert "no gradient for ['W', 'b']" in check.message and "dW" in check.message


def test_gradients_may_come_back_from_backward() -> None:
    class Returning(example_layers.Dense):
        def backward(self, dout):
            dx = super().backward(dout)
            return dx, {"W": self.dW, "b": self.db}

    assert check_layer_object(Returning, {"type": "dense", "features": 3}, (4,)).status == \
        "pass"


def test_a_missing_activation_derivative_is_diagnosed() -> None:
    class Broken:
        def __init__(self, params, settings):
            pass

        def forward(self, x):
            return np.tanh(x)

        def backward(self, dout):
            return dout

    check = check_layer_object(Broken, {"type": "tanh"}, (5,))
    assert check.status == "fail"
    assert any(f.kind == "missing_derivative" for f in check.findings), check.findings


def test_unknown_layer_settings_are_named(capsys) -> None:
    assert main(["check", f"{EXAMPLES / 'layers.py'}:Dense", "--layer", "dense", "--set",
                 "fetures=3"]) == 2
    assert ("unknown setting 'fetures' (did you mean 'features'?); allowed: features, bias"
            in capsys.readouterr().err)
    assert main(["check", f"{EXAMPLES / 'layers.py'}:Dense", "--layer", "conv9"]) == 2
