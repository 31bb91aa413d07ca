"""Workers: the same outputs whatever the number of workers and the executor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from gradparity.cli.main import main
from gradparity.harness import executors
from gradparity.harness.executors import (
    CASES_PER_AUTO_WORKER,
    _chunksize,
    check_executor,
    check_workers,
    ordered_map,
    resolve_workers,
)
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


@pytest.fixture(autouse=True)
def _two_cores(monkeypatch) -> None:
    """The worker counts below are those of a 2-core machine, whatever this one has."""
    monkeypatch.setattr(executors, "available_workers", lambda: 2)


def _square(value: int) -> int:
    return value * value


def _worker_settings(_: int) -> tuple:
    import dask
    from distributed import get_worker

    return (dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval"),
            get_worker().memory_manager.memory_limit)


def test_ordered_map_keeps_the_order_across_processes() -> None:
    assert list(ordered_map(_square, list(range(9)), workers=2)) == [v * v for v in range(9)]


def test_a_local_dask_cluster_neither_profiles_nor_limits_its_workers() -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import dask

    settings = list(ordered_map(_worker_settings, [0, 1], workers=2, executor="dask"))
    assert settings == [(False, "1s", None)] * 2  # no memory manager
    # only the cluster started for the map: this process keeps Dask's defaults
    assert dask.config.get("distributed.worker.profile.enabled") is True


@pytest.mark.parametrize(("items", "workers", "size"), [(520, 2, 16), (156, 2, 4), (9, 2, 1),
                                                        (1, 4, 1)])
def test_cases_go_out_in_about_sixteen_chunks_per_worker(items, workers, size) -> None:
    assert _chunksize(items, workers) == size


@pytest.mark.parametrize("bad", [0, -1, 10**6, 1.5, True, "two", "", "-2"])
def test_a_bad_worker_count_names_the_flag(bad) -> None:
    with pytest.raises(ValueError, match=r"--workers: invalid value .*; allowed: auto or an "
                       r"integer in \[1, 8\] \(this machine has 2 cores\)"):
        check_workers(bad)


@pytest.mark.parametrize(("value", "cases", "device", "workers"), [
    ("auto", 182, "cpu", 2), ("auto", 520, "cpu", 2), ("auto", 47, "cpu", 1),
    ("auto", 48, "cpu", 2), ("auto", 1, "cpu", 1), ("auto", 0, "cpu", 1),
    ("auto", 182, "cuda", 1), ("3", 1, "cpu", 3), (2, 182, "cuda", 2), ("1", 520, "cpu", 1)])
def test_auto_starts_a_worker_per_core_and_per_24_cases(value, cases, device, workers) -> None:
    assert CASES_PER_AUTO_WORKER == 24
    assert resolve_workers(value, cases, device) == workers


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


def test_the_parent_imports_the_audited_frameworks_while_workers_run() -> None:
    # a fresh interpreter: this one has imported torch and JAX long ago
    require("torch")
    require("jax")
    script = ("import sys\n"
              "from gradparity.harness.audit import import_in_background\n"
              "before = {'torch', 'jax'} & set(sys.modules)\n"
              "thread = import_in_background()\n"
              "thread.join(120)\n"
              "print(sorted(before), thread.daemon, thread.is_alive(),\n"
              "      sorted({'torch', 'jax'} & set(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=180)
    assert done.stdout.split("\n")[0] == "[] True False ['jax', 'torch']"


def test_an_outcome_for_the_report_writes_the_same_report(tmp_path: Path) -> None:
    from gradparity.harness.runner import run_case
    from gradparity.harness.workers import run_outcome
    from gradparity.report.outputs import write_outputs
    from gradparity.spec.case import Case
    from gradparity.spec.matrix import xor_case

    require("torch")
    # the second one stands for the XOR example, whose table reads the runs' losses
    cases = [Case(layer_sizes=(3, 5, 2), hidden_activation="relu",
                  loss="softmax_cross_entropy", dtype="float32", steps=3),
             replace(xor_case(), steps=60)]
    full = [run_case(case, ("numpy", "torch")) for case in cases]
    slim = [run_outcome((case, ("numpy", "torch"), None, "full", "cpu")) for case in cases]
    for outcome in slim:  # what crosses from a worker: the losses, no arrays
        for result in outcome.results.values():
            assert (result.gradients, result.trajectory, result.deltas, result.states) == (
                {}, (), (), ())
            assert len(result.losses) == outcome.case.steps + 1
    for name, outcomes in (("full", full), ("slim", slim)):
        write_outputs(outcomes, 1, ("numpy", "torch"), "cmd", [], tmp_path / name,
                      plots=True)
    for written in sorted(p.name for p in (tmp_path / "full").iterdir()):
        if written.endswith(".png"):
            continue
        text = (tmp_path / "full" / written).read_text()
        if written == "results.json":  # the time stamp
            text = json.loads(text) | {"run": None}
            assert json.loads((tmp_path / "slim" / written).read_text()) | {"run": None} == text
        else:
            assert (tmp_path / "slim" / written).read_text() == text, written
    assert sorted(p.name for p in (tmp_path / "slim").iterdir()) == sorted(
        p.name for p in (tmp_path / "full").iterdir())


def _threads_setting(_: int) -> str:
    return os.environ.get("OMP_NUM_THREADS", "unset")


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_workers_are_single_threaded_and_this_process_is_not(executor, monkeypatch) -> None:
    if executor == "dask":
        pytest.importorskip("distributed", reason="the dask extra is not installed")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = []
    found = list(ordered_map(_threads_setting, [0, 1, 2, 3], workers=2, executor=executor,
                             started=lambda: seen.append(_threads_setting(0))))
    assert found == ["1"] * 4
    # what imports torch from ``started`` on (the audit's) sees this process's own setting
    assert seen == ["unset"]
    assert "OMP_NUM_THREADS" not in os.environ


def test_a_local_dask_cluster_runs_beside_another_on_the_usual_port() -> None:
    """A second run's cluster (here: something holding Dask's default HTTP port) neither
    warns nor fails: the scheduler's HTTP server takes a free port."""
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    import socket

    with socket.socket() as holder:
        try:
            holder.bind(("", 8787))
        except OSError:
            pytest.skip("port 8787 is taken here already: nothing to hold")
        holder.listen()
        # the suite turns every warning into an error, "Port 8787 is already in use" too
        assert list(ordered_map(_threads_setting, [0, 1], workers=2,
                                executor="dask")) == ["1", "1"]


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_nothing_to_map_starts_no_workers(executor, monkeypatch) -> None:
    # a run without --seeds maps its seed sweeps over no items: on Dask that once
    # started a second cluster (two more worker processes and their imports)
    if executor == "dask":
        pytest.importorskip("distributed", reason="the dask extra is not installed")
        import distributed

        monkeypatch.setattr(distributed, "LocalCluster", None)  # would fail if called
    monkeypatch.setattr(executors, "ProcessPoolExecutor", None)
    started = []
    assert list(ordered_map(_square, [], workers=2, executor=executor,
                            started=lambda: started.append(1))) == []
    assert started == []


