"""Everything ``gradparity run`` writes: REPORT.md, DETAILS.md, results.json, checks.csv and
the plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gradparity.harness.audit import numeric_audit
from gradparity.harness.porting import PortingRow
from gradparity.harness.runner import CaseOutcome
from gradparity.report.details import render_details
from gradparity.report.document import DETAILS, render
from gradparity.report.files import write_report
from gradparity.report.plots import write_plots
from gradparity.report.results import build_results, write_results


def write_outputs(outcomes: Sequence[CaseOutcome], n_main: int, frameworks: Sequence[str],
                  command: str, sweeps: Sequence, out: Path, plots: bool = True,
                  porting: Sequence[PortingRow] = (), device: str = "cpu") -> None:
    """REPORT.md, DETAILS.md, results.json, checks.csv and the plots, all into ``out``. The first
    ``n_main`` outcomes are the matrix, the rest the XOR seed example."""
    audit = numeric_audit(device)
    images = [p.name for p in write_plots(outcomes, frameworks, out)] if plots else []
    text = render(outcomes[:n_main], outcomes[n_main:], frameworks, command, sweeps,
                  audit=audit, plots=images, porting=porting)
    write_report(text, out)
    write_report(render_details(outcomes[:n_main], outcomes[n_main:], frameworks, sweeps), out,
                 name=DETAILS)
    write_results(build_results(outcomes, frameworks, command, audit, porting=porting), out)
