"""The bench's instruments measure what they say (their figures are printed by
``nox -s bench``, never asserted as timings here)."""

from __future__ import annotations

import re

import pytest

from gradparity.compare import finite_differences
from gradparity.harness import size_scan
from gradparity.harness.runner import float64_oracle
from gradparity.harness.stages import STAGES, stage_table
from gradparity.reference import network
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from tests.conftest import require


def test_the_stage_table_accounts_for_the_whole_run() -> None:
    require("torch")
    require("jax")
    lines = stage_table(Case((3, 5, 2), "tanh", dtype="float32", steps=2))
    assert lines[0].startswith("case ") and "agree" in lines[0]
    wall = float(re.search(r", ([0-9.]+) s,", lines[0]).group(1))
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines[4:]}
    assert set(rows) == {label for _, _, label in STAGES} | {"everything else"}
    seconds = [float(row[1]) for row in rows.values()]
    assert all(value >= 0 for value in seconds[:-1])
    assert sum(seconds) == pytest.approx(wall, abs=0.01 * len(seconds))
    assert float(rows["framework runs"][1]) > 0


def test_the_headline_parts_are_inside_the_harness_time_and_lower_the_ratio() -> None:
    require("torch")
    require("jax")
    from gradparity.harness.bench import _headline_parts

    cases = [Case((3, 5, 2), "tanh", dtype=dtype, steps=2, seed=seed)
             for dtype in ("float32", "float64") for seed in (0, 1)]
    line = _headline_parts(cases)
    numbers = [float(n) for n in re.findall(r"(\d+\.\d+)", line)]
    harness, model, comparisons, ratio, no_comparisons, no_model = numbers
    assert comparisons > 0 and model >= 0 and model + comparisons <= harness
    assert ratio > no_comparisons >= no_model > 0


def test_the_scan_case_is_the_mnist_sized_case_at_full_size() -> None:
    case = size_scan.scan_case(2048, 512)
    assert case.layer_sizes == (784, 2048, 2048, 10) and case.batch_size == 512
    assert (case.dtype, case.optimizer, case.steps) == ("float32", "adam", 5)


def test_one_scan_size_reports_both_times_and_the_kept_bytes(monkeypatch) -> None:
    require("torch")
    require("jax")
    monkeypatch.setattr(size_scan, "INPUTS", 6)
    row = size_scan.measure((8, 4, "cpu"))
    assert row["passed"] == 1.0 and row["bare"] > 0 and row["harness"] > 0
    parameters = 6 * 8 + 8 + 8 * 8 + 8 + 8 * 10 + 10
    assert row["parameters"] == parameters
    assert row["kept"] == pytest.approx(parameters * size_scan.STEPS * 4 / 2**20)


@pytest.mark.parametrize("bug", [False, True], ids=["correct", "weight-gradient-off-1pct"])
def test_a_large_network_checks_the_reference_on_the_first_rows(bug: bool, monkeypatch
                                                                ) -> None:
    case = Case((40, 64, 64, 3), "tanh", batch_size=64, steps=1)
    problem = make_problem(case)
    parameters = sum(value.size for value in problem.params.values())
    assert finite_differences.oracle_rows(case, problem) is None  # small: every row
    monkeypatch.setattr(finite_differences, "ORACLE_WORK", parameters * 16)
    assert finite_differences.oracle_rows(case, problem) == 16
    if bug:
        right = network.BACKPROP.weight_gradient
        monkeypatch.setattr(network.BACKPROP, "weight_gradient",
                            lambda a_prev, delta: 1.01 * right(a_prev, delta))
    reference = float64_oracle(case, problem)
    (row,) = finite_differences.check_against_finite_differences(case, problem, reference)
    assert row.parameter.endswith("(first 16 of 64 examples)")
    assert row.passed is not bug
