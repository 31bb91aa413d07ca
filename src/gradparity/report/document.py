"""The Markdown report (REPORT.md): the verdict in plain words, framework disagreement and
distance from the float64 oracle as separate headlines, what to look at, summaries by
network, the XOR seed example, environment. Per-case detail is in DETAILS.md
(:mod:`gradparity.report.details`).

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
from gradparity.harness.runner import FINITE_DIFFERENCES, ORACLE, CaseOutcome, framework_pairs
from gradparity.report import sections
from gradparity.report.markdown import markdown_table
from gradparity.spec.case import DTYPES

XOR_REPORTED_STEPS = (0, 1, 10, 100, 500, 1000)
DETAILS = "DETAILS.md"
"""The file beside REPORT.md with every case's detail."""

HOW_TO_READ = """\
Every implementation starts from the same NumPy-generated weights and data. For
each pair (*framework* vs *baseline*) and each quantity (the loss, every
parameter gradient, the parameters after step 1 and after the last step, and the
loss after every step) the report gives the **normwise relative difference**
`max|a - b| / max|b|`, also in units of the dtype's machine epsilon (*eps*). A
check passes when that is at most its tolerance, derived for that case from a
rounding-error model (docs: *Tolerances*); *ratio* (headroom) is observed / allowed.
The details file shows, per case and pair, the check with the largest ratio, and
every parameter of every case."""


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


