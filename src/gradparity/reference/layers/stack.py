"""A stack of layers: the network of a case described by ``layers`` (and the inside of a
residual block). Forward runs each layer and keeps its cache; backward walks the caches
in reverse:

    dL/d(out_{l-1}) = backward_l(dL/d(out_l))      (each layer's own rule)

Parameters are named ``<layer>.<parameter>`` with the layer named by its type and count
(``conv1.W``, ``bn1.gamma``, ``res1.ln1.beta``); running statistics likewise
(``bn1.running_mean``). ``deltas`` are dL/d(output) of every layer, by layer name: the
backward signals the harness localises a divergence with.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.reference.activations import rounds_intermediates
from gradparity.reference.layers.base import Layer, Shape

SHORT_NAMES = {"conv2d": "conv", "conv_transpose2d": "deconv", "max_pool2d": "maxpool",
               "avg_pool2d": "avgpool", "layer_norm": "ln", "batch_norm": "bn",
               "embedding": "embed", "attention": "attn", "residual": "res"}
"""How a layer type names its instances (``conv1``, ``bn2``); others use the type."""

def stack_names(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The name of every layer of a stack of ``specs``: its type's short name and count."""
    counts: dict[str, int] = {}
    names = []
    for spec in specs:
        short = SHORT_NAMES.get(spec["type"], spec["type"])
        counts[short] = counts.get(short, 0) + 1
        names.append(f"{short}{counts[short]}")
    return names


Backward = Callable[[Layer, Mapping[str, np.ndarray], Any, np.ndarray], tuple]


@dataclass(frozen=True)
class StackPass:
    """What one forward pass of a stack keeps for backward."""

    caches: tuple[Any, ...]
    outputs: dict[str, np.ndarray]
    state: dict[str, np.ndarray]


class Stack:
    """Layers in order, for inputs of ``input_shape`` (per example)."""

    def __init__(self, layers: Sequence[Layer], input_shape: Shape) -> None:
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.names = stack_names([{"type": layer.kind} for layer in self.layers])
        self.shapes: list[Shape] = [self.input_shape]
        for layer in self.layers:
            self.shapes.append(tuple(layer.output_shape(self.shapes[-1])))

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1]

    def _own(self, values: Mapping[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
        prefix = self.names[index] + "."
        return {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}

    def parameter_shapes(self) -> dict[str, Shape]:
        return {f"{name}.{p}": shape
                for name, layer, shape_in in zip(self.names, self.layers, self.shapes,
                                                 strict=False)
                for p, shape in layer.parameter_shapes(shape_in).items()}

    def init(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {f"{name}.{p}": value
                for name, layer, shape_in in zip(self.names, self.layers, self.shapes,
                                                 strict=False)
                for p, value in layer.init(shape_in, rng).items()}

    def init_state(self) -> dict[str, np.ndarray]:
        return {f"{name}.{s}": value
                for name, layer, shape_in in zip(self.names, self.layers, self.shapes,
                                                 strict=False)
                for s, value in layer.init_state(shape_in).items()}

    def gradient_terms(self) -> int:
        """The most terms per example that any parameter gradient of the stack sums."""
        return max((layer.gradient_terms(shape) for layer, shape in
                    zip(self.layers, self.shapes, strict=False)), default=1)

    def reduction_length(self) -> int:
        return sum(layer.reduction_length(shape) for layer, shape in
                   zip(self.layers, self.shapes, strict=False))

    def forward(self, params: Mapping[str, np.ndarray], x: np.ndarray,
                state: Mapping[str, np.ndarray] | None = None,
                perturb: Callable[[np.ndarray], np.ndarray] | None = None,
                options: Mapping[str, Any] | None = None
                ) -> tuple[np.ndarray, StackPass]:
        """Every layer's forward pass in turn. ``perturb`` is applied to every layer's
        output (and, where it stands for rounding, inside the layers that take it:
        ``Layer.ROUNDS_INSIDE``); ``options`` reach the layers that read them
        (``Layer.READS_OPTIONS``)."""
        caches, outputs, new_state = [], {}, {}
        state = state or {}
        inside = rounds_intermediates(perturb)  # rounding reaches inside layers too
        for index, (name, layer) in enumerate(zip(self.names, self.layers, strict=True)):
            own_state = self._own(state, index)
            extra: dict[str, Any] = {}
            if options and layer.READS_OPTIONS:
                extra["options"] = options
            rounds_itself = inside is not None and layer.ROUNDS_INSIDE  # its output too
            if rounds_itself:
                extra["rounding"] = inside
            x, cache = layer.forward(self._own(params, index), x, True, own_state, **extra)
            if perturb is not None and not rounds_itself:
                x = perturb(x)
            caches.append(cache)
            outputs[name] = x
            if layer.STATE or own_state:
                new_state.update({f"{name}.{k}": v for k, v in
                                  layer.new_state(cache, own_state).items()})
        return x, StackPass(tuple(caches), outputs, new_state)

    def backward(self, params: Mapping[str, np.ndarray], run: StackPass, dy: np.ndarray,
                 overrides: Mapping[str, Backward] | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(dL/dx, dL/dparams, deltas)``; ``overrides`` replaces a layer type's backward
        (the bug catalogue's layer bugs)."""
        grads: dict[str, np.ndarray] = {}
        deltas: dict[str, np.ndarray] = {}
        for index in range(len(self.layers) - 1, -1, -1):
            name, layer = self.names[index], self.layers[index]
            deltas[name] = dy
            own = self._own(params, index)
            rule = (overrides or {}).get(layer.kind)
            if rule is not None:
                dy, layer_grads = rule(layer, own, run.caches[index], dy)
            elif hasattr(layer, "backward_with"):
                dy, layer_grads = layer.backward_with(own, run.caches[index], dy, overrides)
            else:
                dy, layer_grads = layer.backward(own, run.caches[index], dy)
            grads.update({f"{name}.{p}": g for p, g in layer_grads.items()})
        ordered = {name: grads[name] for name in self.parameter_shapes()}
        return dy, ordered, dict(reversed(deltas.items()))
