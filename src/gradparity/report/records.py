"""Each case's share of the written files, made as its outcome arrives.

``gradparity run`` receives the outcomes one at a time while later cases still run. It
turns each into a :class:`CaseRecord` then: the case's object of ``results.json`` and its
rows of ``checks.csv`` as text, and its section of DETAILS.md. What is left once the last
case is in is joining text, instead of formatting every check of the run while the
workers sit idle (75,000 checks of ``examples/parallel_520.toml``: about 2 s, see
docs/speed.md). The files are the same bytes as ``results.json`` dumped whole from
:func:`~gradparity.report.results.build_results` and its
:func:`~gradparity.report.results.checks_csv` (``tests/report/test_records.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradparity.harness.outcome import CaseOutcome
from gradparity.report.details import case_section
from gradparity.report.files import write_report
from gradparity.report.results import (
    CaseTally,
    case_csv_rows,
    case_entry,
    checks_csv,
    csv_header,
    json_text,
    porting_entries,
    results_head,
)


@dataclass(frozen=True)
class CaseRecord:
    """One case, formatted for the files: what ``results.json``'s summary counts of it,
    its object of ``results.json`` (compact JSON), its rows of ``checks.csv`` (without
    the header) and its section of DETAILS.md."""

    tally: CaseTally
    json_text: str
    csv_rows: str
    details: str


def case_record(outcome: CaseOutcome) -> CaseRecord:
    """``outcome`` formatted for the files (see :class:`CaseRecord`)."""
    entry = case_entry(outcome)
    return CaseRecord(CaseTally.of(entry), json_text(entry), case_csv_rows(entry),
                      case_section(outcome))


def results_texts(records: Sequence[CaseRecord], frameworks: Sequence[str], command: str,
                  audit: dict[str, Any], timestamp: str | None = None,
                  porting: Sequence = ()) -> tuple[str, str]:
    """``results.json`` and ``checks.csv`` of a run, joined from its cases' records."""
    head = json_text(results_head(frameworks, command, audit, [r.tally for r in records],
                                  timestamp))
    # the head is a JSON object: its closing brace makes way for the cases and porting
    results = (head[:-1] + ',"cases":[' + ",".join(r.json_text for r in records)
               + '],"porting":' + json_text(porting_entries(porting)) + "}\n")
    if not any(r.tally.checks for r in records):  # no rows: the header-less empty table
        return results, checks_csv({"cases": []})
    return results, csv_header() + "".join(r.csv_rows for r in records)


def write_records(records: Sequence[CaseRecord], frameworks: Sequence[str], command: str,
                  audit: dict[str, Any], out_dir: Path, porting: Sequence = ()
                  ) -> tuple[Path, Path]:
    """``results.json`` and ``checks.csv`` into ``out_dir``, each written atomically."""
    results, checks = results_texts(records, frameworks, command, audit, porting=porting)
    return (write_report(results, out_dir, name="results.json"),
            write_report(checks, out_dir, name="checks.csv"))
