"""Per-case records (made as each outcome arrives) write the files a whole-run dump writes."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from gradparity.harness.outcome import CaseOutcome
from gradparity.harness.runner import run_case
from gradparity.report.details import render_details
from gradparity.report.records import case_record, results_texts
from gradparity.report.results import build_results, checks_csv
from gradparity.spec.case import Case
from tests.conftest import require

FRAMEWORKS = ("numpy", "torch")
AUDIT = {"versions": {"numpy": np.__version__}, "settings": {"a, \"b\"": "c\nd"},
         "non_ieee_float32": []}


@pytest.fixture(scope="module")
def outcomes() -> list[CaseOutcome]:
    """Real outcomes, one of them made to fail in every awkward way a file can meet: a
    non-finite difference, a note and a verdict with commas, quotes and a newline, a
    localisation; then a case that raised (no checks) and one with a skipped framework."""
    require("torch")
    cases = [Case(layer_sizes=(3, 5, 2), hidden_activation="tanh", dtype=dtype, steps=3,
                  loss="softmax_cross_entropy", optimizer="adam") for dtype in
             ("float32", "float64")]
    passing, failing = (run_case(case, FRAMEWORKS) for case in cases)
    broken = replace(failing.checks[3], passed=False, normwise=np.nan, max_abs=np.inf,
                     note='says "no", twice,\nthen stops')
    key = (broken.framework, broken.baseline, broken.quantity, broken.parameter)
    failing = replace(failing, differences=(*failing.differences[:3], broken,
                                            *failing.differences[4:]),
                      verdicts={key: 'logic difference: "x", y'},
                      localisation={(broken.framework, broken.baseline): (2, 1)})
    errored = CaseOutcome(replace(cases[0], seed=7), {}, errors={"case": "Traceback: boom"})
    skipped = replace(passing, case=replace(cases[0], seed=8),
                      skipped={"jax": "not installed, here"})
    return [passing, failing, errored, skipped]


def test_records_join_into_the_whole_runs_files(outcomes) -> None:
    whole = build_results(outcomes, FRAMEWORKS, "gradparity run", AUDIT,
                          timestamp="2026-12-01T00:00:00+00:00")
    expected_json = json.dumps(whole, indent=None, separators=(",", ":"), allow_nan=False)
    records = [case_record(outcome) for outcome in outcomes]
    results, checks = results_texts(records, FRAMEWORKS, "gradparity run", AUDIT,
                                    timestamp="2026-12-01T00:00:00+00:00")
    assert results == expected_json + "\n"
    assert checks == checks_csv(whole)
    assert json.loads(results)["summary"] == {
        "cases": 4, "failed_cases": [outcomes[1].case.id, outcomes[2].case.id],
        "checks": sum(len(o.checks) for o in outcomes), "failed_checks": 1}
    assert checks.count("\n") > sum(len(o.checks) for o in outcomes)  # the note's newline


def test_a_run_without_checks_writes_the_empty_table(outcomes) -> None:
    errored = [outcomes[2], replace(outcomes[2], case=replace(outcomes[2].case, seed=9))]
    whole = build_results(errored, FRAMEWORKS, "cmd", AUDIT, timestamp="t")
    results, checks = results_texts([case_record(o) for o in errored], FRAMEWORKS, "cmd",
                                    AUDIT, timestamp="t")
    assert (results, checks) == (json.dumps(whole, separators=(",", ":")) + "\n",
                                 checks_csv(whole))
    empty = results_texts([], FRAMEWORKS, "cmd", AUDIT, timestamp="t")[0]
    assert json.loads(empty)["cases"] == [] and json.loads(empty)["summary"]["checks"] == 0


def test_the_details_sections_made_early_are_the_ones_made_at_the_end(outcomes) -> None:
    sections = [case_record(outcome).details for outcome in outcomes]
    assert render_details(outcomes[:3], outcomes[3:], FRAMEWORKS, (), sections) == \
        render_details(outcomes[:3], outcomes[3:], FRAMEWORKS)
    assert "- jax skipped: not installed, here" in sections[3]
