"""Machine-readable results, run diffs, case files, the numeric audit, reproducibility."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from gradparity.cli.main import main
from gradparity.report.results import SCHEMA_VERSION, checks_frame, load_results
from gradparity.spec.case_files import ConfigError, load_cases
from tests.conftest import require

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SMALL = """\
[defaults]
steps = 3
dtype = ["float32", "float64"]

[[case]]
layer_sizes = [3, 6, 2]
hidden_activation = "tanh"

[[case]]
layer_sizes = [3, 6, 2]
hidden_activation = "sigmoid"
loss = "softmax_cross_entropy"
"""


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL, encoding="utf-8")
    return path


def _run(config: Path, out: Path, *extra: str) -> int:
    return main(["run", "--config", str(config), "--out", str(out), "--quiet", *extra])


def test_run_writes_json_csv_and_plots(small_config: Path, tmp_path: Path) -> None:
    require("torch")
    require("jax")
    out = tmp_path / "run"
    assert _run(small_config, out) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["schema_version"] == SCHEMA_VERSION
    assert results["summary"]["cases"] == 4 and results["summary"]["failed_cases"] == []
    case = results["cases"][0]
    assert case["id"] == "mlp3-6-2_tanh_mse_float32_sgd_steps3"
    check = case["checks"][0]
    assert set(check) >= {"framework", "baseline", "quantity", "parameter", "normwise",
                          "tolerance", "headroom", "passed", "worst_index"}
    frame = pd.read_csv(out / "checks.csv")
    assert len(frame) == results["summary"]["checks"]
    # written row by row: what pandas writes for the same rows
    assert (out / "checks.csv").read_text(encoding="utf-8") == checks_frame(results).to_csv(
        index=False, lineterminator="\n")
    assert {"case", "dtype", "framework", "baseline", "normwise_eps", "passed"} <= set(frame)
    for name in ("heatmap_torch.png", "heatmap_jax.png", "divergence.png", "distribution.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
    report = (out / "REPORT.md").read_text(encoding="utf-8")
    assert "](heatmap_torch.png)" in report and "## Numeric-mode audit" in report
    head = report.split("## Summary by network")[0]  # the first screen
    assert "**Verdict: all 4 cases agree**" in head and "## What to look at" in head
    assert "The checks closest to their tolerance:" in head
    assert "[DETAILS.md](DETAILS.md)" in head and (out / "DETAILS.md").exists()


def test_same_command_twice_gives_identical_outputs(small_config: Path, tmp_path: Path) -> None:
    require("torch")
    require("jax")
    first, second = tmp_path / "a", tmp_path / "b"
    assert _run(small_config, first, "--no-plots") == 0
    assert _run(small_config, second, "--no-plots") == 0
    report = (first / "REPORT.md").read_bytes()
    assert report == (second / "REPORT.md").read_bytes().replace(b"/b", b"/a")
    one = json.loads((first / "results.json").read_text(encoding="utf-8"))
    two = json.loads((second / "results.json").read_text(encoding="utf-8"))
    for data in (one, two):
        data["run"].pop("timestamp")
        data["run"]["command"] = data["run"]["command"].replace(str(second), str(first))
    assert one == two
    assert (first / "checks.csv").read_bytes() == (second / "checks.csv").read_bytes()


def test_diff_names_exactly_the_affected_cases(small_config: Path, tmp_path: Path,
                                               monkeypatch, capsys) -> None:
    require("torch")
    import torch

    from gradparity.adapters import torch_adapter

    assert _run(small_config, tmp_path / "old", "--frameworks", "numpy,torch") == 0
    # an injected difference: torch's sigmoid off by one part in ten thousand
    monkeypatch.setitem(torch_adapter.ACTIVATIONS, "sigmoid",
                        lambda z, o: torch.sigmoid(z) * (1 + 1e-4))
    assert _run(small_config, tmp_path / "new", "--frameworks", "numpy,torch") == 1
    capsys.readouterr()
    code = main(["diff", str(tmp_path / "old" / "results.json"),
                     str(tmp_path / "new" / "results.json")])
    text = capsys.readouterr().out
    assert code == 1
    stopped = text.split("## Stopped passing")[1].split("\n## ")[0]
    listed = sorted(line[2:] for line in stopped.splitlines() if line.startswith("- "))
    assert listed == ["mlp3-6-2_sigmoid_softmax-ce_float32_sgd_steps3",
                      "mlp3-6-2_sigmoid_softmax-ce_float64_sgd_steps3"]
    assert "tanh" not in stopped
    # no change: exit 0 and nothing stopped passing
    same = main(["diff", str(tmp_path / "old" / "results.json"),
                     str(tmp_path / "old" / "results.json")])
    assert same == 0 and "**No case stopped passing**" in capsys.readouterr().out


def test_diff_reports_environment_differences(tmp_path: Path, capsys) -> None:
    from gradparity.report.diff import compare_runs

    base = {"schema_version": 1, "cases": [], "audit": {"versions": {"torch": "2.13.0"}}}
    newer = {"schema_version": 1, "cases": [], "audit": {"versions": {"torch": "2.14.0"}}}
    assert compare_runs(base, newer)["environment"] == [
        ("versions / torch", "2.13.0", "2.14.0")]


def test_diff_rejects_bad_input(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}', encoding="utf-8")
    assert main(["diff", str(bogus), str(bogus)]) == 2
    assert "schema_version None; allowed: 1" in capsys.readouterr().err
    assert main(["diff", str(tmp_path / "missing.json"), str(bogus)]) == 2
    with pytest.raises(ValueError, match="not JSON"):
        (tmp_path / "text.json").write_text("not json", encoding="utf-8")
        load_results(tmp_path / "text.json")


def test_case_file_errors_are_all_reported_with_lines(capsys) -> None:
    with pytest.raises(ConfigError) as error:
        load_cases(EXAMPLES / "cases_with_errors.toml")
    problems = error.value.problems
    assert len(problems) == 3
    assert (":7: case[0].hiden_activation: unknown key (did you mean 'hidden_activation'?); "
            "allowed: layer_sizes, hidden_activation,") in problems[0]
    assert ":11: case[1].steps: expected an integer, got str '10'" in problems[1]
    assert (":15: case[2].hidden_activation: Case.hidden_activation: invalid value 'swish'; "
            "allowed: identity, sigmoid, tanh, relu, leaky_relu,") in problems[2]
    code = main(["run", "--config", str(EXAMPLES / "cases_with_errors.toml")])
    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[case]\nlayer_sizes = [1]", "not valid TOML"),
        ("[defaults]\nsteps = 1\n", "no [[case]] table"),
        ("[[cases]]\nlayer_sizes = [3, 2]\n", "cases: unknown table; allowed: defaults, case"),
        ("[[case]]\nloss = 'mse'\n", "case[0].layer_sizes: Case.layer_sizes: no network; allowed: "
         "layer_sizes (e.g. [4, 16, 3]), layers with input_shape, or an architecture"),
        ("[[case]]\nlayer_sizes = [3, 2]\n[[case]]\nlayer_sizes = [3, 2]\n", "duplicate cases"),
    ],
    ids=["syntax", "no-case", "unknown-table", "missing-field", "duplicate"],
)
def test_case_file_structure_errors(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_cases(path)


def test_shipped_example_case_file_loads() -> None:
    cases = load_cases(EXAMPLES / "cases.toml")
    assert len(cases) == 2 + 2 + 4  # dtype lists double, seeds double again
    assert {c.optimizer for c in cases} == {"sgd", "adam"}


def test_non_ieee_float32_mode_is_flagged_in_the_verdict(small_config, tmp_path) -> None:
    require("torch")
    import torch

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        _run(small_config, tmp_path, "--frameworks", "numpy,torch", "--no-plots")
    finally:
        torch.set_float32_matmul_precision(previous)
    head = (tmp_path / "REPORT.md").read_text(encoding="utf-8").split("## Pass/fail")[0]
    assert "**Warning: a non-IEEE float32 mode was active:** torch float32 matmul precision " \
           "is 'high'" in head


def test_filter_and_usage_errors(small_config: Path, tmp_path: Path, capsys) -> None:
    assert main(["run", "--config", str(small_config), "--filter", "nothing-matches",
                     "--out", str(tmp_path)]) == 2
    assert "--filter: no case id contains 'nothing-matches'" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "absent.toml: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as error:
        main(["run", "--seeds", "many"])
    assert error.value.code == 2


def test_case_selects_by_exact_id_or_glob(small_config: Path, tmp_path: Path, capsys
                                          ) -> None:
    ids = [case.id for case in load_cases(small_config)]
    assert main(["run", "--config", str(small_config), "--case", ids[0], "--out",
                 str(tmp_path / "one"), "--quiet", "--no-plots"]) == 0
    results = json.loads((tmp_path / "one" / "results.json").read_text(encoding="utf-8"))
    assert [case["id"] for case in results["cases"]] == [ids[0]]
    pattern = "*" + ids[-1][-12:]
    matching = [i for i in ids if fnmatch.fnmatchcase(i, pattern)]
    assert main(["run", "--config", str(small_config), "--case", pattern, "--out",
                 str(tmp_path / "glob"), "--quiet", "--no-plots"]) == 0
    results = json.loads((tmp_path / "glob" / "results.json").read_text(encoding="utf-8"))
    assert [case["id"] for case in results["cases"]] == matching
    capsys.readouterr()
    assert main(["run", "--config", str(small_config), "--case", "no-such-case", "--out",
                 str(tmp_path / "none")]) == 2
    assert "no case id is 'no-such-case'" in capsys.readouterr().err


def test_csv_rows_with_awkward_values_match_pandas() -> None:
    """Commas, quotes, newlines, nan and inf written as pandas writes them."""
    from gradparity.report.results import checks_csv

    check = {"framework": "a,b", "baseline": 'say "x"', "quantity": "q\nr", "parameter": "W1",
             "normwise": "nan", "tolerance": "inf", "headroom": 1e-300, "passed": False,
             "worst_index": [1, 2], "value": -0.0, "note": ""}
    results = {"cases": [{"id": "c,1", "case": {"dtype": "float32"}, "checks": [check] * 2}]}
    assert checks_csv(results) == checks_frame(results).to_csv(index=False, lineterminator="\n")
