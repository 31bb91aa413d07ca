"""Text and Markdown output for ``gradparity check`` and the mutation kill matrix."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from gradparity.check.mutants import Mutant
from gradparity.check.summary import failure_details, verdict_line
from gradparity.check.verifier import CaseCheck, CheckReport
from gradparity.compare.metrics import format_eps
from gradparity.harness.audit import environment
from gradparity.report.markdown import markdown_table

KILL_COLUMNS = (
    "loss vs numpy", "gradient vs numpy", "gradient vs torch", "gradient vs jax",
    "gradient vs finite differences", "trajectory vs numpy", "trajectory vs torch",
    "trajectory vs jax", "probe", "error",
)


def _worst_cell(check: CaseCheck) -> str:
    worst = check.worst
    if worst is None:
        return ""
    if worst.note:
        return f"{worst.pair}, {worst.quantity} {worst.parameter}: {worst.note}"
    return (f"{worst.pair}, {worst.quantity} {worst.parameter}: {worst.normwise:.2e} "
            f"({format_eps(worst.normwise_eps)}; allowed {worst.tolerance:.1e})")


def verdict_table(report: CheckReport) -> pd.DataFrame:
    """One row per case: status, the check with the largest difference, the first finding."""
    rows = []
    for check in report.cases:
        first = next((f for f in check.findings if f.kind != "localisation"), None)
        rows.append({
            "case": check.case.id,
            "status": check.status if check.status == "pass" else f"**{check.status}**",
            "largest difference": _worst_cell(check),
            "diagnosis": str(first) if first else check.message,
        })
    return pd.DataFrame(rows)


def render_check(report: CheckReport, baselines: Sequence[str], command: str) -> str:
    """The Markdown report of one ``gradparity check`` run."""
    lines = [f"# gradparity check: `{report.plugin}`", "",
             f"**{verdict_line(report)}**", "",
             f"Compared with: {', '.join(baselines)}.", "",
             f"Reproduce with: `{command}`", "", "## Environment", ""]
    env = environment()
    lines += [markdown_table(pd.DataFrame({"component": list(env), "version": list(env.values())})),
              "", "## Cases", "", markdown_table(verdict_table(report)), ""]
    failures = report.failures()
    if failures:
        lines += ["## Failures", ""]
        for check in failures:
            lines += ["```", *failure_details(check, limit=20), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def kill_matrix(results: Sequence[tuple[Mutant, CheckReport]]) -> pd.DataFrame:
    """Mutant x check: which checks caught each mutant, and the diagnosis given."""
    rows = []
    for mutant, report in results:
        caught: set[str] = set()
        for check in report.cases:
            caught |= check.caught_by()
        diagnosis = next(
            (str(f) for c in report.failures() for f in c.findings
             if mutant.expected_kind in f.kind.split("|")), "")
        row = {"mutant": mutant.name, "caught": "yes" if report.exit_code == 1 else "**NO**"}
        row.update({column: "x" if column in caught else "" for column in KILL_COLUMNS})
        row["cases failed"] = f"{len(report.failures())}/{len(report.checked)}"
        row["diagnosis (first matching)"] = diagnosis or "**none of the expected kind**"
        rows.append(row)
    return pd.DataFrame(rows)


def render_kill_matrix(results: Sequence[tuple[Mutant, CheckReport]], command: str) -> str:
    caught = sum(report.exit_code == 1 for _, report in results)
    diagnosed = sum(
        any(m.expected_kind in f.kind.split("|") for c in r.failures() for f in c.findings)
        for m, r in results
    )
    lines = [
        "# gradparity mutation catalogue: kill matrix", "",
        f"**Detection rate: {caught}/{len(results)} mutants caught "
        f"({100 * caught / max(len(results), 1):.0f}%), {diagnosed}/{len(results)} with the "
        "expected diagnosis.**", "",
        "Each mutant is the textbook implementation with one realistic bug "
        "(`src/gradparity/mutants.py`), checked on the default `gradparity check` matrix. "
        "An `x` marks a check that failed for at least one case.", "",
        f"Reproduce with: `{command}`", "",
        markdown_table(kill_matrix(results)), "",
        "## The mutants", "",
        markdown_table(pd.DataFrame([{"mutant": m.name, "bug": m.description}
                                for m, _ in results])), "",
    ]
    return "\n".join(lines)
