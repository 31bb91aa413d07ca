"""The Markdown report: environment, summary, XOR seed example, per-parameter tables.

Tables are pandas DataFrames rendered by :mod:`gradparity.report.markdown`. The text
holds no timestamp, so the same run on the same machine writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradparity.adapters import get_adapter
from gradparity.adapters.conventions import CONVENTIONS
from gradparity.compare.metrics import Difference, format_eps, machine_epsilon
from gradparity.harness.audit import environment
from gradparity.harness.runner import FINITE_DIFFERENCES, CaseOutcome, framework_pairs
from gradparity.report import sections
from gradparity.report.markdown import markdown_table
from gradparity.spec.case import DTYPES

XOR_REPORTED_STEPS = (0, 1, 10, 100, 500, 1000)

HOW_TO_READ = """\
Every implementation starts from the same NumPy-generated weights and data. For
each pair (*framework* vs *baseline*) and each quantity (the loss, every
parameter gradient, the parameters after step 1 and after the last step, and the
loss after every step) the report gives the **normwise relative difference**
`max|a - b| / max|b|`, also in units of the dtype's machine epsilon (*eps*). A
check passes when that is at most the tolerance below. The summary shows, per
case and pair, the check with the largest difference; the per-parameter tables
show every parameter."""


def _eps_cell(difference: Difference | None) -> str:
    """``observed / allowed eps (headroom)``: every check shows its headroom."""
    if difference is None:
        return "n/a"
    if difference.note:
        return f"FAIL: {difference.note}"
    flag = "" if difference.passed else " **FAIL**"
    allowed = difference.tolerance / machine_epsilon(difference.dtype)
    observed = format_eps(difference.normwise_eps).removesuffix(" eps")
    return f"{observed} / {allowed:.0f} eps ({difference.headroom:.3f}){flag}"


def summary_table(outcomes: Sequence[CaseOutcome], frameworks: Sequence[str]) -> pd.DataFrame:
    """One row per case: the worst check per framework pair, and pass/fail."""
    rows = []
    for outcome in outcomes:
        row: dict[str, str] = {"case": outcome.case.id}
        for framework, baseline in framework_pairs(frameworks):
            if framework in outcome.skipped or baseline in outcome.skipped:
                cell = "skipped"
            else:
                cell = _eps_cell(outcome.worst(framework, baseline))
            row[f"{framework} vs {baseline}"] = cell
        row["result"] = "pass" if outcome.passed else "**FAIL**"
        rows.append(row)
    return pd.DataFrame(rows)


def parameter_table(outcome: CaseOutcome) -> pd.DataFrame:
    """One row per (quantity, parameter): normwise difference per pair, and max |diff|."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    worst_abs: dict[tuple[str, str], float] = {}
    for difference in outcome.checks:
        key = (difference.quantity, difference.parameter)
        row = rows.setdefault(key, {"quantity": key[0], "parameter": key[1]})
        row[difference.pair] = _eps_cell(difference)
        worst_abs[key] = max(worst_abs.get(key, 0.0), difference.max_abs)
    for key, row in rows.items():
        row["max abs diff (any pair)"] = f"{worst_abs[key]:.2e}"
    return pd.DataFrame(list(rows.values())).fillna("-")


