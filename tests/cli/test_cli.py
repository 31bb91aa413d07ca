"""The gradparity command: report contents, exit codes, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gradparity.cli import run as cli_run
from gradparity.cli.main import main
from gradparity.spec.matrix import default_cases
from tests.conftest import require


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    require("torch")
    require("jax")
    out = tmp_path_factory.mktemp("report")
    code = main(["run", "--out", str(out), "--quiet"])
    return code, (out / "REPORT.md").read_text(encoding="utf-8")


def test_run_writes_a_complete_report(report: tuple[int, str]) -> None:
    code, text = report
    assert code == 0
    assert text.startswith("# gradparity report\n")
    for heading in ["## Environment", "## Tolerances and headroom", "## Summary",
                    "## float32 against the float64 oracle",
                    "## The reference against finite differences",
                    "## Trajectories: free-running and teacher-forced",
                    "## Seed example: XOR", "## Per-parameter differences"]:
        assert f"\n{heading}\n" in text
    for component in ["| Python ", "| NumPy ", "| torch ", "| jax ", "| optax "]:
        assert component in text
    # one summary row per case, with a column per pair
    assert "| case " in text and "| torch vs numpy " in text and "| jax vs torch " in text
    for case in default_cases():
        assert f"### {case.id}\n" in text
        assert re.search(rf"\| {re.escape(case.id)} +\|.*\| pass +\|", text)
    assert f"**Verdict: all {len(default_cases()) + 2} cases agree**" in text


def test_float64_figures_in_the_report_are_below_1e_12(report: tuple[int, str]) -> None:
    _, text = report
    summary = text.split("## Summary")[1].split("\n## ")[0]
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


def test_every_check_shows_headroom_and_loose_ones_are_flagged(report: tuple[int, str]) -> None:
    _, text = report
    section = text.split("## Tolerances and headroom")[1].split("\n## ")[0]
    total = int(re.search(r"Over (\d+) checks", section).group(1))
    flagged = re.search(r"\*\*(\d+) checks have a tolerance more than 1000x looser", section)
    if flagged:  # rare (README, Tolerances), and each is named
        count = int(flagged.group(1))
        assert count < 0.002 * total
        assert section.count("\n- case ") == min(count, 20)
    else:
        assert "No check has a tolerance more than 1000x looser" in section
    largest = float(re.search(r"largest ([\d.]+)\. Allowed", section).group(1))
    assert 0 < largest < 1
    table = text.split("## Per-parameter differences")[1]
    assert table.count(" eps (") > 1000  # every cell: observed / allowed eps (headroom)


def test_oracle_section_names_the_furthest_implementation(report: tuple[int, str]) -> None:
    _, text = report
    assert re.search(r"float32 against the float64 oracle: the implementation furthest from "
                     r"it is \*\*(numpy|torch|jax)\*\*", text)


def test_xor_section_shows_losses_at_the_reported_steps(report: tuple[int, str]) -> None:
    _, text = report
    section = text.split("## Seed example: XOR")[1].split("## Per-parameter")[0]
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
    assert code == 1
    assert "**Verdict: DISAGREEMENT in 1 of 3 cases**" in text
    assert f"| {small.id} " in text and "**FAIL**" in text
    broke = text.split("## Where it broke")[1].split("\n## ")[0]
    assert "torch vs numpy: the backward chain first disagrees at step 0, layer 1" in broke
    assert "**logic difference: fails in float64" in broke


def test_seeds_option_adds_a_sweep_section(tmp_path: Path, monkeypatch) -> None:
    from gradparity.spec.case import Case

    monkeypatch.setattr(cli_run, "default_cases", lambda: [Case((3, 5, 2), "tanh", steps=2)])
    monkeypatch.setattr(cli_run, "xor_case", lambda dtype: Case((3, 4, 2), "relu", dtype=dtype))
    code = main(["run", "--out", str(tmp_path), "--frameworks", "numpy", "--quiet",
                     "--seeds", "3"])
    text = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert code == 0
    section = text.split("## Seed sweep")[1].split("\n## ")[0]
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
