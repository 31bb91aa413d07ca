"""Learning-rate schedules, written out.

The learning rate of step t (t = 1, 2, ...) is the schedule evaluated at the
number of completed steps k = t - 1, the way optax counts updates and the way
``torch.optim.lr_scheduler`` behaves when ``scheduler.step()`` follows every
``optimizer.step()``:

    constant:  lr_k = lr
    step:      lr_k = lr * gamma^floor(k / step_size)
               (torch StepLR; optax.exponential_decay(staircase=True))
    cosine:    lr_k = eta_min + (lr - eta_min) (1 + cos(pi k / T)) / 2,   T = cosine_period
               (torch CosineAnnealingLR; optax.cosine_decay_schedule with
               alpha = eta_min / lr)

Past the period (k > T) the two libraries part ways, a catalogued convention:
torch keeps following the cosine, so the rate climbs back to lr at k = 2T
(``cosine_past_period="continue"``); optax clamps k at T and holds eta_min
(``"hold"``).

torch computes StepLR and CosineAnnealingLR recursively (each rate from the
previous one) and optax in closed form; the two agree up to rounding, which
the reference's closed form sits between.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SCHEDULES = ("constant", "step", "cosine")


def learning_rate(lr: float, completed_steps: int, options: Mapping[str, Any],
                  total_steps: int) -> float:
    """The learning rate of the step after ``completed_steps`` steps.

    ``options`` holds the case options (``schedule``, ``step_size``, ``gamma``,
    ``cosine_period``, ``cosine_min_lr``, ``cosine_past_period``);
    ``cosine_period = 0`` means ``total_steps``.
    """
    schedule, k = options.get("schedule", "constant"), completed_steps
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * options["gamma"] ** (k // options["step_size"])
    if schedule == "cosine":
        period = max(options["cosine_period"] or total_steps, 1)
        if options["cosine_past_period"] == "hold":
            k = min(k, period)
        eta_min = options["cosine_min_lr"]
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * k / period)) / 2
    raise ValueError(f"schedule: invalid value {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def step_hyperparameters(hyperparameters: Mapping[str, Any], options: Mapping[str, Any],
                         completed_steps: int, total_steps: int) -> dict[str, Any]:
    """The hyperparameters of one step: ``lr`` from the schedule, plus the
    ``lr_in_momentum`` convention (an option, read by RMSprop)."""
    hp = dict(hyperparameters)
    hp["lr"] = learning_rate(hp["lr"], completed_steps, options, total_steps)
    hp["lr_in_momentum"] = bool(options.get("lr_in_momentum", False))
    return hp