def xor_table(outcome: CaseOutcome) -> pd.DataFrame:
    """Loss per implementation at a few steps, and their largest relative spread."""
    rows = []
    for step in XOR_REPORTED_STEPS:
        if step >= len(next(iter(outcome.results.values())).losses):
            continue
        losses = {name: float(result.losses[step]) for name, result in outcome.results.items()}
        row: dict[str, str] = {"step": str(step)}
        row.update({name: f"{value:.12f}" for name, value in losses.items()})
        values = np.array(list(losses.values()))
        spread = (values.max() - values.min()) / np.abs(values).max()
        spread_eps = format_eps(spread / machine_epsilon(outcome.case.dtype))
        row["max relative spread"] = f"{spread:.2e} ({spread_eps})"
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict_lines(all_outcomes: Sequence[CaseOutcome], frameworks: Sequence[str]) -> list:
    checks = [d for outcome in all_outcomes for d in outcome.checks]
    failed_cases = [o.case.id for o in all_outcomes if not o.passed]
    worst = max((d.headroom for d in checks), default=0.0)
    if not any(o.compared for o in all_outcomes):
        verdict = ("**Verdict: NOTHING WAS COMPARED**: no case produced a pair of results or "
                   "an oracle check (see skipped frameworks and errors below)")
    elif failed_cases:
        verdict = f"**Verdict: DISAGREEMENT in {len(failed_cases)} of {len(all_outcomes)} cases**"
    else:
        verdict = f"**Verdict: all {len(all_outcomes)} cases agree**"
    verdict += (f" ({', '.join(frameworks)}; {len(checks)} checks; "
                f"largest observed/allowed ratio {worst:.3f})")
    lines = [verdict, ""]
    errors = [(o.case.id, name) for o in all_outcomes for name in o.errors]
    if errors:
        lines += [f"**{len(errors)} error(s)** in {len({c for c, _ in errors})} case(s): "
                  + ", ".join(f"{name} in {case}" for case, name in errors[:5])
                  + (" ..." if len(errors) > 5 else "") + " (see *Errors*)", ""]
    unavailable = sorted({f"{name}: {reason}" for o in all_outcomes
                          for name, reason in o.skipped.items()
                          if not reason.startswith("not expressible")})
    if unavailable:
        lines += ["**Not checked** (framework unavailable): " + "; ".join(unavailable), ""]
    if checks:
        largest = max(checks, key=lambda d: d.headroom)
        lines += [f"Largest difference relative to its tolerance: {largest.message()}", ""]
    for dtype in DTYPES:
        in_dtype = [d for d in checks if d.dtype == dtype and d.baseline != FINITE_DIFFERENCES]
        if in_dtype:
            top = max(in_dtype, key=lambda d: d.normwise)
            lines += [f"- {dtype}: {len(in_dtype)} checks, largest normwise relative difference "
                      f"{top.normwise:.2e} ({format_eps(top.normwise_eps)}), {top.pair}, "
                      f"{top.quantity} of {top.parameter} in {top.case_id}"]
    furthest = [o.worst_against_oracle() for o in all_outcomes]
    furthest = [d for d in furthest if d is not None]
    if furthest:
        top = max(furthest, key=lambda d: d.normwise)
        lines += [f"- float32 against the float64 oracle: the implementation furthest from it "
                  f"is **{top.framework}**, {format_eps(top.normwise_eps)} ({top.quantity} of "
                  f"{top.parameter} in {top.case_id})"]
    return [*lines, ""]


def conventions_table() -> pd.DataFrame:
    return pd.DataFrame([
        {"convention": c.name, "PyTorch": c.torch, "JAX / optax": c.jax,
         "reference": c.reference, "effect": c.effect, "alignment": c.alignment}
        for c in CONVENTIONS
    ])


def counts_table(outcomes: Sequence[CaseOutcome]) -> pd.DataFrame:
    """Pass/fail counts per pair (framework vs baseline or oracle) and dtype."""
    counts: dict[tuple[str, str], list[int]] = {}
    for outcome in outcomes:
        for d in outcome.checks:
            entry = counts.setdefault((d.pair, d.dtype), [0, 0])
            entry[0 if d.passed else 1] += 1
    return pd.DataFrame([
        {"pair": pair, "dtype": dtype, "passed": str(ok), "failed": str(bad)}
        for (pair, dtype), (ok, bad) in sorted(counts.items())
    ])


def worst_table(outcomes: Sequence[CaseOutcome], limit: int = 10) -> pd.DataFrame:
    """The checks closest to (or past) their tolerance."""
    checks = sorted((d for o in outcomes for d in o.checks), key=lambda d: -d.headroom)[:limit]
    return pd.DataFrame([
        {"case": d.case_id, "pair": d.pair, "quantity": f"{d.quantity} {d.parameter}",
         "observed / allowed": _eps_cell(d)}
        for d in checks
    ])


