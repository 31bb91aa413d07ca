"""The optax side of the JAX adapter: optimizers, schedules and the compiled update.

The update program is compiled once per optimizer *structure* (which optimizer,
which features are on, its constant hyperparameters, the schedule); the values
listed in :data:`INJECTED` are optax state (``optax.inject_hyperparams``), so
cases that differ only in those share one compiled program.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import optax

from gradparity.spec.case import Case

Options = Mapping[str, Any]


def _schedule(lr: float, o: Options, steps: int) -> float | optax.Schedule:
    if o["schedule"] == "step":
        return optax.exponential_decay(init_value=lr, transition_steps=o["step_size"],
                                       decay_rate=o["gamma"], staircase=True)
    if o["schedule"] == "cosine":
        return optax.cosine_decay_schedule(init_value=lr, decay_steps=max(
            o["cosine_period"] or steps, 1), alpha=o["cosine_min_lr"] / lr)
    return lr


def _with_coupled_decay(hp: dict, transform: optax.GradientTransformation):
    """torch's ``weight_decay`` on SGD/Adam adds wd * theta to the gradient first (None:
    no weight decay)."""
    if hp["weight_decay"] is None:
        return transform
    return optax.chain(optax.add_decayed_weights(hp["weight_decay"]), transform)


# Each entry takes the hyperparameters and the learning rate (a number or a schedule).
# A momentum or weight decay that is off is None (it changes the program's structure).
OPTIMIZERS: dict[str, Callable[[dict, Any], optax.GradientTransformation]] = {
    "sgd": lambda hp, lr: _with_coupled_decay(hp, optax.sgd(
        learning_rate=lr, momentum=hp["momentum"], nesterov=hp["nesterov"],
    )),
    "adam": lambda hp, lr: _with_coupled_decay(hp, optax.adam(
        learning_rate=lr, b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"],
    )),
    "adamw": lambda hp, lr: optax.adamw(
        learning_rate=lr, b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"],
        weight_decay=hp["weight_decay"],
    ),
    "amsgrad": lambda hp, lr: optax.amsgrad(
        learning_rate=lr, b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"],
    ),
    "rmsprop": lambda hp, lr: optax.rmsprop(
        learning_rate=lr, decay=hp["alpha"], eps=hp["eps"],
        eps_in_sqrt=hp["eps_in_sqrt"], centered=hp["centered"],
        momentum=hp["momentum"],
    ),
    "adagrad": lambda hp, lr: optax.adagrad(
        learning_rate=lr, eps=hp["eps"],
        initial_accumulator_value=hp["initial_accumulator_value"],
    ),
}


@dataclass
class CompileStats:
    """Programs traced (and so compiled) by jax.jit, counted at trace time, and the wall
    time of the calls that compiled them."""

    gradient_programs: int = 0
    update_programs: int = 0
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return self.gradient_programs + self.update_programs


COMPILE_STATS = CompileStats()


def optax_transformation(optimizer: str, hp: dict, learning_rate) -> optax.GradientTransformation:
    """One optimizer setting in optax: clipping (None: off), then the optimizer."""
    clipping = []
    if hp["clip_value"] is not None:
        clipping.append(optax.clip(hp["clip_value"]))
    if hp["clip_norm"] is not None:
        clipping.append(optax.clip_by_global_norm(hp["clip_norm"]))
    return optax.chain(*clipping, OPTIMIZERS[optimizer](hp, learning_rate))


INJECTED = ("learning_rate", "eps", "weight_decay", "momentum", "clip_value", "clip_norm",
            "initial_accumulator_value")
"""Hyperparameters handed to the compiled update as optax state
(``optax.inject_hyperparams``), so that one program serves every value. optax uses
each of them as it is (``g + wd p``, ``g + m t``, ``-lr u``, ``sqrt(v) + eps``,
clipping), so a value in the state gives the same numbers as a constant; a test holds
the two bitwise equal. Measured to change the last bits when injected, and so kept as
constants of the program: ``beta1``, ``beta2`` and ``alpha`` (optax forms ``1 - beta``
from them: in Python float64 from a constant, in the parameter dtype from a state
value), and the learning rate of the rsqrt forms (``eps_in_sqrt``: XLA's code for
``-lr * g * rsqrt(v + eps)`` rounds differently with a constant lr). A scheduled
learning rate is a constant too (the schedule is a function of the step)."""


def injected_values(case: Case) -> dict[str, Any]:
    """The case's values of :data:`INJECTED`; None where the feature is off."""
    hp = case.hparams
    scheduled = case.option("schedule") != "constant"
    return {
        # None: a constant (scheduled, or the rsqrt form: see INJECTED)
        "learning_rate": None if scheduled or hp.get("eps_in_sqrt") else hp["lr"],
        # adamw always has its decoupled decay (0 is a no-op); SGD/Adam's coupled one
        # is a separate transformation that exists only when it is on
        "weight_decay": (hp["weight_decay"] if case.optimizer == "adamw"
                         else hp.get("weight_decay") or None),
        "momentum": hp.get("momentum") or None,
        "eps": hp.get("eps"),
        "clip_value": hp.get("clip_value") or None,
        "clip_norm": hp.get("clip_norm") or None,
        "initial_accumulator_value": hp.get("initial_accumulator_value"),
    }


SCHEDULE_OPTIONS = ("schedule", "step_size", "gamma", "cosine_period", "cosine_min_lr")


def update_structure(case: Case) -> tuple:
    """What the compiled update depends on: the optimizer, its constant hyperparameters,
    which injected features are off, and the schedule (with its lr; the cosine schedule's
    default period is the number of steps)."""
    values = injected_values(case)
    constant_lr = values["learning_rate"] is None
    constants = tuple((name, value) for name, value in case.hyperparameters
                      if name not in INJECTED and (name != "lr" or constant_lr))
    off = tuple(name for name, value in values.items() if value is None)
    options = case.all_options
    schedule = tuple((name, options[name]) for name in SCHEDULE_OPTIONS)
    steps = case.steps if options["schedule"] == "cosine" else 0
    return case.optimizer, constants, off, schedule, steps


@functools.lru_cache(maxsize=256)
def update_program(optimizer: str, constants: tuple, off: tuple, options: tuple,
                    steps: int) -> tuple[Callable, Callable]:
    """The jitted optimizer step and the optax factory (``inject_hyperparams``) whose
    instances it updates. jax.jit compiles it per structure, shape and dtype: values
    of :data:`INJECTED` are state, so they reuse it."""
    fixed = dict(constants)

    def transformation(learning_rate, eps, weight_decay, momentum, clip_value, clip_norm,
                       initial_accumulator_value) -> optax.GradientTransformation:
        hp = {**fixed, "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
              "clip_value": clip_value, "clip_norm": clip_norm,
              "initial_accumulator_value": initial_accumulator_value}
        if learning_rate is None:  # a constant of this program, or its schedule
            learning_rate = _schedule(fixed["lr"], dict(options), steps)
        return optax_transformation(optimizer, hp, learning_rate)

    factory = optax.inject_hyperparams(transformation)
    # the update reads every injected value from the state: any instance of this
    # structure serves
    template = factory(**{name: None if name in off else 1.0 for name in INJECTED})

    def apply(params: dict, grads: dict, opt_state: optax.OptState) -> tuple:
        COMPILE_STATS.update_programs += 1  # runs only while tracing
        updates, opt_state = template.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.jit(apply), factory

