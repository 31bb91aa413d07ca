"""The gradparity command: report contents, exit codes, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradparity.cli import run as cli_run
from gradparity.cli.main import main
from gradparity.spec.matrix import default_cases
from tests.conftest import require

REPORT_LINES = 400  # the default matrix's REPORT.md stays readable (issue: first ten minutes)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str]:
    """The default run: exit code, REPORT.md and DETAILS.md."""
    require("torch")
    require("jax")
    out = tmp_path_factory.mktemp("report")
    code = main(["run", "--out", str(out), "--quiet"])
    return (code, (out / "REPORT.md").read_text(encoding="utf-8"),
            (out / "DETAILS.md").read_text(encoding="utf-8"))


def test_run_writes_a_complete_report(report: tuple[int, str, str]) -> None:
    code, text, details = report
    assert code == 0
    assert text.startswith("# gradparity report\n\n**Verdict: all ")
    assert len(text.splitlines()) <= REPORT_LINES
    headings = re.findall(r"\n## (.+)\n", text)
    assert headings == ["Framework disagreement", "Distance from the float64 oracle",
                        "What to look at", "Summary by network", "Pass/fail counts",
                        "Porting differences (library defaults)", "Seed example: XOR",
                        "Plots", "Environment", "Numeric-mode audit",
                        "How to read this report"]
    for component in ["| Python ", "| NumPy ", "| torch ", "| jax ", "| optax "]:
        assert component in text
    for heading in ["## Summary", "## Tolerances and headroom",
                    "## float32 against the float64 oracle",
                    "## The reference against finite differences",
                    "## Trajectories: free-running and teacher-forced", "## Conventions",
                    "## Per-parameter differences"]:
        assert f"\n{heading}\n" in details
    # one summary row per case, with a column per pair, and every parameter of every case
    assert "| case " in details and "| torch vs numpy " in details
    assert "| jax vs torch " in details
    for case in default_cases():
        assert f"### {case.id}\n" in details
        assert re.search(rf"\| {re.escape(case.id)} +\|.*\| pass +\|", details)
        assert f"| {case.network_family} " in text  # the summary by network
    assert f"**Verdict: all {len(default_cases()) + 2} cases agree**" in text


def test_float64_figures_in_the_report_are_below_1e_12(report: tuple[int, str, str]) -> None:
    _, _, details = report
    summary = details.split("## Summary")[1].split("\n## ")[0]
    figures = [
        float(value) * 2.0**-52
        for line in summary.splitlines() if "_float64_" in line
        for value in re.findall(r"\| ([\d.]+) / \d+ eps \(", line)
    ]
    from gradparity.adapters import get_adapter
    from gradparity.spec.matrix import xor_case

    expected = 0
    for case in [*default_cases(), xor_case("float64")]:
        if case.dtype == "float64":
            able = sum(get_adapter(n).unsupported_reason(case) is None
                       for n in ("numpy", "torch", "jax"))
            expected += able * (able - 1) // 2  # one summary cell per pair that ran
    assert len(figures) == expected
    assert max(figures) < 1e-12


def test_every_check_shows_headroom_and_loose_ones_are_flagged(
        report: tuple[int, str, str]) -> None:
    _, text, details = report
    section = details.split("## Tolerances and headroom")[1].split("\n## ")[0]
    total = int(re.search(r"Over (\d+) checks", section).group(1))
    flagged = re.search(r"\*\*(\d+) checks? ha(?:s|ve) a tolerance more than 1000x looser",
                        section)
    if flagged:  # rare (docs: Tolerances), and each is named
        count = int(flagged.group(1))
        assert count < 0.003 * total  # the calibration bound (docs: Tolerances)
        assert section.count("\n- case ") == count
        assert text.count("\n- case ") >= min(count, 5)  # the first ones in the report
    else:
        assert "No check has a tolerance more than 1000x looser" in section
    largest = float(re.search(r"largest ([\d.]+)\. Allowed", section).group(1))
    assert 0 < largest < 1
    table = details.split("## Per-parameter differences")[1]
    assert table.count(" eps (") > 1000  # every cell: observed / allowed eps (headroom)


def test_the_two_headlines_are_separate(report: tuple[int, str, str]) -> None:
    _, text, _ = report
    frameworks = text.split("## Framework disagreement")[1].split("\n## ")[0]
    assert re.search(r"- float32: [\d,]+ checks, none failed; largest ratio 0\.\d+: ", frameworks)
    assert "oracle" not in frameworks  # the oracle rows are the other headline
    oracle = text.split("## Distance from the float64 oracle")[1].split("\n## ")[0]
    for name in ("numpy", "torch", "jax"):
        assert re.search(rf"- {name}: furthest [\d.]+ eps \(", oracle)
    assert "- finite differences: " in oracle


def test_xor_section_shows_losses_at_the_reported_steps(report: tuple[int, str, str]) -> None:
    _, text, _ = report
    section = text.split("## Seed example: XOR")[1].split("\n## ")[0]
    for step in (0, 1, 10, 100, 500, 1000):
        assert re.search(rf"\n\| {step} +\| 0\.2\d+ +\| 0\.2\d+ +\| 0\.2\d+ +\|", section)


def test_unknown_framework_is_a_usage_error(tmp_path: Path, capsys) -> None:
    code = main(["run", "--out", str(tmp_path / "out"), "--frameworks", "numpy,mxnet"])
    assert code == 2
    expected = "frameworks: invalid value 'mxnet'; allowed: numpy, torch, jax"
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_list_shows_registries_and_availability(capsys) -> None:
    assert main(["list"]) == 0
    output = capsys.readouterr().out
    assert ("activations: identity, sigmoid, tanh, relu, leaky_relu, elu, gelu, gelu_tanh, "
            "silu, softplus") in output
    assert "conventions: linear_weight_layout, relu_derivative_at_zero" in output
    assert "losses:      mse, softmax_cross_entropy, binary_cross_entropy_with_logits" in output
    assert re.search(r"numpy +\d", output)
    assert "  schedule           default 'constant'  constant, step, cosine" in output


def test_no_command_prints_help(capsys) -> None:
    assert main([]) == 2
    assert "gradparity run" in capsys.readouterr().out


def test_disagreement_exits_1_and_is_flagged_in_the_report(tmp_path: Path, monkeypatch) -> None:
    require("torch")
    import dataclasses

    import numpy as np

    from gradparity.reference import activations
    from gradparity.spec.case import Case

    small = Case((3, 5, 2), "tanh", steps=2)
    monkeypatch.setattr(cli_run, "default_cases", lambda: [small])
    monkeypatch.setattr(cli_run, "xor_case", lambda dtype: Case((3, 4, 2), "relu", dtype=dtype))
    broken = dataclasses.replace(activations.ACTIVATIONS["tanh"],
                                 derivative=lambda z, a: np.ones_like(z))
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", broken)
    code = main(["run", "--out", str(tmp_path), "--frameworks", "numpy,torch", "--quiet"])
    text = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    details = (tmp_path / "DETAILS.md").read_text(encoding="utf-8")
    assert code == 1
    assert "**Verdict: DISAGREEMENT in 1 of 3 cases**" in text
    assert f"| {small.id} " in details and "**FAIL**" in details
    assert "torch vs numpy: the backward chain first disagrees at step 0, layer 1" in text
    broke = details.split("## Where it broke")[1].split("\n## ")[0]
    assert "torch vs numpy: the backward chain first disagrees at step 0, layer 1" in broke
    assert "**logic difference: fails in float64" in broke


def test_seeds_option_adds_a_sweep_section(tmp_path: Path, monkeypatch) -> None:
    from gradparity.spec.case import Case

    monkeypatch.setattr(cli_run, "default_cases", lambda: [Case((3, 5, 2), "tanh", steps=2)])
    monkeypatch.setattr(cli_run, "xor_case", lambda dtype: Case((3, 4, 2), "relu", dtype=dtype))
    code = main(["run", "--out", str(tmp_path), "--frameworks", "numpy", "--quiet",
                     "--seeds", "3"])
    text = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    details = (tmp_path / "DETAILS.md").read_text(encoding="utf-8")
    assert code == 0
    assert "1 case over 3 seeds each: 0 cases failed on some seed" in text
    section = details.split("## Seed sweep")[1].split("\n## ")[0]
    assert re.search(r"\| mlp3-5-2_tanh_mse_float64_sgd_steps2 +\| 3 +\| 0/3 +\|", section)
    assert "Reproduce with: `gradparity run" in text and "--seeds 3`" in text


def test_python_dash_m_is_the_gradparity_command(capsys) -> None:
    import subprocess
    import sys

    assert main(["list"]) == 0
    direct = capsys.readouterr().out
    completed = subprocess.run([sys.executable, "-m", "gradparity", "list"], check=False,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == direct
