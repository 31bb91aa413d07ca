"""The verdict of ``gradparity check`` in plain text: one line, and per failing case what
failed and what it looks like (the CLI, the pytest plugin and the report print these)."""

from __future__ import annotations

from gradparity.check.verifier import CaseCheck, CheckReport


def verdict_line(report: CheckReport) -> str:
    checked, failures = report.checked, report.failures()
    skipped = len(report.cases) - len(checked)
    if not checked:
        return f"FAIL: no case was checked ({skipped} not handled by the implementation)"
    # checks whose rounding can move them by their own size are not judged: say so
    undetermined = sum(not d.determined for c in checked for d in c.differences)
    aside = (f"; {undetermined} check{'s' if undetermined != 1 else ''} not determined in "
             "their dtype, not judged" if undetermined else "")
    if failures:
        return (f"FAIL: {len(failures)} of {len(checked)} checked cases disagree "
                f"({skipped} not handled{aside})")
    return f"PASS: all {len(checked)} checked cases agree ({skipped} not handled{aside})"


def failure_details(check: CaseCheck, limit: int = 6) -> list[str]:
    """Lines that say what failed and what it looks like."""
    lines = [f"{check.case.id}: {check.status}"]
    if check.message:
        lines.append(f"  {check.message}")
    for finding in check.findings:
        lines.append(f"  diagnosis: {finding}")
    failed = [d for d in check.differences if not d.passed]
    for difference in failed[:limit]:
        lines.append(f"  {difference.message()}")
    if len(failed) > limit:
        lines.append(f"  ... {len(failed) - limit} more failed checks")
    if check.details:
        lines += ["  traceback:", *("    " + line for line in check.details.splitlines())]
    return lines
