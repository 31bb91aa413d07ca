"""Hardening: errors are isolated, non-finite numbers never agree, writes are atomic."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from gradparity.adapters import FRAMEWORKS
from gradparity.cli.main import main
from gradparity.harness.workers import run_isolated
from gradparity.spec.case import Case
from tests.conftest import require

SMALL = """
[defaults]
layer_sizes = [3, 6, 2]
hidden_activation = "tanh"
steps = 3

[[case]]
dtype = "float64"
"""


@pytest.fixture
def one_case_file(tmp_path: Path) -> Path:
    """A case file with the single float64 case above."""
    return _written(tmp_path / "one_case.toml", SMALL)


def _written(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_raising_nan_and_missing_frameworks_are_each_reported(
    one_case_file: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    require("torch")
    require("jax")
    import jax.numpy as jnp

    from gradparity.adapters import jax_adapter, torch_adapter

    def broken_session(*args, **kwargs):
        raise RuntimeError("torch adapter exploded on purpose")

    monkeypatch.setattr(torch_adapter, "_TorchSession", broken_session)
    monkeypatch.setitem(jax_adapter.ACTIVATIONS, "tanh", lambda z, o: jnp.tanh(z) * jnp.nan)
    monkeypatch.setitem(FRAMEWORKS, "mxnet", "gradparity.adapters.mxnet_adapter")
    jax_adapter._compiled.cache_clear()
    try:
        code = main(["run", "--config", str(one_case_file), "--out", str(tmp_path / "out"),
                         "--frameworks", "numpy,torch,jax,mxnet", "--quiet", "--no-plots"])
    finally:
        jax_adapter._compiled.cache_clear()
    assert code == 1
    report = (tmp_path / "out" / "REPORT.md").read_text(encoding="utf-8")
    details = (tmp_path / "out" / "DETAILS.md").read_text(encoding="utf-8")
    assert "RuntimeError: torch adapter exploded on purpose" in details  # the traceback
    assert "## Errors" in details and "**1 error** in 1 case: torch in " in report
    assert "non-finite values: jax has" in report and "NaN" in report
    assert "**Not checked** (framework unavailable): mxnet: mxnet is not installed" in report
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    case = results["cases"][0]
    assert "torch" in case["errors"] and not case["passed"]
    assert case["skipped"]["mxnet"].startswith("mxnet is not installed")
    assert "DISAGREE" in capsys.readouterr().out


def test_a_run_where_nothing_is_compared_never_reports_success(
    one_case_file: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from gradparity.adapters import numpy_adapter

    def broken(*args, **kwargs):
        raise ValueError("reference broken on purpose")

    monkeypatch.setattr(numpy_adapter, "_ReferenceSession", broken)
    code = main(["run", "--config", str(one_case_file), "--out", str(tmp_path / "out"),
                     "--frameworks", "numpy", "--quiet", "--no-plots"])
    assert code == 1
    assert "NOTHING WAS COMPARED" in capsys.readouterr().out
    report = (tmp_path / "out" / "REPORT.md").read_text(encoding="utf-8")
    assert "**Verdict: NOTHING WAS COMPARED**" in report


def test_a_hung_case_is_stopped_by_the_time_limit(monkeypatch) -> None:
    from gradparity.adapters import numpy_adapter

    def hang(*args, **kwargs):
        time.sleep(30)

    monkeypatch.setattr(numpy_adapter, "_ReferenceSession", hang)
    started = time.perf_counter()
    outcome = run_isolated(Case((3, 6, 2), "tanh"), ("numpy",), time_limit=0.5)
    assert time.perf_counter() - started < 10
    assert not outcome.passed
    assert outcome.errors == {"case": f"case {outcome.case.id} exceeded the per-case time "
                                      "limit of 0.5 s"}


def test_an_exception_outside_the_adapters_becomes_a_case_error(monkeypatch) -> None:
    import gradparity.harness.runner as runner

    def explode(*args, **kwargs):
        raise ZeroDivisionError("tolerance model broken on purpose")

    monkeypatch.setattr(runner, "check_against_finite_differences", explode)
    outcome = run_isolated(Case((3, 6, 2), "tanh"), ("numpy",))
    assert "ZeroDivisionError: tolerance model broken on purpose" in outcome.errors["case"]
    assert not outcome.passed


def test_two_nans_at_the_same_place_are_not_agreement() -> None:
    from gradparity.compare.metrics import compare_arrays

    nan = np.array([[1.0, np.nan], [2.0, 3.0]])
    difference = compare_arrays(nan, nan.copy(), case_id="c", dtype="float64",
                                framework="torch", baseline_name="numpy",
                                quantity="gradient", parameter="W1", tolerance=1e-12)
    assert not difference.passed
    assert difference.worst_index == (0, 1)
    assert "torch has 1 NaN and 0 Inf (first at (0, 1))" in difference.note
    assert "both produce NaN at the same places" in difference.note
    one_sided = compare_arrays(np.array([1.0, np.inf]), np.array([1.0, 2.0]), case_id="c",
                               dtype="float64", framework="jax", baseline_name="numpy",
                               quantity="loss", parameter="loss", tolerance=1e-12)
    assert not one_sided.passed
    assert "jax has 0 NaN and 1 Inf (first at (1,)); numpy has all finite" in one_sided.note


def test_a_broken_framework_import_is_reported_not_raised(monkeypatch, tmp_path: Path) -> None:
    from gradparity.adapters import get_adapter

    module = tmp_path / "broken_framework_adapter.py"
    module.write_text("raise RuntimeError('CUDA driver mismatch, on purpose')\n",
                      encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(FRAMEWORKS, "broken", "broken_framework_adapter")
    get_adapter.cache_clear()
    try:
        availability = get_adapter("broken").availability()
    finally:
        get_adapter.cache_clear()
    assert not availability.available
    assert availability.reason == ("broken failed to import: RuntimeError: CUDA driver "
                                   "mismatch, on purpose")


KILLED_MID_WRITE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import gradparity.report.files as report

    real_fdopen = os.fdopen

    class Dying:
        def __init__(self, stream):
            self.stream = stream
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            return False
        def write(self, text):
            self.stream.write(text[: len(text) // 2])
            self.stream.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # killed half-way through the new report

    report.os.fdopen = lambda *a, **k: Dying(real_fdopen(*a, **k))
    report.write_report("# the new report\\n" * 100, Path(sys.argv[1]))
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_killing_a_run_mid_write_leaves_the_previous_report_readable(tmp_path: Path) -> None:
    previous = "# the previous report\n" + "line\n" * 50
    (tmp_path / "REPORT.md").write_text(previous, encoding="utf-8")
    script = tmp_path / "die.py"
    script.write_text(KILLED_MID_WRITE, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert (tmp_path / "REPORT.md").read_text(encoding="utf-8") == previous
    # the half-written temporary file is never the report; a later run replaces it
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".REPORT.md.")]
    assert len(leftovers) == 1
    from gradparity.report.files import write_report

    write_report("# fresh\n", tmp_path)
    assert (tmp_path / "REPORT.md").read_text(encoding="utf-8") == "# fresh\n"


def test_an_interrupted_write_cleans_up_and_keeps_the_old_file(tmp_path: Path,
                                                              monkeypatch) -> None:
    from gradparity.report import files as report

    (tmp_path / "REPORT.md").write_text("old\n", encoding="utf-8")

    def interrupted(source, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(report.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report.write_report("new\n", tmp_path)
    assert (tmp_path / "REPORT.md").read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["REPORT.md"]


def test_no_pickle_anywhere_in_the_package() -> None:
    package = Path(__file__).resolve().parents[2] / "src" / "gradparity"
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import pickle" not in text and "allow_pickle=True" not in text, path
        for line in text.splitlines():
            if "np.load(" in line:
                assert "allow_pickle=False" in line, f"{path}: {line.strip()}"


def test_the_environment_is_not_left_with_a_pending_alarm() -> None:
    run_isolated(Case((3, 6, 2), "tanh"), ("numpy",), time_limit=30)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)
