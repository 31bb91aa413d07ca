"""Machine-readable results (``results.json``, ``checks.csv``) and the numeric-mode audit.

``results.json`` schema (``schema_version`` 1):

    {
      "schema_version": 1,
      "run": {"timestamp": "...", "command": "..."},   # the only field that changes between
                                                        # two identical runs
      "audit": {"versions": {...}, "settings": {...}, "non_ieee_float32": [...]},
      "frameworks": ["numpy", "torch", "jax"],
      "summary": {"cases": N, "failed_cases": [...], "checks": N, "failed_checks": N},
      "cases": [
        {"id": ..., "case": {Case.to_dict()}, "passed": bool, "skipped": {framework: reason},
         "errors": {framework or "case": short traceback},
         "localisation": [{"framework", "baseline", "step", "layer"}],
         "trajectories": {framework: {"free_running": [eps...], "teacher_forced": [eps...]}},
         "kink_pass": the first pass with a value within rounding of a kink, or null,
         "checks": [CHECK, ...]}
      ],
      "porting": [{"case": id, "torch_case": id, "jax_case": id, "gradient", "after_first",
                   "after_last", "state", "conventions": [...], "verdict"}]  # library defaults
    }

    CHECK = {"framework", "baseline", "quantity", "parameter", "normwise", "normwise_eps",
             "tolerance", "headroom", "max_abs", "max_rel", "worst_index", "value",
             "baseline_value", "passed", "note", "verdict", "localisation"}

A failing check's ``verdict`` says what the harness concluded (rounding, a logic
difference, a catalogued convention); a check that is not determined in its dtype (its
tolerance lets rounding move it by its own size: ``passed`` true and ``headroom`` 0 whatever
its difference) has the verdict "not determined in <dtype>: not judged"; ``localisation``
where its pair's backward chain first broke ("step s, layer l"), empty where the backward
signals agree.

Non-finite numbers are written as the strings "inf", "-inf" and "nan".
``checks.csv`` has one row per check with the case id first:
``pandas.read_csv("reports/checks.csv")``.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from gradparity.harness.runner import CaseOutcome

SCHEMA_VERSION = 1
CHECK_FIELDS = (
    "framework", "baseline", "quantity", "parameter", "normwise", "normwise_eps", "tolerance",
    "headroom", "max_abs", "max_rel", "worst_index", "value", "baseline_value", "passed", "note",
)


def _number(value: float) -> float | str:
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _localised(outcome: CaseOutcome, difference) -> str:
    """Where the backward chain of a failing check's pair first broke, or ""."""
    if difference.passed:
        return ""
    where = outcome.localisation.get((difference.framework, difference.baseline))
    return "" if where is None else f"step {where[0]}, layer {where[1]}"


_FLOATS = (float, np.floating)


def _check(difference, verdict: str, localisation: str = "") -> dict[str, Any]:
    row = {}
    for field in CHECK_FIELDS:  # a run has tens of thousands of checks: the common case first
        value = getattr(difference, field)
        if isinstance(value, _FLOATS):
            value = float(value)
            if not math.isfinite(value):
                value = _number(value)
        elif field == "worst_index":
            value = list(value)
        row[field] = value
    row["verdict"] = verdict
    row["localisation"] = localisation
    return row


def case_entry(outcome: CaseOutcome) -> dict[str, Any]:
    """One case's object in ``results.json``'s ``cases`` list."""
    checks = [
        _check(d, outcome.verdicts.get((d.framework, d.baseline, d.quantity, d.parameter),
                                       "" if d.determined else
                                       f"not determined in {d.dtype}: not judged"),
               _localised(outcome, d))
        for d in outcome.checks
    ]
    return {
        "id": outcome.case.id,
        "case": outcome.case.to_dict(),
        "passed": outcome.passed,
        "skipped": dict(outcome.skipped),
        "errors": dict(outcome.errors),
        "localisation": [
            {"framework": f, "baseline": b, "step": step, "layer": layer}
            for (f, b), (step, layer) in outcome.localisation.items()
        ],
        "trajectories": {
            name: {"free_running": [_number(v) for v in errors.free_running],
                   "teacher_forced": [_number(v) for v in errors.teacher_forced]}
            for name, errors in outcome.trajectories.items()
        },
        "kink_pass": outcome.kink_pass,
        "checks": checks,
    }