def render(
    outcomes: Sequence[CaseOutcome],
    xor_outcomes: Sequence[CaseOutcome],
    frameworks: Sequence[str],
    command: str,
    sweeps: Sequence[tuple[str, np.ndarray, int]] = (),
    audit: dict | None = None,
    plots: Sequence[str] = (),
    porting: Sequence = (),
) -> str:
    """The whole report as Markdown text (no timestamp: identical runs give identical text)."""
    all_outcomes = [*outcomes, *xor_outcomes]
    lines = ["# gradparity report", "", *_verdict_lines(all_outcomes, frameworks)]
    if audit and audit["non_ieee_float32"]:
        lines += ["**Warning: a non-IEEE float32 mode was active:** "
                  + "; ".join(audit["non_ieee_float32"]), ""]
    lines += [f"Reproduce with: `{command}`", ""]
    if plots:
        lines += ["Plots: " + " | ".join(f"[{name}]({name})" for name in plots), ""]
    lines += ["## Pass/fail counts", "", markdown_table(counts_table(all_outcomes)), ""]
    lines += ["## Worst offenders", "", markdown_table(worst_table(all_outcomes)), ""]
    lines += ["## Environment", ""]
    env = environment()
    for name in frameworks:
        availability = get_adapter(name).availability()
        if not availability.available:
            env[f"{name} adapter"] = f"unavailable: {availability.reason}"
    lines += [markdown_table(pd.DataFrame({"component": list(env),
                                           "version": list(env.values())})), ""]
    if audit:
        settings = audit["settings"]
        lines += ["## Numeric-mode audit", "",
                  markdown_table(pd.DataFrame({"setting": list(settings),
                                          "value": [str(v) for v in settings.values()]})), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    lines += ["## How to read this report", "", HOW_TO_READ, ""]
    lines += ["## Tolerances and headroom", "", *sections.headroom_lines(all_outcomes)]
    lines += ["## Summary", "", markdown_table(summary_table(all_outcomes, frameworks)), ""]
    errored = [o for o in all_outcomes if o.errors]
    if errored:
        lines += ["## Errors", "",
                  "An exception inside one implementation (or the case itself) is recorded "
                  "here and the run goes on; these cases count as failed.", ""]
        for outcome in errored:
            for name, trace in outcome.errors.items():
                lines += [f"### {outcome.case.id}: {name}", "", "```", trace, "```", ""]
    broken = sections.broken_lines(all_outcomes)
    if broken:
        lines += ["## Where it broke", "", *broken]
    oracle = sections.oracle_table(all_outcomes)
    if oracle is not None:
        lines += ["## float32 against the float64 oracle", "",
                  "Each float32 implementation against the NumPy reference run in float64 "
                  "from the same float32-rounded weights and data: its own largest error, "
                  "in float32 eps, and the quantity where it occurs.", "",
                  markdown_table(oracle), ""]
    fd = sections.finite_difference_table(all_outcomes)
    if fd is not None:
        lines += ["## The reference against finite differences", "",
                  "Central differences in float64, no framework involved; entries whose "
                  "stencil crosses a relu kink are left out.", "", markdown_table(fd), ""]
    trajectories = sections.trajectory_table(all_outcomes)
    if trajectories is not None:
        lines += ["## Trajectories: free-running and teacher-forced", "",
                  "Largest parameter error against the NumPy reference, in eps. Free-running: "
                  "each implementation follows its own parameters. Teacher-forced: every step "
                  "starts from the reference's parameters, so it measures the error of one "
                  "update; the gap between the two is accumulated drift.", "",
                  markdown_table(trajectories), ""]
    if sweeps:
        lines += ["## Seed sweep", "", markdown_table(sections.seed_sweep_table(sweeps)), ""]
    lines += ["## Conventions", "",
              "Where PyTorch and JAX/optax define the same thing differently, and how this run "
              "aligned them (gradparity.adapters.conventions).", "",
              markdown_table(conventions_table()), ""]
    if porting:
        lines += ["## Porting differences (library defaults)", "",
                  "Each named case run in PyTorch with torch's defaults and in JAX with "
                  "optax's / jax.nn's defaults (gradparity.harness.porting.LIBRARY_DEFAULTS): the "
                  "largest normwise difference between the two, the conventions whose defaults "
                  "differ, and the verdict. *explained*: the reference configured once with "
                  "each library's convention reproduces both results; *unexplained*: it does "
                  "not, or no catalogued convention differs.", "",
                  sections.porting_table(porting), ""]
    lines += ["## Seed example: XOR", ""]
    for outcome in xor_outcomes:
        case = outcome.case
        lines += [
            f"### {case.id}", "",
            f"2-10-1 network, sigmoid hidden and output units, mean squared error, SGD with "
            f"learning rate {case.hparams['lr']:g}, {case.steps} full-batch steps on the 4 XOR "
            f"points, {case.dtype}; every implementation starts from the same weights. "
            f"Result: {'all implementations agree' if outcome.passed else '**DISAGREEMENT**'}.",
            "", markdown_table(xor_table(outcome)), "",
        ]
    lines += ["## Per-parameter differences", "",
              "Each cell: observed / allowed, in eps, and their ratio (the headroom).", ""]
    for outcome in all_outcomes:
        lines += [f"### {outcome.case.id}", ""]
        for name, reason in outcome.skipped.items():
            lines += [f"- {name} skipped: {reason}"]
        if outcome.skipped:
            lines += [""]
        if outcome.checks:
            lines += [markdown_table(parameter_table(outcome)), ""]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["render"]
