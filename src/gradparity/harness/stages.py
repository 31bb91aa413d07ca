"""Where one case's time and memory go, stage by stage (``bench --stages CASES.toml``).

Wraps the runner's stages while one ``run_case`` runs and adds up, per stage, the
seconds spent inside it (a stage called inside another counts only in the inner one)
and the peak resident memory when it ended. The stages:

* ``framework runs``: every implementation's own run (``Adapter.run``, the NumPy
  reference included; the oracle's run counts as the oracle);
* ``float64 oracle``: the reference again in float64;
* ``tolerance model``: deriving it (float64 trajectories, conditioning probes);
* ``comparisons``: every pair's checks against it (the model's derivation inside
  counts as the model);
* ``finite differences``: the reference against its own float64 finite differences;
* ``teacher-forced reruns``: each framework's steps from the reference's parameters;
* ``everything else``: data, diagnosis, bookkeeping.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from gradparity.adapters import base
from gradparity.compare.derivation import clear_caches
from gradparity.harness import runner
from gradparity.harness.memory import peak_mib
from gradparity.spec.case import Case

STAGES: tuple[tuple[Any, str, str], ...] = (
    (base.Adapter, "run", "framework runs"),
    (runner, "float64_oracle", "float64 oracle"),
    (runner, "derive", "tolerance model"),
    (runner, "_judged", "comparisons"),
    (runner, "check_against_finite_differences", "finite differences"),
    (runner, "run_teacher_forced", "teacher-forced reruns"),
)



@contextmanager
def timed_stages(seconds: dict[str, float], peaks: dict[str, float]):
    """While active, adds each stage's own seconds to ``seconds`` and its peak memory at
    its end to ``peaks`` (by the labels of ``STAGES``)."""
    active: list[str] = []

    def wrap(original: Callable, label: str) -> Callable:
        def timed(*args, **kwargs):
            if label == "framework runs" and active and active[-1] == "float64 oracle":
                return original(*args, **kwargs)  # the oracle's own run is the oracle
            started = time.perf_counter()
            active.append(label)
            try:
                return original(*args, **kwargs)
            finally:
                active.pop()
                spent = time.perf_counter() - started
                seconds[label] += spent
                if active:  # the outer stage did not spend this time itself
                    seconds[active[-1]] -= spent
                peaks[label] = max(peaks[label], peak_mib())
        return timed

    originals = [getattr(owner, name) for owner, name, _ in STAGES]
    for (owner, name, label), original in zip(STAGES, originals, strict=True):
        setattr(owner, name, wrap(original, label))
    try:
        yield
    finally:
        for (owner, name, _), original in zip(STAGES, originals, strict=True):
            setattr(owner, name, original)


def stage_table(case: Case) -> list[str]:
    """The stages of ``run_case(case)``: seconds, share and peak memory after each."""
    seconds: dict[str, float] = defaultdict(float)
    peaks: dict[str, float] = defaultdict(float)
    clear_caches()  # the tolerance model is derived afresh, as every new case is
    with timed_stages(seconds, peaks):
        started = time.perf_counter()
        outcome = runner.run_case(case)
        wall = time.perf_counter() - started
    seconds["everything else"] = wall - sum(seconds.values())
    peaks["everything else"] = peak_mib()
    lines = [f"case {case.id}: {'agree' if outcome.passed else 'DISAGREE'}, {wall:.1f} s, "
             f"peak {peak_mib():.0f} MiB", "",
             "| stage | seconds | share | peak memory by its end (MiB) |", "|---|---|---|---|"]
    for _, _, label in (*STAGES, (None, None, "everything else")):
        # 3 significant digits: a tiny case's stage can take under 5 ms (never 0)
        lines.append(f"| {label} | {seconds[label]:.3g} | {seconds[label] / wall:.0%} | "
                     f"{peaks[label]:.0f} |")
    return lines
