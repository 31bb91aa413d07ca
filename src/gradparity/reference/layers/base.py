"""What every layer of the reference is: a forward pass with a cache, and the backward
pass written out beside it (micrograd's shape: each backward rule next to its forward).

A layer holds its settings (kernel size, stride, eps, ...), validated when it is built,
and knows the shapes of its parameters and of its output for a given input shape
(shapes exclude the batch). ``forward(params, x, training)`` returns the output and a
cache; ``backward(params, cache, dy)`` returns ``dL/dx`` and ``dL/dparams`` from the
cache alone. Layers with running statistics (BatchNorm) also return their new state.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

Shape = tuple[int, ...]
Params = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Setting:
    """One setting of a layer type: its default and what values are allowed."""

    default: Any
    allowed: str
    check: Any = None  # callable(value) -> bool; None: any int >= 1
    required: bool = False

    def valid(self, value: Any) -> bool:
        if self.check is None:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return bool(self.check(value))


def positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def positive_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def boolean(value: Any) -> bool:
    return isinstance(value, bool)


class Layer:
    """A layer type of the reference. Subclasses declare ``kind``, ``SETTINGS`` and
    ``PARAMETERS`` and implement the shape rules, ``forward`` and ``backward``."""

    kind: ClassVar[str] = "layer"
    SETTINGS: ClassVar[dict[str, Setting]] = {}
    PARAMETERS: ClassVar[tuple[str, ...]] = ()
    STATE: ClassVar[tuple[str, ...]] = ()  # running statistics, not trained
    ROUNDS_INSIDE: ClassVar[bool] = False
    """Whether ``forward`` takes ``rounding``: the tolerance model's conditioning probe
    (values times 1 +- eps). Such a layer applies it to its output and to the
    intermediates of its own formula that rounding its output cannot reach, where its
    backward reads them from the cache: an activation's output (``1 - a^2`` of a saturated
    tanh), a softmax's probabilities (``1 - p``), the layers inside a residual block. A
    stack rounds every other layer's output itself."""
    READS_OPTIONS: ClassVar[bool] = False
    """Whether ``forward`` takes ``options``: the case's options with the catalogued
    conventions set as one framework sets them (``gelu_cdf_form``, ``softplus_threshold``:
    an activation's; the layers inside a residual block)."""

    def __init__(self, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(self.SETTINGS))
        if unknown:
            close = difflib.get_close_matches(unknown[0], self.SETTINGS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"layer {self.kind!r}: unknown setting {unknown[0]!r}{hint}; "
                             f"allowed: {', '.join(self.SETTINGS) or 'none'}")
        values = {}
        for name, setting in self.SETTINGS.items():
            value = settings.get(name, setting.default)
            if value is None and setting.required:
                raise ValueError(f"layer {self.kind!r}: setting {name!r} is required; "
                                 f"allowed: {setting.allowed}")
            if not (value is None or setting.valid(value)):
                raise ValueError(f"layer {self.kind!r}: {name}: invalid value {value!r}; "
                                 f"allowed: {setting.allowed}")
            values[name] = value
        self.settings = values

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings", {})
        if name in settings:
            return settings[name]
        raise AttributeError(name)

    # -- shapes ---------------------------------------------------------------------

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {}

    def reduction_length(self, input_shape: Shape) -> int:
        """How many terms the longest sum of the forward pass adds (the rounding model's
        n), per example."""
        return 1

    def gradient_terms(self, input_shape: Shape) -> int:
        """How many terms per example a parameter gradient sums (positions: 1 for a dense
        layer on vectors, the sequence length for tokens, the output pixels for a conv)."""
        return int(np.prod(input_shape[:-1])) if len(input_shape) > 1 else 1

    # -- values ---------------------------------------------------------------------

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Initial parameters in float64 (each layer type: PyTorch's default range)."""
        return {}

    def init_state(self, input_shape: Shape) -> dict[str, np.ndarray]:
        return {}

    def forward(self, params: Params, x: np.ndarray, training: bool = True,
                state: Params | None = None) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def new_state(self, cache: Any, state: Params) -> dict[str, np.ndarray]:
        """The running statistics after a training forward pass (``STATE`` layers)."""
        return dict(state)

    def backward(self, params: Params, cache: Any,
                 dy: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    def describe(self) -> str:
        shown = [f"{k}={v}" for k, v in self.settings.items()
                 if v != self.SETTINGS[k].default]
        return self.kind + (f"({', '.join(shown)})" if shown else "")


def fan_in_uniform(rng: np.random.Generator, fan_in: int, shape: Shape) -> np.ndarray:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for linear and conv layers."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape)