def parameter_rows(outcome: CaseOutcome) -> tuple[list[str], list[list[str]]]:
    """One row per (quantity, parameter): the normwise difference per pair ("-" where a
    pair has no such check), and max |diff|; the columns and the rows."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    worst_abs: dict[tuple[str, str], float] = {}
    for difference in outcome.checks:
        key = (difference.quantity, difference.parameter)
        row = rows.setdefault(key, {"quantity": key[0], "parameter": key[1]})
        row[difference.pair] = _eps_cell(difference)
        worst_abs[key] = max(worst_abs.get(key, 0.0), difference.max_abs)
    for key, row in rows.items():
        row["max abs diff (any pair)"] = f"{worst_abs[key]:.2e}"
    # every column where some row first has it (a table of the rows as dicts)
    columns = list(dict.fromkeys(column for row in rows.values() for column in row))
    return columns, [[row.get(c, "-") for c in columns] for row in rows.values()]


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


def _plural(count: int, word: str) -> str:
    """``1 case``, ``2 cases``, ``25,548 checks``: the count with the word in the right
    number."""
    return f"{count:,} {word}" + ("" if count == 1 else "es" if word.endswith("s") else "s")


def _between_frameworks(outcome: CaseOutcome, frameworks: Sequence[str]) -> list[Difference]:
    """The checks of one implementation against another (not against an oracle)."""
    return [d for d in outcome.checks if d.baseline in frameworks]


def _verdict_lines(all_outcomes: Sequence[CaseOutcome], frameworks: Sequence[str]) -> list:
    checks = [d for outcome in all_outcomes for d in outcome.checks]
    failed_cases = [o.case.id for o in all_outcomes if not o.passed]
    families = sorted({o.case.network_family for o in all_outcomes})
    if not any(o.compared for o in all_outcomes):
        verdict = ("**Verdict: NOTHING WAS COMPARED**: no case produced a pair of results or "
                   "an oracle check (see skipped frameworks and errors below)")
    elif failed_cases:
        verdict = (f"**Verdict: DISAGREEMENT in {len(failed_cases)} of "
                   f"{_plural(len(all_outcomes), 'case')}**")
    else:
        verdict = f"**Verdict: all {_plural(len(all_outcomes), 'case')} agree**"
    lines = [verdict, "",
             f"What was compared: {', '.join(frameworks)} on {_plural(len(all_outcomes), 'case')}"
             f" ({', '.join(families)}), from the same NumPy-drawn weights and data: the loss, "
             f"every gradient and backward signal, and the parameters, optimizer state and "
             f"running statistics after every step ({_plural(len(checks), 'check')}, each "
             "against a tolerance derived for that case). A check passes when the normwise "
             "relative difference max|a - b| / max|b| is within its tolerance; *ratio* is "
             "observed / allowed (below 1 passes).", ""]
    errors = [(o.case.id, name) for o in all_outcomes for name in o.errors]
    if errors:
        lines += [f"**{_plural(len(errors), 'error')}** in "
                  f"{_plural(len({c for c, _ in errors}), 'case')}: "
                  + ", ".join(f"{name} in {case}" for case, name in errors[:5])
                  + (" ..." if len(errors) > 5 else "") + " (see *Errors*)", ""]
    unavailable = sorted({f"{name}: {reason}" for o in all_outcomes
                          for name, reason in o.skipped.items()
                          if not reason.startswith("not expressible")})
    if unavailable:
        lines += ["**Not checked** (framework unavailable): " + "; ".join(unavailable), ""]
    lines += ["## Framework disagreement", "",
              "Implementations against each other (torch and jax against the NumPy reference, "
              "jax against torch):", ""]
    for dtype in DTYPES:
        pairs = [d for o in all_outcomes for d in _between_frameworks(o, frameworks)
                 if d.dtype == dtype]
        if pairs:
            top = max(pairs, key=lambda d: d.headroom)
            failing = sum(not d.passed for d in pairs)
            lines += [f"- {dtype}: {_plural(len(pairs), 'check')}, "
                      f"{'**' + str(failing) + ' failed**' if failing else 'none failed'}; "
                      f"largest ratio {top.headroom:.3f}: {top.pair}, {top.quantity} of "
                      f"{top.parameter} in `{top.case_id}` ({format_eps(top.normwise_eps)})"]
    lines += ["", "## Distance from the float64 oracle", "",
              "How far float32 arithmetic itself is from exact: each float32 implementation "
              "(the NumPy reference too) against the reference rerun in float64 from the same "
              "float32-rounded inputs. Every implementation has this error; it is not a "
              "disagreement. Finite differences check the reference's gradients in float64.",
              ""]
    oracle = [d for o in all_outcomes for d in o.oracle_differences if d.baseline == ORACLE]
    for name in frameworks:
        mine = [d for d in oracle if d.framework == name]
        if mine:
            top = max(mine, key=lambda d: d.normwise)
            within = ("all within tolerance" if all(d.passed for d in mine)
                      else "**some beyond tolerance**")
            lines += [f"- {name}: furthest {format_eps(top.normwise_eps)} ({top.quantity} of "
                      f"{top.parameter} in `{top.case_id}`), {within}"]
    fd = [d for o in all_outcomes for d in o.oracle_differences
          if d.baseline == FINITE_DIFFERENCES]
    if fd:
        lines += [f"- finite differences: {_plural(len(fd), 'check')} of the reference, "
                  f"{sum(not d.passed for d in fd)} failed"]
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


def family_table(outcomes: Sequence[CaseOutcome], frameworks: Sequence[str]) -> pd.DataFrame:
    """One row per network and dtype: cases, how many agree, the largest ratio between
    frameworks and the largest distance from the float64 oracle."""
    groups: dict[tuple[str, str], list[CaseOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.case.network_family, outcome.case.dtype), []).append(outcome)
    rows = []
    for (family, dtype), members in groups.items():
        pairs = [d for o in members for d in _between_frameworks(o, frameworks)]
        oracle = [d for o in members for d in o.oracle_differences if d.baseline == ORACLE]
        rows.append({
            "network": family, "dtype": dtype, "cases": str(len(members)),
            "agree": f"{sum(o.passed for o in members)}/{len(members)}",
            "largest ratio between frameworks": (f"{max(d.headroom for d in pairs):.3f}"
                                                 if pairs else "-"),
            "furthest from the float64 oracle": (format_eps(max(d.normwise_eps for d in oracle))
                                                 if oracle else "-"),
        })
    return pd.DataFrame(rows)


def _not_expressible(outcomes: Sequence[CaseOutcome]) -> list[str]:
    reasons: dict[tuple[str, str], int] = {}
    for outcome in outcomes:
        for name, reason in outcome.skipped.items():
            if reason.startswith("not expressible"):
                why = reason.split(": ", 1)[-1]
                reasons[(name, why)] = reasons.get((name, why), 0) + 1
    return [f"- {name} skipped in {_plural(count, 'case')}: {why}"
            for (name, why), count in sorted(reasons.items())]


def render(
    outcomes: Sequence[CaseOutcome],
    xor_outcomes: Sequence[CaseOutcome],
    frameworks: Sequence[str],
    command: str,
    sweeps: Sequence[tuple[str, np.ndarray, int]] = (),
    audit: dict | None = None,
    plots: Sequence[str] = (),
    porting: Sequence = (),
    details: str = DETAILS,
) -> str:
    """REPORT.md as Markdown text: the verdict in plain words, the two headlines, what to
    look at, the summaries; per-case detail is in ``details`` (:func:`render_details`).
    No timestamp: identical runs give identical text."""
    all_outcomes = [*outcomes, *xor_outcomes]
    lines = ["# gradparity report", "", *_verdict_lines(all_outcomes, frameworks)]
    if audit and audit["non_ieee_float32"]:
        lines += ["**Warning: a non-IEEE float32 mode was active:** "
                  + "; ".join(audit["non_ieee_float32"]), ""]
    lines += [f"Reproduce with: `{command}`. Every case, check and parameter: [{details}]"
              f"({details}); machine-readable: `results.json`, `checks.csv`.", ""]
    lines += ["## What to look at", ""]
    broken = sections.broken_lines([o for o in all_outcomes if not o.passed][:10])
    if broken:
        lines += ["Where it broke (the first failing cases; all of them in the details):", "",
                  *broken]
    if any(o.errors for o in all_outcomes):
        lines += [f"Tracebacks of the errors: [{details}]({details}), *Errors*.", ""]
    lines += [*sections.headroom_lines(all_outcomes, limit=5)]
    skipped = _not_expressible(all_outcomes)
    if skipped:
        lines += ["Not expressible in a framework (never emulated; the other pairs still "
                  "compare):", "", *skipped, ""]
    lines += ["The checks closest to their tolerance:", "",
              markdown_table(worst_table(all_outcomes, limit=8)), ""]
    lines += ["## Summary by network", "", markdown_table(family_table(all_outcomes, frameworks)),
              "", "## Pass/fail counts", "", markdown_table(counts_table(all_outcomes)), ""]
    if porting:
        lines += ["## Porting differences (library defaults)", "",
                  "Each named case run in PyTorch with torch's defaults and in JAX with "
                  "optax's / jax.nn's / Flax's defaults (gradparity.harness.porting."
                  "LIBRARY_DEFAULTS): the largest normwise difference between the two, the "
                  "conventions whose defaults differ, and the verdict. *explained*: the "
                  "reference configured once with each library's convention reproduces both "
                  "results; *unexplained*: it does not, or no catalogued convention differs.",
                  "", sections.porting_table(porting), ""]
    if sweeps:
        failing = [(case_id, failures, len(ratios)) for case_id, ratios, failures in sweeps
                   if failures]
        worst = max(float(ratios.max()) for _, ratios, _ in sweeps)
        lines += ["## Seed sweep", "",
                  f"{_plural(len(sweeps), 'case')} over {len(sweeps[0][1])} seeds each: "
                  f"{_plural(len(failing), 'case')} failed on some seed; largest ratio "
                  f"{worst:.3f}. Per case: [{details}]({details}), *Seed sweep*.", ""]
        lines += [f"- `{case_id}`: {failures}/{seeds} seeds failed"
                  for case_id, failures, seeds in failing[:10]]
        lines += [""] if failing else []
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
    if plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
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
    lines += ["## How to read this report", "", HOW_TO_READ, ""]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["render"]
