"""Networks described as sequences of layers: the specs' validation, their short codes for
case ids, and the named architectures of the built-in matrix.

A case gives either ``layer_sizes`` (a dense MLP, the shorthand) or ``layers``: a list of
tables such as ``{"type": "conv2d", "channels": 8, "kernel": 3, "padding": 1}`` (types
and settings: :data:`gradparity.reference.layers.LAYERS`), with the per-example
``input_shape`` ((channels, height, width) for images, (positions,) for token ids) -
or ``architecture``, the name of an entry of :data:`ARCHITECTURES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradparity.reference.layers import LAYERS, build
from gradparity.reference.layers.stack import SHORT_NAMES
from gradparity.reference.sequence import SequenceNetwork

Spec = tuple[tuple[str, Any], ...]


def _frozen(value: Any) -> Any:
    """Lists and tables as tuples, so a case holding them stays hashable."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def thawed(spec: Any) -> dict[str, Any]:
    """A frozen spec as the table it came from (``residual``'s layers as tables too)."""
    table = dict(spec)
    if table.get("type") == "residual":
        table["layers"] = [thawed(inner) for inner in table["layers"]]
    return table


def _is_frozen(spec: Any) -> bool:
    return (isinstance(spec, tuple) and bool(spec)
            and all(isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                    for pair in spec))


def checked_layers(layers: Any, input_shape: Any, loss: str) -> tuple[tuple[Spec, ...],
                                                                       tuple[int, ...]]:
    """Validated, frozen specs and input shape; ``ValueError`` naming the entry. Specs
    already frozen are taken as the tables they came from: ``dataclasses.replace`` passes
    a case's own layers back in (its float64 rerun)."""
    if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
        raise ValueError(f"Case.layers: invalid value {layers!r}; allowed: a non-empty list "
                         "of layer tables, e.g. [{type = 'dense', features = 10}]")
    layers = [thawed(spec) if _is_frozen(spec) else spec for spec in layers]
    if (isinstance(input_shape, str) or not isinstance(input_shape, Sequence)
            or not input_shape or not all(isinstance(s, int) and not isinstance(s, bool)
                                          and s >= 1 for s in input_shape)):
        raise ValueError(f"Case.input_shape: invalid value {input_shape!r}; allowed: the "
                         "per-example input, e.g. (3, 8, 8) for images or (6,) for tokens")
    for index, spec in enumerate(layers):
        if not isinstance(spec, Mapping) or spec.get("type") not in LAYERS:
            kind = spec.get("type") if isinstance(spec, Mapping) else spec
            raise ValueError(f"Case.layers[{index}].type: invalid value {kind!r}; allowed: "
                             f"{', '.join(LAYERS)}")
        try:
            build(spec)
        except ValueError as error:
            raise ValueError(f"Case.layers[{index}]: {error}") from None
    try:
        SequenceNetwork(layers, tuple(input_shape), loss)
    except ValueError as error:
        raise ValueError(f"Case.layers: {error}") from None
    return tuple(_frozen(spec) for spec in layers), tuple(input_shape)


ABBREVIATIONS = {"channels": "", "features": "", "kernel": "k", "stride": "s", "padding": "p",
                 "dilation": "d", "groups": "g", "heads": "h", "vocab": "v", "eps": "eps",
                 "momentum": "m", "output_padding": "op", "padding_idx": "pad"}
FLAGS = {("causal", True): "causal", ("training", False): "eval", ("bias", False): "nobias",
         ("count_include_pad", False): "nopadcount", ("affine", False): "noaffine",
         ("running_var_unbiased", False): "biasedvar"}


def layer_code(spec: Mapping[str, Any]) -> str:
    """A layer in a few characters: ``conv8k3p1``, ``maxpool2``, ``ln``, ``res[ln+dense8]``."""
    kind = spec["type"]
    short = SHORT_NAMES.get(kind, kind)
    if kind == "residual":
        return f"res[{'+'.join(layer_code(inner) for inner in spec['layers'])}]"
    layer = build(spec)
    parts = [short]
    for name, value in layer.settings.items():
        if name in ABBREVIATIONS and value is not None and (
                value != layer.SETTINGS[name].default or ABBREVIATIONS[name] == ""):
            parts.append(f"{ABBREVIATIONS[name]}{value}")
        elif (name, value) in FLAGS:
            parts.append(FLAGS[(name, value)])
    return "".join(str(p) for p in parts)


def layers_code(specs: Sequence[Mapping[str, Any]]) -> str:
    return "-".join(layer_code(spec) for spec in specs)


CNN = [{"type": "conv2d", "channels": 4, "kernel": 3, "padding": 1}, {"type": "relu"},
       {"type": "max_pool2d", "kernel": 2},
       {"type": "conv2d", "channels": 6, "kernel": 3, "padding": 1}, {"type": "relu"},
       {"type": "max_pool2d", "kernel": 2}, {"type": "flatten"},
       {"type": "dense", "features": 3}]

ARCHITECTURES: dict[str, tuple[list[dict[str, Any]], tuple[int, ...], str]] = {
    "cnn": (CNN, (3, 8, 8), "a small CNN: conv-relu-pool twice, a dense head (images)"),
    # a bias right before a norm has a gradient of exactly zero (the norm subtracts the
    # mean): rounding noise that Adam's g / sqrt(v) turns into full steps, so those
    # layers go without one, as is usual
    "cnn-bn": ([{**CNN[0], "bias": False}, {"type": "batch_norm"}, *CNN[1:3],
                {**CNN[3], "bias": False}, {"type": "batch_norm"}, *CNN[4:]], (3, 8, 8),
               "the CNN with BatchNorm after each conv (PyTorch's unbiased running variance: "
               "not expressible in Flax)"),
    "mlp-bn": ([{"type": "dense", "features": 8, "bias": False},
                {"type": "batch_norm", "running_var_unbiased": False}, {"type": "relu"},
                {"type": "dense", "features": 3}], (4,),
               "BatchNorm on vectors with Flax's biased running variance (not expressible in "
               "PyTorch)"),
    "resmlp-ln": ([{"type": "dense", "features": 8},
                   {"type": "residual", "layers": [{"type": "layer_norm"},
                                                   {"type": "dense", "features": 8},
                                                   {"type": "gelu"},
                                                   {"type": "dense", "features": 8}]},
                   {"type": "layer_norm"}, {"type": "dense", "features": 3}], (4,),
                  "a residual MLP: a pre-norm residual block and a final layer norm"),
    "transformer": ([{"type": "embedding", "vocab": 7, "features": 8},
                     {"type": "residual", "layers": [{"type": "layer_norm"},
                                                     {"type": "attention", "heads": 2,
                                                      "causal": True, "bias": False}]},
                     {"type": "residual", "layers": [{"type": "layer_norm"},
                                                     {"type": "dense", "features": 16},
                                                     {"type": "gelu"},
                                                     {"type": "dense", "features": 8}]},
                     {"type": "layer_norm"}, {"type": "dense", "features": 7}], (5,),
                    "one pre-norm causal transformer block on 5-token sequences of a "
                    "7-token vocabulary, next-token prediction (attention projections without "
                    "biases: the key bias's gradient is exactly zero)"),
}
"""Named sequence networks: (layers, input_shape, description)."""
