"""Confirming a disagreement before it is reported: more draws of the model's probes.

The tolerance model's trajectory terms (``S_t``, ``S^c_t``, ``U_t``, ``R_t`` and the
loss sensitivities, :mod:`gradparity.compare.tolerances`) each come from one random draw
of a perturbation (random signs, like rounding). Where training is stable, another draw
moves them by about twofold, which the model's safety factors cover. Where it is chaotic
(float32 at lr 0.1 on raw or scaled 8-bit pixels: errors that grow about tenfold per
step), one draw can miss the directions in which rounding grows fastest, and a correct
float32 run lands above its tolerance. On the chaotic sweep of
``tests/harness/adversarial.py`` (144 networks; ``python -m tests.harness.adversarial
--chaotic --draws N``), 11 cried wolf against one draw (up to 5.5 times a tolerance, the
NumPy reference against its own float64 run among them), 1 against the widest of 8
draws and none against 16; on a grid the draws were not chosen on (``--held-out``: two
hidden layers, AdamW, other seeds; 120 networks, 2 of which diverge and are refused),
18 against one draw and 4 against 16 until stop 32: three of them were checks that are
not determined in float32 (:data:`gradparity.compare.metrics.NOT_DETERMINED`), the
fourth was JAX's float32 tanh (the catalogued ``tanh_float32_form``, which
:mod:`gradparity.harness.explain` now names); none now, and none on a second held-out
grid (three hidden layers, other seeds: docs/tolerances.md).

So a pair whose failing checks all depend on the draw, all within
:data:`OUT_OF_REACH`, is judged again against :func:`widest` of more draws, one more at a
time, until it passes, until some failing check is out of reach, or until
:data:`CONFIRMING_DRAWS`. A pair that passes never pays for this, and its numbers do not
change; a confirmed disagreement reports the tolerance of the draws it was judged
against. The widest of several draws is still a model of rounding: each draw is a
plausible rounding pattern, and a bug's error does not depend on any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gradparity.compare.metrics import Difference
from gradparity.compare.tolerances import Tolerances

CONFIRMING_DRAWS = 16
"""At most this many draws (the model's own and 15 more) judge a disagreement: the
chaotic sweep's last false alarm against 8 (1.27 times its tolerance) passed with 16."""

OUT_OF_REACH = 16.0
"""No more draws once a failing check is this many times over its tolerance: the false
alarms the draws removed from the chaotic sweep were at most 5.5 times over against one
draw, so a check this far over stays over, and a bug found on a large model does not pay
for draws that cannot change its verdict. (One on the held-out grid was 37.6 times over:
JAX's float32 tanh, XLA's kernel, which the catalogued ``tanh_float32_form`` names.)"""

UNDRAWN = ("loss", "gradient", "delta")
"""Quantities of the first pass, whose tolerances no trajectory term enters."""


def drawn(difference: Difference) -> bool:
    """Whether the check's tolerance depends on the probes' draw."""
    return difference.quantity not in UNDRAWN


def worth_another_draw(checks: Sequence[Difference]) -> bool:
    """Whether a wider draw could turn the pair's failure into a pass: some check fails,
    and every failing check is a number (not a note: NaN, a shape) whose tolerance
    depends on the draw, within reach. A pair that fails a check no draw can change (a
    gradient, or a trajectory far over) has its disagreement confirmed already."""
    failing = [d for d in checks if not d.passed]
    return bool(failing) and all(drawn(d) and not d.note and d.headroom < OUT_OF_REACH
                                 for d in failing)


def widest(models: Sequence[Tolerances]) -> Tolerances:
    """The models' draw-dependent terms, each the largest of any draw (every ``K`` grows
    with each of them, so every tolerance is at least each model's); the rest is the
    first model's, which every draw shares."""
    first = models[0]
    if len(models) == 1:
        return first

    def per_step(field: str) -> dict[int, dict[str, float]]:
        combined: dict[int, dict[str, float]] = {}
        for model in models:
            for step, values in getattr(model, field).items():
                into = combined.setdefault(step, {})
                for name, value in values.items():
                    into[name] = max(into.get(name, value), value)
        return combined

    return replace(first, sensitivity=per_step("sensitivity"),
                   componentwise=per_step("componentwise"), moved=per_step("moved"),
                   state_rounding=per_step("state_rounding"),
                   loss_sensitivity=tuple(max(m.loss_sensitivity[i] for m in models)
                                          for i in range(len(first.loss_sensitivity))))
