"""The case spec: a frozen, validated description of one comparison."""

from __future__ import annotations

import difflib
import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.reference.sequence import SequenceNetwork
from gradparity.spec.architectures import ARCHITECTURES, checked_layers, layers_code, thawed
from gradparity.spec.datasets import DATASETS, default_dataset_for
from gradparity.spec.options import OPTIONS, OptionValue, check_applicability, checked_options

DTYPES: tuple[str, ...] = ("float32", "float64")

# Values that stay out of the case id when a case uses them (see Case.id).
DEFAULT_BATCH_SIZE = 8
DEFAULT_SEED = 0
DEFAULT_STEPS = 10
DEFAULT_HYPERPARAMETERS: Mapping[str, float] = {"lr": 0.1}
MEMORY_LIMIT = 8 * 2**30  # bytes; a larger case is refused up front (Case.memory_estimate)

# Allowed ranges of numeric hyperparameters: (low, high, description); inclusive.
HYPERPARAMETER_RANGES: dict[str, tuple[float, float, str]] = {
    "lr": (math.ulp(0.0), math.inf, "> 0"),
    "momentum": (0.0, 0.999999, "in [0, 1)"),
    "dampening": (0.0, 1.0, "in [0, 1]"),
    "weight_decay": (0.0, math.inf, ">= 0"),
    "beta1": (0.0, 0.999999, "in [0, 1)"),
    "beta2": (0.0, 0.999999, "in [0, 1)"),
    "eps": (math.ulp(0.0), math.inf, "> 0"),
    "alpha": (0.0, 0.999999, "in [0, 1)"),
    "initial_accumulator_value": (0.0, math.inf, ">= 0"),
    "clip_value": (0.0, math.inf, ">= 0 (0: off)"),
    "clip_norm": (0.0, math.inf, ">= 0 (0: off)"),
    "clip_norm_eps": (0.0, math.inf, ">= 0"),
}


def _invalid(field_name: str, value: Any, allowed: str) -> ValueError:
    """The error for a bad field; a misspelled name gets the closest allowed one."""
    hint = ""
    if isinstance(value, str) and "did you mean" not in allowed:
        names = [name.strip() for name in allowed.split(",")]
        close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close and " " not in close[0] else ""
    return ValueError(f"Case.{field_name}: invalid value {value!r}; allowed: {allowed}{hint}")