# two cases whose torch numbers depend on its intra-op threads (a convolution's weight
# gradient, layer norm's statistics are reductions torch splits over them)
THREAD_SENSITIVE = """
[defaults]
loss = "softmax_cross_entropy"
dtype = "float32"
optimizer = "adam"
hyperparameters = { lr = 0.01 }

[[case]]
architecture = "cnn"

[[case]]
architecture = "resmlp-ln"
"""


def test_a_case_run_here_writes_what_a_worker_writes(tmp_path: Path) -> None:
    require("torch")
    require("jax")
    import torch

    config = tmp_path / "cases.toml"
    config.write_text(THREAD_SENSITIVE, encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # this process as a 2-core machine has it
    try:
        here = _outputs(config, tmp_path / "here", "--workers", "1")
        assert torch.get_num_threads() == 2  # restored after the cases
    finally:
        torch.set_num_threads(threads)
    workers = _outputs(config, tmp_path / "workers", "--workers", "2")
    assert here[0]["summary"]["cases"] == 2
    assert here == workers


def test_the_porting_table_is_the_same_from_workers() -> None:
    require("torch")
    require("jax")
    import torch

    from gradparity.harness.porting import port, porting_cases
    from gradparity.harness.workers import run_cases

    # the control and the three whose numbers depend on torch's threads
    cases = [porting_cases()[0], *porting_cases()[-3:]]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        here = [port(case) for case in cases]
    finally:
        torch.set_num_threads(threads)
    rows = list(run_cases([], ("numpy", "torch", "jax"), workers=2, porting=cases))
    assert [row.case for row in rows] == cases
    assert [row.verdict for row in rows] == ["agree", "explained", "explained", "explained"]
    assert [repr(row) for row in rows] == [repr(row) for row in here]  # NaN reads as nan


class _RecordingPool:
    """A ProcessPoolExecutor stand-in that maps in this process and records how it was
    shut down."""

    shutdowns: ClassVar[list[dict]] = []

    def __init__(self, **options) -> None:
        pass

    def map(self, function, items, chunksize=1):
        return map(function, items)

    def shutdown(self, **how) -> None:
        _RecordingPool.shutdowns.append(how)


def test_the_workers_exit_while_the_report_is_written(monkeypatch) -> None:
    """After the last result the pool is shut down without waiting for its workers'
    teardown; a map abandoned early waits and cancels what is left."""
    monkeypatch.setattr(executors, "ProcessPoolExecutor", _RecordingPool)
    _RecordingPool.shutdowns = []
    assert list(ordered_map(_square, [1, 2, 3], workers=2)) == [1, 4, 9]
    assert _RecordingPool.shutdowns == [{"wait": False, "cancel_futures": False}]
    abandoned = ordered_map(_square, [1, 2, 3], workers=2)
    assert next(abandoned) == 1
    abandoned.close()
    assert _RecordingPool.shutdowns[1:] == [{"wait": True, "cancel_futures": True}]


def _recording_cluster(monkeypatch) -> list[str]:
    """The names of the threads that close a local Dask cluster."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    closed = []

    class Recording(distributed.LocalCluster):
        def close(self, *args, **kwargs):
            closed.append(threading.current_thread().name)
            return super().close(*args, **kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", Recording)
    return closed


def test_a_local_dask_cluster_closes_while_the_report_is_written(monkeypatch) -> None:
    closed = _recording_cluster(monkeypatch)
    assert list(ordered_map(_square, [1, 2, 3], workers=2, executor="dask")) == [1, 4, 9]
    for thread in threading.enumerate():
        if thread.name == "gradparity-dask-close":
            thread.join()
    assert closed[:1] == ["gradparity-dask-close"]


def test_an_abandoned_dask_map_closes_its_cluster_before_it_returns(monkeypatch) -> None:
    closed = _recording_cluster(monkeypatch)
    abandoned = ordered_map(_square, [1, 2, 3], workers=2, executor="dask")
    assert next(abandoned) == 1
    abandoned.close()
    assert closed[:1] == [threading.current_thread().name]
