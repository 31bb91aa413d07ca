"""Report sections about who is right and where it broke (float64 oracle, finite
differences, trajectories, localisation, tolerance audit, seed sweeps)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradparity.adapters.conventions import BY_NAME
from gradparity.compare.metrics import Difference, format_eps, machine_epsilon
from gradparity.compare.tolerances import LOOSE_FACTOR
from gradparity.harness.porting import PortingRow
from gradparity.harness.runner import FINITE_DIFFERENCES, ORACLE, CaseOutcome


def oracle_table(outcomes: Sequence[CaseOutcome]) -> pd.DataFrame | None:
    """float32 cases: each implementation's largest error against the float64 oracle."""
    rows = []
    for outcome in outcomes:
        against = [d for d in outcome.oracle_differences if d.baseline == ORACLE]
        if not against:
            continue
        row = {"case": outcome.case.id}
        for name in outcome.results:
            mine = [d for d in against if d.framework == name]
            worst = max(mine, key=lambda d: d.normwise)
            row[name] = f"{format_eps(worst.normwise_eps)} ({worst.quantity} {worst.parameter})"
        worst = outcome.worst_against_oracle()
        row["furthest from the oracle"] = worst.framework if worst and worst.normwise else "-"
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def finite_difference_table(outcomes: Sequence[CaseOutcome]) -> pd.DataFrame | None:
    rows = []
    for outcome in outcomes:
        checks = [d for d in outcome.oracle_differences if d.baseline == FINITE_DIFFERENCES]
        if not checks:
            continue
        worst = max(checks, key=lambda d: d.normwise)
        rows.append({
            "case": outcome.case.id,
            "checked": ", ".join(d.parameter for d in checks),
            "worst normwise": f"{worst.normwise:.1e} ({worst.parameter})",
            "tolerance": f"{worst.tolerance:.0e}",
            "result": "pass" if all(d.passed for d in checks) else "**FAIL**",
        })
    return pd.DataFrame(rows) if rows else None


def trajectory_table(outcomes: Sequence[CaseOutcome]) -> pd.DataFrame | None:
    rows = []
    for outcome in outcomes:
        for name, errors in outcome.trajectories.items():
            rows.append({
                "case": outcome.case.id,
                "framework": name,
                "steps": str(len(errors.free_running)),
                "free-running, step 1": format_eps(errors.free_running[0]),
                "free-running, last step": format_eps(errors.free_running[-1]),
                "teacher-forced, worst step": format_eps(max(errors.teacher_forced)),
                "free-running growth per step": f"x{errors.growth_per_step:.4f}",
            })
    return pd.DataFrame(rows) if rows else None


def broken_lines(outcomes: Sequence[CaseOutcome]) -> list[str]:
    """For every failing case: where the backward chain first broke, rounding or bug."""
    lines = []
    for outcome in outcomes:
        if outcome.passed:
            continue
        lines.append(f"### {outcome.case.id}")
        lines.append("")
        for (framework, baseline), (step, layer) in outcome.localisation.items():
            lines.append(f"- {framework} vs {baseline}: the backward chain first disagrees "
                         f"at step {step}, layer {layer} ({signal_name(outcome.case, layer)}"
                         f"; backward runs from layer {outcome.case.num_layers} down)")
        for d in [d for d in outcome.checks if not d.passed][:12]:
            verdict = outcome.verdicts.get((d.framework, d.baseline, d.quantity, d.parameter),
                                           "")
            lines.append(f"- {d.message()}" + (f"; **{verdict}**" if verdict else ""))
        lines.append("")
    return lines


def signal_name(case, layer: int) -> str:
    """The backward signal of layer ``layer`` (1-based): dL/dz2, or dL/d(conv1 output)."""
    if case.is_sequence:
        return f"dL/d(output of {case.network().stack.names[layer - 1]})"
    return f"dL/dz{layer}"


def loose_checks(outcomes: Sequence[CaseOutcome]) -> list[Difference]:
    """Checks whose tolerance exceeds 1000x the observed difference.

    An observed difference below one eps is counted as one eps: values are
    quantised at the last place, so no tolerance can be tighter than a single
    rounding. (Reason written into the report.)
    """
    flagged = []
    for outcome in outcomes:
        for d in outcome.checks:
            if d.baseline == FINITE_DIFFERENCES or d.note or not d.determined:
                continue
            observed = max(d.normwise_eps, 1.0)
            if d.tolerance / machine_epsilon(d.dtype) > LOOSE_FACTOR * observed:
                flagged.append(d)
    return flagged


def undetermined_checks(outcomes: Sequence[CaseOutcome]) -> list[Difference]:
    """Checks that are not determined in their dtype (``Difference.determined``): the
    tolerance model lets rounding move the quantity by its own size, so they are not
    judged."""
    return [d for outcome in outcomes for d in outcome.checks
            if not d.determined]