def _is_name_in(value: Any, registry: Any) -> bool:
    """A string naming an entry (a list or dict is not a name, and not hashable either)."""
    return isinstance(value, str) and value in registry


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Case:
    """One comparison: architecture, nonlinearities, loss, data, dtype, optimizer.

    ``hidden_activation`` is one name for every hidden layer or a sequence with
    one name per hidden layer. ``dataset=None`` picks the natural data set for
    the loss (``regression`` for mse, ``blobs`` for the classification losses).
    ``hyperparameters`` is a mapping such as ``{"lr": 0.1}``; it is stored as a
    sorted tuple of pairs so the case stays hashable. ``options`` maps names from
    :data:`gradparity.spec.options.OPTIONS` (activation and loss parameters, dropout,
    batch sequences, learning-rate schedules) to values; only values that differ
    from the option's default are stored.

    Every invalid value raises ``ValueError`` naming the field, the value and
    what is allowed.
    """

    layer_sizes: tuple[int, ...] = ()
    hidden_activation: str | tuple[str, ...] = "tanh"
    output_activation: str = "identity"
    loss: str = "mse"
    dtype: str = "float64"
    batch_size: int = DEFAULT_BATCH_SIZE
    dataset: str | None = None
    seed: int = DEFAULT_SEED
    optimizer: str = "sgd"
    hyperparameters: Any = field(default_factory=lambda: dict(DEFAULT_HYPERPARAMETERS))
    steps: int = DEFAULT_STEPS
    options: Any = ()
    layers: Any = ()
    input_shape: Any = ()
    architecture: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.architecture is not None:
            if not _is_name_in(self.architecture, ARCHITECTURES):
                raise _invalid("architecture", self.architecture, ", ".join(ARCHITECTURES))
            layers, shape, _ = ARCHITECTURES[self.architecture]
            # dataclasses.replace passes the architecture's own layers back in
            if ((self.layers or self.input_shape)
                    and (self.layers, tuple(self.input_shape)) != checked_layers(
                        layers, shape, self.loss)):
                raise _invalid("layers", self.layers, "nothing beside an architecture (it "
                               "names both the layers and the input shape)")
            set_(self, "layers", layers)
            set_(self, "input_shape", shape)
        if self.layers:
            self._check_sequence()
        else:
            set_(self, "layer_sizes", self._checked_layer_sizes(self.layer_sizes))
            set_(self, "hidden_activation", self._checked_hidden(self.hidden_activation))
        if not _is_name_in(self.output_activation, ACTIVATIONS):
            raise _invalid("output_activation", self.output_activation, ", ".join(ACTIVATIONS))
        self._check_loss()
        if not _is_name_in(self.dtype, DTYPES):
            raise _invalid("dtype", self.dtype, ", ".join(DTYPES))
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise _invalid("batch_size", self.batch_size, "an integer >= 1")
        if self.dataset is None:
            set_(self, "dataset", self.default_dataset)
        self._check_dataset()
        if not _is_int(self.seed) or self.seed < 0:
            raise _invalid("seed", self.seed, "an integer >= 0")
        if not _is_name_in(self.optimizer, OPTIMIZERS):
            raise _invalid("optimizer", self.optimizer, ", ".join(OPTIMIZERS))
        set_(self, "hyperparameters", self._checked_hyperparameters(self.hyperparameters))
        if not _is_int(self.steps) or self.steps < 0:
            raise _invalid("steps", self.steps, "an integer >= 0")
        set_(self, "options", checked_options(self, self.options))
        check_applicability(self)
        needed = self.memory_estimate()
        if needed > MEMORY_LIMIT:
            raise _invalid("layers" if self.is_sequence else "layer_sizes",
                           self.layer_specs if self.is_sequence else self.layer_sizes,
                           f"a case that fits in {MEMORY_LIMIT / 2**30:.0f} GiB; this one needs "
                           f"about {needed / 2**30:.1f} GiB (parameters, gradients, optimizer "
                           "state and the trajectory for three implementations, plus the data "
                           "and activations), refused before anything is allocated")

    # -- validation helpers -------------------------------------------------

    def _check_sequence(self) -> None:
        set_ = object.__setattr__
        if self.layer_sizes:
            raise _invalid("layer_sizes", self.layer_sizes, "() with layers (a network is "
                           "either a dense MLP by its layer sizes, or a sequence of layers)")
        if not _is_name_in(self.loss, LOSSES):
            raise _invalid("loss", self.loss, ", ".join(LOSSES))
        if LOSSES[self.loss].output_activation:
            raise _invalid("loss", self.loss, "a loss without an output activation of its "
                           "own (a sequence of layers ends in its own layers)")
        # () is what a built sequence case holds (dataclasses.replace passes it back)
        if self.output_activation != "identity" or self.hidden_activation not in ("tanh", ()):
            raise _invalid("output_activation", self.output_activation, "the default: the "
                           "activations of a sequence network are among its layers")
        layers, shape = checked_layers(self.layers, self.input_shape, self.loss)
        set_(self, "layers", layers)
        set_(self, "input_shape", shape)
        set_(self, "hidden_activation", ())

    @staticmethod
    def _checked_layer_sizes(sizes: Any) -> tuple[int, ...]:
        if isinstance(sizes, tuple | list) and not sizes:
            raise ValueError("Case.layer_sizes: no network; allowed: layer_sizes (e.g. "
                             "[4, 16, 3]), layers with input_shape, or an architecture ("
                             + ", ".join(ARCHITECTURES) + ")")
        allowed = "a sequence of at least two integers >= 1, e.g. (4, 16, 3)"
        if isinstance(sizes, str) or not isinstance(sizes, Sequence) or len(sizes) < 2:
            raise _invalid("layer_sizes", sizes, allowed)
        if not all(_is_int(size) and size >= 1 for size in sizes):
            raise _invalid("layer_sizes", sizes, allowed)
        return tuple(sizes)

    def _checked_hidden(self, hidden: Any) -> tuple[str, ...]:
        num_hidden = len(self.layer_sizes) - 2
        names = ", ".join(ACTIVATIONS)
        if isinstance(hidden, str):
            if not _is_name_in(hidden, ACTIVATIONS):
                raise _invalid("hidden_activation", hidden, names)
            return (hidden,) * num_hidden
        if not isinstance(hidden, Sequence) or len(hidden) != num_hidden:
            raise _invalid(
                "hidden_activation", hidden,
                f"one of {names}, or a sequence of {num_hidden} of them (one per hidden layer)",
            )
        for name in hidden:
            if not _is_name_in(name, ACTIVATIONS):
                raise _invalid("hidden_activation", name, names)
        return tuple(hidden)

    def _check_loss(self) -> None:
        if not _is_name_in(self.loss, LOSSES):
            raise _invalid("loss", self.loss, ", ".join(LOSSES))
        loss = LOSSES[self.loss]
        if self.is_sequence:
            if self.output_shape[-1] < loss.min_outputs:
                raise _invalid("layers", self.layer_specs, f"an output width >= "
                               f"{loss.min_outputs} for loss {self.loss!r}")
            return
        if loss.takes_logits and self.output_activation != "identity":
            raise _invalid(
                "output_activation", self.output_activation,
                f"'identity' only, because loss {self.loss!r} takes logits",
            )
        if loss.output_activation and self.output_activation != loss.output_activation:
            raise _invalid(
                "output_activation", self.output_activation,
                f"{loss.output_activation!r} only, because loss {self.loss!r} takes "
                "probabilities",
            )
        if self.layer_sizes[-1] < loss.min_outputs:
            raise _invalid(
                "layer_sizes", self.layer_sizes,
                f"an output width >= {loss.min_outputs} for loss {self.loss!r}",
            )

    def _check_dataset(self) -> None:
        if not _is_name_in(self.dataset, DATASETS):
            raise _invalid("dataset", self.dataset, ", ".join(DATASETS))
        problem = DATASETS[self.dataset].incompatibility(self)
        if problem is not None:
            raise _invalid("dataset", self.dataset, problem)

    def _checked_hyperparameters(self, given: Any) -> tuple[tuple[str, float | bool], ...]:
        spec = OPTIMIZERS[self.optimizer].hyperparameters
        names = ", ".join(spec)
        pairs = given.items() if isinstance(given, Mapping) else given
        try:
            values = dict(pairs)
        except (TypeError, ValueError):
            raise _invalid("hyperparameters", given, f"a mapping with keys from: {names}") from None
        for name, value in values.items():
            if name not in spec:
                raise _invalid(
                    "hyperparameters", name, f"{names} (for optimizer {self.optimizer!r})"
                )
            if isinstance(spec[name], bool):
                if not isinstance(value, bool):
                    raise _invalid(f"hyperparameters[{name!r}]", value, "True or False")
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _invalid(f"hyperparameters[{name!r}]", value, "a finite real number")
            low, high, text = HYPERPARAMETER_RANGES.get(name, (-math.inf, math.inf, "finite"))
            if not (math.isfinite(value) and low <= value <= high):
                raise _invalid(f"hyperparameters[{name!r}]", value, f"a number {text}")
        for name, default in spec.items():
            if name not in values:
                if default is None:
                    raise _invalid(
                        "hyperparameters", given,
                        f"a mapping that sets {name!r} (required by {self.optimizer!r})",
                    )
                values[name] = default
        if values.get("nesterov") and (values["momentum"] <= 0 or values.get("dampening", 0) != 0):
            raise _invalid(
                "hyperparameters['nesterov']", True, "only with momentum > 0 and dampening == 0"
            )
        return tuple(
            sorted((n, v if isinstance(v, bool) else float(v)) for n, v in values.items())
        )

    # -- derived views --------------------------------------------------------

    @property
    def hparams(self) -> dict[str, float | bool]:
        """The optimizer hyperparameters as a plain dict."""
        return dict(self.hyperparameters)

    def memory_estimate(self) -> int:
        """Bytes a run of this case needs, roughly: per implementation the parameters,
        gradients, optimizer state and every step's parameters and state; the data,
        the activations of a batch and the dropout masks."""
        itemsize = 4 if self.dtype == "float32" else 8
        if self.is_sequence:
            return itemsize * self._sequence_memory()
        sizes = self.layer_sizes
        params = sum(a * b + b for a, b in itertools.pairwise(sizes))
        rows = self.batch_size * int(self.option("batches"))
        data = rows * (sizes[0] + sizes[-1])
        activations = 3 * self.batch_size * sum(sizes[1:])
        masks = (self.steps + 1) * self.batch_size * sum(sizes[1:-1]) * bool(
            self.option("dropout"))
        per_framework = params * (6 + 4 * self.steps) + activations
        return itemsize * (3 * per_framework + data + masks)

    def _sequence_memory(self) -> int:
        """Elements a sequence network's run needs (the MLP estimate's terms)."""
        stack = self.network().stack
        params = sum(math.prod(shape) for shape in stack.parameter_shapes().values())
        rows = self.batch_size * int(self.option("batches"))
        data = rows * (math.prod(self.input_shape) + math.prod(stack.output_shape))
        # every layer's output and its cache (a few arrays of that size)
        activations = 4 * self.batch_size * sum(math.prod(shape) for shape in stack.shapes)
        return 3 * (params * (6 + 4 * self.steps) + activations) + data

    def option(self, name: str) -> OptionValue:
        """The value of option ``name``: the case's own or the option's default."""
        if name not in OPTIONS:
            raise ValueError(f"option: invalid value {name!r}; allowed: {', '.join(OPTIONS)}")
        return dict(self.options).get(name, OPTIONS[name].default)

    @property
    def all_options(self) -> dict[str, OptionValue]:
        """Every option with its value for this case (defaults filled in)."""
        return {name: self.option(name) for name in OPTIONS}

    @property
    def is_sequence(self) -> bool:
        """Whether the network is a sequence of layers (``layers``), not a dense MLP."""
        return bool(self.layers)

    @property
    def layer_specs(self) -> list[dict[str, Any]]:
        """The layers as tables (``{"type": "conv2d", ...}``); empty for an MLP."""
        return [thawed(spec) for spec in self.layers]

    def network(self) -> SequenceNetwork:
        """The reference network of a sequence case."""
        return _network(self.layers, self.input_shape, self.loss)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The network's output per example."""
        if self.is_sequence:
            return self.network().stack.output_shape
        return (self.layer_sizes[-1],)

    @property
    def network_family(self) -> str:
        """The network alone, for grouping cases: ``mlp4-16-16-3``, ``cnn``, or ``layers``
        for spelled-out layers."""
        if self.is_sequence:
            return self.architecture or "layers"
        return "mlp" + "-".join(map(str, self.layer_sizes))

    @property
    def example_shape(self) -> tuple[int, ...]:
        """One example's input: ``input_shape``, or ``(layer_sizes[0],)`` for an MLP."""
        return tuple(self.input_shape) if self.is_sequence else (self.layer_sizes[0],)

    @property
    def takes_tokens(self) -> bool:
        """Whether the inputs are integer token ids (the network starts with an embedding)."""
        return self.is_sequence and dict(self.layers[0])["type"] == "embedding"

    @property
    def default_dataset(self) -> str:
        """The data set a case uses when it names none."""
        if self.takes_tokens:
            return "tokens"
        return default_dataset_for(LOSSES[self.loss].target_kind)

    @property
    def num_layers(self) -> int:
        return len(self.layers) if self.is_sequence else len(self.layer_sizes) - 1

    @property
    def activations(self) -> tuple[str, ...]:
        """One activation name per layer, the output activation last (an MLP's; a sequence
        of layers has its activations among its layers, and none here)."""
        if self.is_sequence:
            return ()
        return (*self.hidden_activation, self.output_activation)

    def uses_activation(self, name: str) -> bool:
        """Whether the network applies activation ``name``: an MLP in one of its layers,
        a sequence of layers as one of them (inside a residual block too)."""
        if not self.is_sequence:
            return name in self.activations
        return name in _layer_types(self.layer_specs)

    @functools.cached_property  # a pure function of frozen fields, read once per check
    def id(self) -> str:
        """A stable, readable id, e.g. ``mlp4-16-16-3_tanh_softmax-ce_float64_sgd``.

        The five core parts are always present; each further field appears as a
        suffix only when it differs from its default, in a fixed order:
        ``_out-<activation>``, ``_<hyperparameter><value>`` (a flag: ``_<name>``),
        ``_<option><value>``, ``_<dataset>``,
        ``_b<batch>``, ``_seed<seed>``, ``_steps<steps>``.
        """
        if self.is_sequence:
            # a named architecture implies its input shape; spelled-out layers name it
            arch = (self.architecture if self.architecture else
                    f"{layers_code(self.layer_specs)}_in{'x'.join(map(str, self.input_shape))}")
            return self._suffixed([arch, LOSSES[self.loss].short_name, self.dtype,
                                   self.optimizer])
        arch = "mlp" + "-".join(str(size) for size in self.layer_sizes)
        hidden = self.hidden_activation
        if not hidden:
            hidden_part = "nohidden"
        elif len(set(hidden)) == 1:
            hidden_part = hidden[0]
        else:
            hidden_part = "-".join(hidden)
        return self._suffixed([arch, hidden_part, LOSSES[self.loss].short_name, self.dtype,
                               self.optimizer])

    def _suffixed(self, parts: list[str]) -> str:
        if self.output_activation != "identity":
            parts.append(f"out-{self.output_activation}")
        defaults = {**OPTIMIZERS[self.optimizer].hyperparameters, **DEFAULT_HYPERPARAMETERS}
        for name, value in self.hyperparameters:
            if defaults.get(name) != value:
                parts.append(name if value is True else f"{name}{value:g}")
        for name, value in self.options:
            if value is True:
                parts.append(name)
            elif value is False:
                parts.append(f"no{name}")
            else:
                parts.append(f"{name}{value:g}" if not isinstance(value, str) else
                             f"{name}-{value}")
        if self.dataset != self.default_dataset:
            parts.append(str(self.dataset))
        if self.batch_size != DEFAULT_BATCH_SIZE:
            parts.append(f"b{self.batch_size}")
        if self.seed != DEFAULT_SEED:
            parts.append(f"seed{self.seed}")
        if self.steps != DEFAULT_STEPS:
            parts.append(f"steps{self.steps}")
        return "_".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-friendly values."""
        return {
            "id": self.id,
            "layer_sizes": list(self.layer_sizes),
            "hidden_activation": list(self.hidden_activation),
            "output_activation": self.output_activation,
            "loss": self.loss,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "dataset": self.dataset,
            "seed": self.seed,
            "optimizer": self.optimizer,
            "hyperparameters": self.hparams,
            "steps": self.steps,
            "options": dict(self.options),
            **({"layers": self.layer_specs, "input_shape": list(self.input_shape),
                "architecture": self.architecture} if self.is_sequence else {}),
        }

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> Case:
        """The case that :meth:`to_dict` describes (JSON lists become tuples; ``id`` is
        derived, so it is ignored)."""
        fields = dict(fields)
        if fields.get("architecture"):  # its layers and shape follow from the name
            fields.pop("layers", None)
            fields.pop("input_shape", None)
        if fields.get("layers"):
            fields["hidden_activation"] = "tanh"  # stored as () for a sequence network
        return cls(**{name: tuple(value) if isinstance(value, list) and name != "layers"
                      else value for name, value in fields.items() if name != "id"})

    def __str__(self) -> str:
        return self.id


def _layer_types(specs: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every layer type of ``specs``, the layers of residual blocks included."""
    types = set()
    for spec in specs:
        types.add(spec["type"])
        types |= _layer_types(spec.get("layers", ()))
    return types


@functools.lru_cache(maxsize=256)
def _network(layers: tuple, input_shape: tuple[int, ...], loss: str) -> SequenceNetwork:
    return SequenceNetwork([thawed(spec) for spec in layers], input_shape, loss)
