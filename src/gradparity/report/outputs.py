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
from gradparity.report.records import CaseRecord, case_record, write_records


def write_outputs(outcomes: Sequence[CaseOutcome], n_main: int, frameworks: Sequence[str],
                  command: str, sweeps: Sequence, out: Path, plots: bool = True,
                  porting: Sequence[PortingRow] = (), device: str = "cpu",
                  records: Sequence[CaseRecord] | None = None) -> None:
    """REPORT.md, DETAILS.md, results.json, checks.csv and the plots, all into ``out``. The first
    ``n_main`` outcomes are the matrix, the rest the XOR seed example. ``records``: each
    outcome's :func:`~gradparity.report.records.case_record`, where already made."""
    if records is None:
        records = [case_record(outcome) for outcome in outcomes]
    audit = numeric_audit(device)
    images = [p.name for p in write_plots(outcomes, frameworks, out)] if plots else []
    text = render(outcomes[:n_main], outcomes[n_main:], frameworks, command, sweeps,
                  audit=audit, plots=images, porting=porting)
    write_report(text, out)
    write_report(render_details(outcomes[:n_main], outcomes[n_main:], frameworks, sweeps,
                                [record.details for record in records]), out, name=DETAILS)
    write_records(records, frameworks, command, audit, out, porting=porting)
