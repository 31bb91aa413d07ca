"""Worker processes: the same outputs whatever the number of workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradparity.cli.main import main
from gradparity.harness.workers import check_workers, ordered_map
from tests.conftest import require

CASES = """
[defaults]
layer_sizes = [3, 6, 2]
steps = 3
dtype = ["float32", "float64"]
seed = [0, 1, 2]

[[case]]
hidden_activation = "tanh"

[[case]]
hidden_activation = "relu"
optimizer = "adam"
hyperparameters = { lr = 0.01 }
options = { batches = 2 }
"""


def _square(value: int) -> int:
    return value * value


def test_ordered_map_keeps_the_order_across_processes() -> None:
    assert list(ordered_map(_square, list(range(9)), workers=2)) == [v * v for v in range(9)]


@pytest.mark.parametrize("bad", [0, -1, 10**6, 1.5, True])
def test_a_bad_worker_count_names_the_flag(bad) -> None:
    with pytest.raises(ValueError, match=r"--workers: invalid value .*; allowed: an integer in"):
        check_workers(bad)


def test_one_and_two_workers_write_identical_results(tmp_path: Path) -> None:
    require("torch")
    require("jax")
    config = tmp_path / "cases.toml"
    config.write_text(CASES, encoding="utf-8")
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        code = main(["run", "--config", str(config), "--out", str(out), "--quiet",
                         "--no-plots", "--seeds", "2", "--workers", str(workers)])
        assert code == 0
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
        results["run"].pop("timestamp")
        results["run"]["command"] = results["run"]["command"].replace(str(out), "OUT")
        report = (out / "REPORT.md").read_text(encoding="utf-8").replace(str(out), "OUT")
        outputs[workers] = (results, report, (out / "checks.csv").read_bytes())
    assert outputs[1][0] == outputs[2][0]
    assert outputs[1][1] == outputs[2][1]
    assert outputs[1][2] == outputs[2][2]
    assert outputs[1][0]["summary"]["cases"] == 12