def build_results(
    outcomes: Sequence[CaseOutcome], frameworks: Sequence[str], command: str,
    audit: dict[str, Any], timestamp: str | None = None, porting: Sequence = (),
) -> dict[str, Any]:
    """``results.json``'s content (see the module docstring)."""
    cases = [case_entry(outcome) for outcome in outcomes]
    tally = [CaseTally.of(entry) for entry in cases]
    return {**results_head(frameworks, command, audit, tally, timestamp), "cases": cases,
            "porting": porting_entries(porting)}


class CaseTally(NamedTuple):
    """What ``results.json``'s summary counts of one case."""

    case_id: str
    passed: bool
    checks: int
    failed_checks: int

    @classmethod
    def of(cls, entry: dict[str, Any]) -> CaseTally:
        """The tally of one :func:`case_entry`."""
        return cls(entry["id"], entry["passed"], len(entry["checks"]),
                   sum(not check["passed"] for check in entry["checks"]))


def results_head(frameworks: Sequence[str], command: str, audit: dict[str, Any],
                 cases: Sequence[CaseTally], timestamp: str | None = None) -> dict[str, Any]:
    """``results.json`` before its ``cases``: the schema, the run, the audit, the
    frameworks and the summary of ``cases``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"timestamp": timestamp or datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"), "command": command},
        "audit": audit,
        "frameworks": list(frameworks),
        "summary": {
            "cases": len(cases),
            "failed_cases": [c.case_id for c in cases if not c.passed],
            "checks": sum(c.checks for c in cases),
            "failed_checks": sum(c.failed_checks for c in cases),
        },
    }


def porting_entries(porting: Sequence) -> list[dict[str, Any]]:
    """``results.json``'s ``porting`` list: one entry per row of the porting table."""
    return [
        {"case": row.case.id, "torch_case": row.torch_case.id, "jax_case": row.jax_case.id,
         "gradient": _number(row.gradient), "after_first": _number(row.after_first),
         "after_last": _number(row.after_last),
         "state": _number(row.state),
         "conventions": list(row.conventions),
         "verdict": row.verdict}
        for row in porting
    ]


def checks_frame(results: dict[str, Any]) -> pd.DataFrame:
    """One row per check, the case id first (the CSV's content)."""
    rows = [{"case": case["id"], "dtype": case["case"]["dtype"], **check}
            for case in results["cases"] for check in case["checks"]]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["worst_index"] = frame["worst_index"].map(
            lambda index: "(" + ", ".join(map(str, index)) + ")")
    return frame


def checks_csv(results: dict[str, Any]) -> str:
    """:func:`checks_frame` as CSV text, written row by row (what ``DataFrame.to_csv``
    writes for it, a test holds them equal; several times faster on a large run)."""
    rows = [{"case": case["id"], "dtype": case["case"]["dtype"], **check}
            for case in results["cases"] for check in case["checks"]]
    if not rows:
        return checks_frame(results).to_csv(index=False, lineterminator="\n")
    columns = list(rows[0])
    if any(list(row) != columns for row in rows):  # ragged rows: let pandas align them
        return checks_frame(results).to_csv(index=False, lineterminator="\n")
    return _csv_text(columns, rows, header=True)


CSV_COLUMNS = ("case", "dtype", *CHECK_FIELDS, "verdict", "localisation")
"""The columns of ``checks.csv`` as :func:`build_results` makes its checks."""


def csv_header() -> str:
    """The first line of ``checks.csv``."""
    return _csv_text(list(CSV_COLUMNS), [], header=True)


def case_csv_rows(entry: dict[str, Any]) -> str:
    """One case's rows of ``checks.csv`` (``entry``: its :func:`case_entry`), without the
    header: :func:`checks_csv` writes the same lines for it."""
    rows = [{"case": entry["id"], "dtype": entry["case"]["dtype"], **check}
            for check in entry["checks"]]
    return _csv_text(list(rows[0]), rows, header=False) if rows else ""


def _csv_text(columns: list[str], rows: list[dict[str, Any]], header: bool) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    if header:
        writer.writerow(columns)
    at = columns.index("worst_index") if "worst_index" in columns else None
    for row in rows:
        values = list(row.values())
        if at is not None:
            values[at] = "(" + ", ".join(map(str, values[at])) + ")"
        writer.writerow(values)
    return stream.getvalue()


def json_text(value: Any) -> str:
    """``value`` as ``results.json`` writes it: compact, no NaN or Inf literals."""
    return json.dumps(value, indent=None, separators=(",", ":"), allow_nan=False)


def load_results(path: Path) -> dict[str, Any]:
    """Read a results.json, refusing files of another schema with a clear error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else None
        raise ValueError(f"{path}: schema_version {found!r}; allowed: {SCHEMA_VERSION} "
                         "(a results.json written by gradparity run)")
    return data
