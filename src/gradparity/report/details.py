"""DETAILS.md: everything per case that REPORT.md summarises (the worst check per case and
pair, the tolerance audit, errors, where each failing case broke, the float64 oracle,
finite differences, trajectories, the seed sweep, the conventions catalogue and every
parameter of every case)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradparity.harness.runner import CaseOutcome
from gradparity.report import sections
from gradparity.report.document import conventions_table, parameter_rows, summary_table
from gradparity.report.markdown import markdown_rows, markdown_table


def render_details(outcomes: Sequence[CaseOutcome], xor_outcomes: Sequence[CaseOutcome],
                   frameworks: Sequence[str],
                   sweeps: Sequence[tuple[str, np.ndarray, int]] = (),
                   case_sections: Sequence[str] | None = None) -> str:
    """DETAILS.md as Markdown text (no timestamp: identical runs give identical text).

    ``case_sections``: each case's :func:`case_section`, in the order of ``outcomes``
    then ``xor_outcomes``, where already made (as each outcome arrived); else made here."""
    all_outcomes = [*outcomes, *xor_outcomes]
    lines = ["# gradparity report: details", "",
             "Every case of the run behind [REPORT.md](REPORT.md). Each cell: observed / "
             "allowed, in eps, and their ratio (the headroom).", ""]
    lines += ["## Summary", "", markdown_table(summary_table(all_outcomes, frameworks)), ""]
    lines += ["## Tolerances and headroom", "", *sections.headroom_lines(all_outcomes,
                                                                          limit=10**6)]
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
                  "Ridders' extrapolated central differences in float64, no framework "
                  "involved; entries whose stencil crosses a kink are left out.", "",
                  markdown_table(fd), ""]
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
              "Where PyTorch and JAX/optax/Flax define the same thing differently, and how "
              "this run aligned them (gradparity.adapters.conventions).", "",
              markdown_table(conventions_table()), ""]
    lines += ["## Per-parameter differences", ""]
    lines += (list(case_sections) if case_sections is not None
              else [case_section(outcome) for outcome in all_outcomes])
    return "\n".join(lines).rstrip() + "\n"


def case_section(outcome: CaseOutcome) -> str:
    """One case's section of "Per-parameter differences": its skipped frameworks and every
    check's observed / allowed per pair; it ends with an empty line."""
    lines = [f"### {outcome.case.id}", ""]
    for name, reason in outcome.skipped.items():
        lines += [f"- {name} skipped: {reason}"]
    if outcome.skipped:
        lines += [""]
    if outcome.checks:
        lines += [markdown_rows(*parameter_rows(outcome)), ""]
    return "\n".join(lines)
