"""The reference layers beyond the MLP: each backward agrees with finite differences and
with PyTorch and JAX/Flax (float64), for the settings where conventions bite; each
layer bug of the catalogue is caught by those oracles."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.check.layer_bugs import LAYER_BUGS
from gradparity.check.layer_objects import check_layer_object
from gradparity.check.textbook import TextbookLayer, textbook_layer
from gradparity.compare.metrics import FINITE_DIFFERENCES
from gradparity.reference.layers import build
from tests.conftest import require

SPECS = [
    ({"type": "conv2d", "channels": 4, "kernel": 3, "padding": 1}, (3, 6, 6)),
    ({"type": "conv2d", "channels": 4, "kernel": 2, "stride": 2, "padding": "same"}, (3, 7, 7)),
    ({"type": "conv2d", "channels": 4, "kernel": 3, "dilation": 2, "groups": 2, "padding": 2},
     (2, 7, 7)),
    ({"type": "conv2d", "channels": 2, "kernel": 4, "padding": "same", "bias": False},
     (3, 6, 6)),
    ({"type": "conv_transpose2d", "channels": 3, "kernel": 3, "stride": 2, "padding": 1,
      "output_padding": 1}, (2, 4, 4)),
    ({"type": "conv_transpose2d", "channels": 3, "kernel": 2, "dilation": 2}, (2, 3, 3)),
    ({"type": "max_pool2d", "kernel": 2}, (2, 6, 6)),
    ({"type": "max_pool2d", "kernel": 3, "stride": 2, "padding": 1}, (2, 7, 7)),
    ({"type": "avg_pool2d", "kernel": 3, "stride": 2, "padding": 1}, (2, 7, 7)),
    ({"type": "avg_pool2d", "kernel": 3, "stride": 2, "padding": 1,
      "count_include_pad": False}, (2, 7, 7)),
    ({"type": "flatten"}, (2, 3, 3)),
    ({"type": "layer_norm"}, (5, 8)),
    ({"type": "layer_norm", "affine": False, "eps": 1e-6}, (8,)),
    ({"type": "batch_norm"}, (3, 4, 4)),
    ({"type": "batch_norm", "running_var_unbiased": False, "momentum": 0.3}, (6,)),
    ({"type": "batch_norm", "training": False}, (3, 4, 4)),
    ({"type": "embedding", "vocab": 5, "features": 4}, (6,)),
    ({"type": "embedding", "vocab": 5, "features": 4, "padding_idx": 1}, (6,)),
    ({"type": "attention", "heads": 2, "causal": True}, (5, 8)),
    ({"type": "attention", "heads": 1, "bias": False}, (4, 6)),
    ({"type": "residual", "layers": [{"type": "layer_norm"}, {"type": "dense", "features": 8},
                                     {"type": "gelu"}, {"type": "dense", "features": 8}]},
     (5, 8)),
    ({"type": "residual", "layers": [{"type": "layer_norm"},
                                     {"type": "attention", "heads": 2, "causal": True}]},
     (5, 8)),
]


def _id(entry) -> str:
    spec, shape = entry
    settings = ",".join(f"{k}={v}" for k, v in spec.items() if k not in ("type", "layers"))
    return f"{spec['type']}[{settings}]" + "x".join(map(str, shape))


@pytest.mark.parametrize(("spec", "shape"), SPECS, ids=[_id(e) for e in SPECS])
def test_the_reference_layer_agrees_with_every_oracle(spec, shape) -> None:
    require("torch")
    require("jax")
    check = check_layer_object(textbook_layer(spec["type"]), spec, shape, "float64")
    failing = [d.message() for d in check.differences if not d.passed]
    assert check.status == "pass", (check.message, failing[:3])
    baselines = {d.baseline for d in check.differences}
    assert FINITE_DIFFERENCES in baselines
    # a layer a framework cannot express is skipped there, with the reason
    expressible = {"torch": not ((spec.get("padding") == "same" and spec.get("stride", 1) > 1)
                                 or spec.get("running_var_unbiased") is False),
                   "jax": spec.get("padding_idx") is None
                   and not (spec["type"] == "batch_norm"
                            and spec.get("running_var_unbiased", True))}
    for framework, expected in expressible.items():
        assert (framework in baselines) == expected, (framework, baselines)


def test_float64_agreement_is_at_rounding_level() -> None:
    """Not only within the layer tolerances: torch and JAX agree with the reference to
    1e-12 normwise on a convolution, a layer norm and causal attention."""
    require("torch")
    require("jax")
    for spec, shape in (SPECS[0], SPECS[11], SPECS[18]):
        check = check_layer_object(textbook_layer(spec["type"]), spec, shape, "float64")
        for d in check.differences:
            # the key bias's gradient is exactly zero (softmax ignores a shift of a row's
            # scores): both sides are rounding noise, held by the layer tolerance only
            if d.baseline in ("torch", "jax") and not d.parameter.endswith("bk"):
                assert d.normwise <= 1e-12, d.message()


class _BuggyLayer(TextbookLayer):
    """The textbook layer with one bug's backward rule."""

    rule = None

    def backward(self, dy):
        return type(self).rule(self.layer, self.params, self.cache, dy)


BUG_SPECS = {"conv2d": ({"type": "conv2d", "channels": 3, "kernel": 3, "padding": 1}, (2, 5, 5)),
             "max_pool2d": ({"type": "max_pool2d", "kernel": 2}, (2, 4, 4)),
             "flatten": ({"type": "flatten"}, (2, 3, 3)),
             "batch_norm": ({"type": "batch_norm"}, (3, 4, 4)),
             "layer_norm": ({"type": "layer_norm"}, (5, 8)),
             "attention": ({"type": "attention", "heads": 2, "causal": True}, (5, 8)),
             "residual": (SPECS[20][0], (5, 8)),
             "embedding": ({"type": "embedding", "vocab": 3, "features": 4}, (6,)),
             "gelu": ({"type": "gelu"}, (6,))}


@pytest.mark.parametrize("bug", LAYER_BUGS, ids=lambda bug: bug.kind)
def test_finite_differences_catch_each_layer_bug(bug) -> None:
    spec, shape = BUG_SPECS[bug.layer_type]
    buggy = type("Buggy", (_BuggyLayer,), {"rule": staticmethod(bug.rule)})
    check = check_layer_object(lambda params, settings: buggy(params, settings, spec["type"]),
                               spec, shape, "float64", frameworks=("numpy",))
    assert check.status == "fail", bug.kind
    wrong = {d.baseline for d in check.differences if not d.passed}
    assert FINITE_DIFFERENCES in wrong, (bug.kind, wrong)


def test_repeated_ids_accumulate() -> None:
    layer = build({"type": "embedding", "vocab": 3, "features": 2})
    ids = np.array([[0, 2, 0, 0]])
    _, cache = layer.forward({"W": np.zeros((3, 2))}, ids)
    dy = np.arange(8.0).reshape(1, 4, 2)
    _, grads = layer.backward({"W": np.zeros((3, 2))}, cache, dy)
    np.testing.assert_array_equal(grads["W"], [[0 + 4 + 6, 1 + 5 + 7], [0, 0], [2, 3]])
