"""Case options: activation and loss parameters, dropout, batch sequences, schedules.

Optimizer hyperparameters live with each optimizer (``Case.hyperparameters``);
everything else a case can vary is an option here. This is the one registry
that the case spec, the reference, the adapters, case files and
``gradparity list`` read. Defaults are PyTorch's; an option that differs from
its default appears in the case id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

OptionValue = float | int | str | bool

Case = Any
"""A :class:`gradparity.spec.case.Case`. The case module imports this one (options are
validated as a case is built), so the name is only an alias here: no import cycle."""


def _uses_activation(name: str) -> Callable[[Case], str | None]:
    def check(case: Case) -> str | None:
        return None if name in case.activations else f"a case with activation {name!r}"

    return check


def _uses_loss(name: str) -> Callable[[Case], str | None]:
    def check(case: Case) -> str | None:
        return None if case.loss == name else f"a case with loss {name!r}"

    return check


def _has_hidden_layer(case: Case) -> str | None:
    if case.is_sequence:
        return "a dense MLP given by layer_sizes (a sequence of layers has no dropout)"
    return None if case.num_layers >= 2 else "a case with at least one hidden layer"


def _is_mlp(case: Case) -> str | None:
    if case.is_sequence:
        return "a dense MLP given by layer_sizes (in a sequence of layers, set bias per layer)"
    return None


def _schedule_is(*names: str) -> Callable[[Case], str | None]:
    def check(case: Case) -> str | None:
        if case.option("schedule") in names:
            return None
        return f"schedule {' or '.join(repr(n) for n in names)}"

    return check


def _momentum_rmsprop(case: Case) -> str | None:
    if case.optimizer == "rmsprop" and case.hparams["momentum"] > 0:
        return None
    return "optimizer 'rmsprop' with momentum > 0"


def _always(case: Case) -> str | None:
    return None


@dataclass(frozen=True)
class Option:
    """A named case option.

    ``kind`` is ``float``, ``int``, ``bool`` or ``str``; numbers must lie in
    ``[low, high]`` (``allowed`` says so in words), strings in ``choices``.
    ``requires(case)`` returns None when the option applies to the case, or
    what it needs (an option that would change nothing is refused, so a case
    file cannot silently carry a dead setting).
    """

    name: str
    default: OptionValue
    kind: type
    allowed: str
    description: str
    low: float = -math.inf
    high: float = math.inf
    choices: tuple[str, ...] = ()
    requires: Callable[[Case], str | None] = _always

    def check(self, value: Any) -> OptionValue:
        """The value, validated; raises ValueError naming the option and what is allowed."""
        where = f"Case.options[{self.name!r}]"
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where}: invalid value {value!r}; allowed: True or False")
            return value
        if self.kind is str:
            if value not in self.choices:
                raise ValueError(f"{where}: invalid value {value!r}; allowed: "
                                 f"{', '.join(self.choices)}")
            return str(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: invalid value {value!r}; allowed: {self.allowed}")
        if self.kind is int and not (isinstance(value, int) or float(value).is_integer()):
            raise ValueError(f"{where}: invalid value {value!r}; allowed: {self.allowed}")
        if not (math.isfinite(value) and self.low <= value <= self.high):
            raise ValueError(f"{where}: invalid value {value!r}; allowed: {self.allowed}")
        return int(value) if self.kind is int else float(value)


OPTIONS: dict[str, Option] = {
    option.name: option
    for option in (
        Option("negative_slope", 0.01, float, "a number >= 0",
               "leaky_relu slope for z < 0 (torch and jax default 0.01)",
               low=0.0, requires=_uses_activation("leaky_relu")),
        Option("elu_alpha", 1.0, float, "a number > 0",
               "elu: alpha (e^z - 1) for z <= 0 (torch and jax default 1)",
               low=math.ulp(0.0), requires=_uses_activation("elu")),
        Option("huber_delta", 1.0, float, "a number > 0",
               "huber: quadratic for |d| <= delta, linear beyond (default 1)",
               low=math.ulp(0.0), requires=_uses_loss("huber")),
        Option("smooth_l1_beta", 1.0, float, "a number > 0",
               "smooth_l1: quadratic / beta for |d| < beta (torch default 1)",
               low=math.ulp(0.0), requires=_uses_loss("smooth_l1")),
        Option("label_smoothing", 0.1, float, "a number in [0, 1)",
               "softmax_cross_entropy_smoothed: targets (1 - e) onehot + e / K",
               low=0.0, high=1.0 - 1e-12, requires=_uses_loss("softmax_cross_entropy_smoothed")),
        Option("dropout", 0.0, float, "a number in [0, 0.95] (0: off)",
               "drop probability of every hidden unit; the keep masks are drawn once in NumPy "
               "(inverted dropout: kept units are scaled by 1 / (1 - p))",
               low=0.0, high=0.95, requires=_has_hidden_layer),
        Option("batches", 1, int, "an integer in [1, 1000]",
               "length of the fixed batch sequence: step t trains on batch t mod batches",
               low=1, high=1000),
        Option("schedule", "constant", str, "constant, step, cosine",
               "learning-rate schedule, evaluated at the number of completed steps k "
               "(torch.optim.lr_scheduler stepped after every optimizer step; optax schedule)",
               choices=("constant", "step", "cosine")),
        Option("step_size", 3, int, "an integer in [1, 100000]",
               "step schedule: lr * gamma^floor(k / step_size) (StepLR / exponential_decay "
               "with staircase=True)", low=1, high=100000, requires=_schedule_is("step")),
        Option("gamma", 0.5, float, "a number in (0, 1]",
               "step schedule: the decay factor", low=math.ulp(0.0), high=1.0,
               requires=_schedule_is("step")),
        Option("cosine_period", 0, int, "an integer in [0, 100000] (0: the case's steps)",
               "cosine schedule: T_max / decay_steps", low=0, high=100000,
               requires=_schedule_is("cosine")),
        Option("cosine_min_lr", 0.0, float, "a number >= 0",
               "cosine schedule: the final learning rate (eta_min; optax alpha = eta_min / lr)",
               low=0.0, requires=_schedule_is("cosine")),
        Option("cosine_past_period", "continue", str, "continue, hold",
               "cosine schedule after T_max: torch keeps following the cosine (back up), "
               "optax holds the final value", choices=("continue", "hold"),
               requires=_schedule_is("cosine")),
        Option("bias", True, bool, "True or False",
               "every dense layer has a bias b (False: z = a W, a network without biases)",
               requires=_is_mlp),
        Option("lr_in_momentum", False, bool, "True or False",
               "RMSprop momentum: buffer of lr-scaled steps (optax) instead of lr times a "
               "buffer of unscaled steps (torch); equal unless the learning rate changes",
               requires=_momentum_rmsprop),
    )
}
"""The registry of case options."""


def checked_options(case: Case, given: Any) -> tuple[tuple[str, OptionValue], ...]:
    """Validate ``given`` (a mapping or pairs); the sorted pairs that differ from their
    defaults, so two spellings of the same case compare (and hash) equal."""
    pairs = given.items() if isinstance(given, Mapping) else given
    try:
        values = dict(pairs)
    except (TypeError, ValueError):
        raise ValueError(f"Case.options: invalid value {given!r}; allowed: a mapping with keys "
                         f"from: {', '.join(OPTIONS)}") from None
    for name in values:
        if name not in OPTIONS:
            raise ValueError(f"Case.options: invalid value {name!r}; allowed: "
                             f"{', '.join(OPTIONS)}")
    checked = {name: OPTIONS[name].check(value) for name, value in values.items()}
    return tuple(sorted((n, v) for n, v in checked.items() if v != OPTIONS[n].default))


def check_applicability(case: Case) -> None:
    """Refuse options that would change nothing for ``case``."""
    for name, value in case.options:
        option = OPTIONS[name]
        needs = option.requires(case)
        if needs is not None:
            raise ValueError(f"Case.options[{name!r}]: invalid value {value!r}; allowed: only "
                             f"for {needs} (the default {option.default!r} otherwise)")