def undetermined_lines(outcomes: Sequence[CaseOutcome], limit: int = 20) -> list[str]:
    """The report's paragraph on checks that are not determined (none: no lines)."""
    found = undetermined_checks(outcomes)
    if not found:
        return []
    over = sum(d.normwise > d.tolerance for d in found)
    lines = [f"**{len(found)} {'check is' if len(found) == 1 else 'checks are'} not "
             "determined in their dtype and not judged**: the tolerance model finds that "
             "rounding alone moves each of them by its own size (values made of rounding "
             "noise, such as gradients through saturated units and RMSprop's averages of "
             "their squares), so no difference there can be told from rounding, and a bug "
             f"there could not be either ({over} of them differ by more than their tolerance). "
             "Every other check, earlier steps and the first pass included, is judged as "
             "usual:"]
    return [*lines, *_bulleted([d.message() for d in found], limit, "in the details"), ""]


def headroom_lines(outcomes: Sequence[CaseOutcome], limit: int = 20) -> list[str]:
    checks = [d for o in outcomes for d in o.checks if not d.note]
    if not checks:
        return []
    ratios = np.array([d.headroom for d in checks])
    slack = np.array([d.tolerance / machine_epsilon(d.dtype) / max(d.normwise_eps, 1.0)
                      for d in checks if d.baseline != FINITE_DIFFERENCES] or [np.nan])
    flagged = loose_checks(outcomes)
    lines = [
        f"Every check has a derived tolerance (docs: *Tolerances*). Over "
        f"{len(checks)} checks the observed/allowed ratio (headroom) is: median "
        f"{np.median(ratios):.3f}, 95th percentile {np.quantile(ratios, 0.95):.3f}, largest "
        f"{ratios.max():.3f}. Allowed/observed (observed floored at 1 eps, because a "
        f"difference cannot be smaller than one rounding): median {np.median(slack):.0f}, "
        f"largest {slack.max():.0f}.",
        "",
    ]
    if flagged:
        lines.append(f"**{len(flagged)} {'check has' if len(flagged) == 1 else 'checks have'}"
                     f" a tolerance more than {LOOSE_FACTOR:.0f}x looser than observed** (a "
                     "loose tolerance could hide a bug):")
        lines += _bulleted([d.message() for d in flagged], limit, "in the details")
    else:
        lines.append(f"No check has a tolerance more than {LOOSE_FACTOR:.0f}x looser than "
                     "what was observed (finite-difference checks use the fixed tolerance "
                     "stated in their table: the stencil's own error sets it, not rounding).")
    return [*lines, "", *undetermined_lines(outcomes, limit), *kink_lines(outcomes, limit)]


def kink_lines(outcomes: Sequence[CaseOutcome], limit: int = 20) -> list[str]:
    """The cases whose trajectory rounding may take either side of a kink: each of their
    checks after that pass allows the other branch (docs: Tolerances, Kinks within
    rounding)."""
    kinked = [o for o in outcomes if o.kink_pass is not None]
    if not kinked:
        return []
    lines = [f"**{len(kinked)} {'case has' if len(kinked) == 1 else 'cases have'} a "
             "value within rounding of an activation's kink or a max-pooling tie**: "
             "rounding may take either "
             "side, so from the step after that pass every check allows the distance of a "
             "trajectory that takes the other side (a smaller bug in those steps would "
             "pass; the gradients before it are held as usual):"]
    lines += _bulleted([f"{o.case.id}: from pass {o.kink_pass}" for o in kinked], limit,
                       "in results.json (kink_pass)")
    return [*lines, ""]


def _bulleted(texts: Sequence[str], limit: int, rest: str) -> list[str]:
    """The first ``limit`` texts as list items, then how many more there are and where."""
    items = [f"- {text}" for text in texts[:limit]]
    if len(texts) > limit:
        items.append(f"- ... {len(texts) - limit} more {rest}")
    return items


def seed_sweep_table(sweeps: Sequence[tuple[str, np.ndarray, int]]) -> pd.DataFrame:
    rows = []
    for case_id, ratios, failures in sweeps:
        rows.append({
            "case": case_id, "seeds": str(len(ratios)),
            "failure rate": f"{failures}/{len(ratios)}",
            "observed/allowed: median": f"{np.median(ratios):.3f}",
            "p95": f"{np.quantile(ratios, 0.95):.3f}",
            "max": f"{ratios.max():.3f}",
        })
    return pd.DataFrame(rows)


def porting_table(rows: Sequence[PortingRow]) -> str:
    """The Markdown table of the report's "Porting differences" section."""
    lines = ["| named case | gradient | after 1 step | after N steps | state (worst step) "
             "| verdict | conventions |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        def cell(value: float) -> str:
            return "n/a" if np.isnan(value) else f"{value:.2e}"
        names = ", ".join(f"`{name}`" for name in row.conventions) or "none"
        lines.append(f"| `{row.case.id}` | {cell(row.gradient)} | {cell(row.after_first)} | "
                     f"{cell(row.after_last)} | {cell(row.state)} | {row.verdict} "
                     f"| {names} |")
    effects = sorted({name for row in rows for name in row.conventions})
    if effects:
        lines += ["", "What each convention changes:", ""]
        lines += [f"- `{name}`: {BY_NAME[name].effect}" for name in effects]
    return "\n".join(lines)
