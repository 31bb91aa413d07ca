"""The verdict roll-ups: a failing oracle row fails the case, the report and the exit code;
every failing row carries its verdict and localisation in results.json and checks.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from gradparity.check.bugs import MissingDerivative
from gradparity.check.textbook import _BuggyBackprop
from gradparity.cli import run as cli_run
from gradparity.cli.main import main
from gradparity.compare.metrics import FINITE_DIFFERENCES
from gradparity.harness.runner import run_case
from gradparity.reference import network
from gradparity.spec.case import Case

CASE = Case((3, 6, 2), "tanh", steps=2)


@pytest.fixture
def wrong_reference(monkeypatch):
    """The reference's backward pass without the hidden layer's derivative: only the
    finite-difference oracle can see it when the reference is the only framework."""
    monkeypatch.setattr(network, "BACKPROP", _BuggyBackprop([MissingDerivative(layer=1)]))


def test_a_case_failing_only_on_an_oracle_row_fails(wrong_reference) -> None:
    outcome = run_case(CASE, ("numpy",))
    assert not outcome.differences  # one framework: no pair at all
    failing = [d for d in outcome.oracle_differences if not d.passed]
    assert failing and {d.baseline for d in failing} == {FINITE_DIFFERENCES}
    assert not outcome.passed
    key = (failing[0].framework, failing[0].baseline, failing[0].quantity, failing[0].parameter)
    assert outcome.verdicts[key].startswith("logic difference: the reference disagrees")


def test_the_report_the_files_and_the_exit_code_carry_it(wrong_reference, tmp_path: Path,
                                                         monkeypatch) -> None:
    monkeypatch.setattr(cli_run, "default_cases", lambda: [CASE])
    monkeypatch.setattr(cli_run, "xor_case", lambda dtype: Case((3, 4, 2), "relu",
                                                                dtype=dtype, steps=1))
    code = main(["run", "--frameworks", "numpy", "--out", str(tmp_path), "--no-plots",
                 "--quiet"])
    assert code == 1
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "DISAGREEMENT" in report and "all 3 cases agree" not in report
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert CASE.id in results["summary"]["failed_cases"]
    rows = [c for case in results["cases"] for c in case["checks"] if not c["passed"]]
    assert rows and all(row["verdict"] for row in rows)
    csv = pd.read_csv(tmp_path / "checks.csv", keep_default_na=False)
    failed = csv[csv["passed"].astype(str) == "False"]
    assert len(failed) == len(rows)
    assert (failed["verdict"] != "").all()
    assert "localisation" in csv.columns


def test_failing_pairs_carry_their_localisation(tmp_path: Path, monkeypatch) -> None:
    """A torch-only bug in the hidden layer: the rows of that pair say where it broke."""
    pytest.importorskip("torch")
    from gradparity.adapters import torch_adapter

    monkeypatch.setitem(torch_adapter.ACTIVATIONS, "tanh", lambda z, o: z * 1.0)
    case = Case((3, 6, 2), "tanh", output_activation="tanh", steps=1)
    monkeypatch.setattr(cli_run, "default_cases", lambda: [case])
    monkeypatch.setattr(cli_run, "xor_case", lambda dtype: Case((3, 4, 2), "relu",
                                                                dtype=dtype, steps=1))
    code = main(["run", "--frameworks", "numpy,torch", "--out", str(tmp_path), "--no-plots",
                 "--quiet", "--filter", case.id])
    assert code == 1
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    rows = [c for c in results["cases"][0]["checks"]
            if not c["passed"] and c["baseline"] == "numpy"]
    assert rows and all(row["localisation"].startswith("step 0, layer 2") for row in rows)
    assert all(row["verdict"].startswith("logic difference") for row in rows)
