"""Workers: the same outputs whatever the number of workers and the executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradparity.cli.main import main
from gradparity.harness.executors import check_executor, check_workers, ordered_map
from tests.conftest import require

CASES = """
[defaults]
layer_sizes = [3, 6, 2]
steps = 3
dtype = ["float32", "float64"]
seed = [0, 1]

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


def _outputs(config: Path, out: Path, *flags: str) -> tuple:
    """results.json (without its timestamp), REPORT.md and checks.csv of one run."""
    code = main(["run", "--config", str(config), "--out", str(out), "--quiet", "--no-plots",
                 "--seeds", "2", *flags])
    assert code == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    results["run"].pop("timestamp")
    results["run"]["command"] = "gradparity run"
    report = (out / "REPORT.md").read_text(encoding="utf-8").replace(str(out), "OUT")
    report = "\n".join(line for line in report.splitlines() if "gradparity run" not in line)
    return results, report, (out / "checks.csv").read_bytes()


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    require("torch")
    require("jax")
    directory = tmp_path_factory.mktemp("serial")
    config = directory / "cases.toml"
    config.write_text(CASES, encoding="utf-8")
    return config, _outputs(config, directory / "out", "--workers", "1")


@pytest.mark.parametrize("flags", [("--workers", "2"),
                                   ("--executor", "dask", "--workers", "2")],
                         ids=["local-2", "dask-localcluster-2"])
def test_every_executor_writes_the_serial_runs_results(serial_run, flags, tmp_path: Path
                                                       ) -> None:
    if "dask" in flags:
        pytest.importorskip("distributed", reason="the dask extra is not installed")
    config, serial = serial_run
    parallel = _outputs(config, tmp_path / "out", *flags)
    assert parallel[0] == serial[0]
    assert parallel[1] == serial[1]
    assert parallel[2] == serial[2]
    assert serial[0]["summary"]["cases"] == 8


@pytest.mark.parametrize(("executor", "scheduler", "message"), [
    ("ray", None, r"--executor: invalid value 'ray'; allowed: local, dask"),
    ("local", "localhost:8786", r"--scheduler: invalid value 'localhost:8786'; allowed: a "
     r"Dask scheduler address such as tcp://host:8786"),
])
def test_a_bad_executor_or_scheduler_names_the_flag(executor, scheduler, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_executor(executor, scheduler)


def test_a_scheduler_implies_the_dask_executor() -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    assert check_executor("local", "tcp://127.0.0.1:8786") == "dask"
    assert check_executor("local") == "local"
