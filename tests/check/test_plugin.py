"""Bad plug-ins get a one-line error; a crash in user code comes with its traceback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from gradparity.check.assertions import BackpropMismatch, assert_backprop
from gradparity.check.plugin import PluginError, UserCodeError, load_plugin
from gradparity.check.textbook import gradients as textbook_gradients
from gradparity.check.verifier import verify
from gradparity.cli.main import main
from gradparity.compare.derivation import derive
from gradparity.spec.case import Case

CASE = Case((3, 5, 2), "tanh", steps=2)


def _write(tmp_path: Path, source: str) -> str:
    path = tmp_path / "impl.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:gradients", "module not found: no_such_module_xyz"),
        ("missing/file.py:gradients", "plug-in file not found: missing/file.py"),
        ("gradparity.check.textbook:nothing_here",
         "gradparity.check.textbook has no attribute 'nothing_here'"),
        ("gradparity.check.textbook:_TEXTBOOK.gradients", "has no attribute"),
        ("gradparity.spec.case:DTYPES", "is not callable"),
        ("gradparity.spec.case:machine_epsilon", "has no attribute"),
        ("gradparity.compare.tolerances:fixed_tolerance", "must accept (params, x, y, case)"),
    ],
)
def test_unloadable_plugins_give_one_line(spec: str, message: str) -> None:
    with pytest.raises(PluginError) as error:
        load_plugin(spec)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_unloadable_plugin_exits_2(capsys) -> None:
    assert main(["check", "no_such_module_xyz:gradients", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "gradparity check: module not found: no_such_module_xyz"


def test_exception_at_import_is_reported_with_traceback(tmp_path: Path, capsys) -> None:
    spec = _write(tmp_path, "import numpy\nraise RuntimeError('broken at import')\n")
    with pytest.raises(UserCodeError, match=r"importing .*impl\.py raised RuntimeError"):
        load_plugin(f"{spec}:gradients")
    assert main(["check", f"{spec}:gradients"]) == 2
    assert "broken at import" in capsys.readouterr().err


CONTRACT_VIOLATIONS = {
    "returns one value": ("return 1.0", "gradients must return (loss, grads), got float"),
    "returns a triple": ("return 1.0, {}, None",
                         "gradients must return (loss, grads), got tuple of length 3"),
    "wrong keys": ("return 1.0, {'dW1': params['W1']}",
                   "grads keys do not match params: missing ['W1', 'W2', 'b1', 'b2'], "
                   "unexpected ['dW1']"),
    "loss not scalar": ("return numpy.ones(3), dict(params)",
                        "the returned loss must be a scalar, got shape (3,)"),
    "grads not a dict": ("return 1.0, [1, 2]", "grads must be a dict keyed like params, got list"),
    "text gradient": ("return 1.0, {k: 'abc' for k in params}",
                      "grads['W1'] is not numeric (dtype <U3)"),
}


@pytest.mark.parametrize("violation", sorted(CONTRACT_VIOLATIONS))
def test_contract_violations_are_one_line(violation: str, tmp_path: Path) -> None:
    body, message = CONTRACT_VIOLATIONS[violation]
    spec = _write(tmp_path, f"import numpy\ndef gradients(params, x, y, case):\n    {body}\n")
    report = verify(spec, cases=[CASE], frameworks=("numpy",))
    (check,) = report.cases
    assert check.status == "contract error"
    assert check.message == message
    assert report.exit_code == 1


def test_exception_inside_user_code_keeps_its_traceback(tmp_path: Path) -> None:
    spec = _write(tmp_path, """\
        def helper(params):
            return params["W9"]

        def gradients(params, x, y, case):
            return helper(params)
        """)
    (check,) = verify(spec, cases=[CASE], frameworks=("numpy",)).cases
    assert check.status == "error"
    assert check.message == "gradients raised KeyError: 'W9'"
    assert 'impl.py", line 2, in helper' in check.details


def test_wrong_shapes_and_nan_are_diagnosed(tmp_path: Path) -> None:
    spec = _write(tmp_path, """\
        import numpy as np
        from gradparity.check.textbook import gradients as right

        def gradients(params, x, y, case):
            loss, grads = right(params, x, y, case)
            grads["W1"] = grads["W1"].T
            grads["b2"] = grads["b2"] * np.nan
            return loss, grads
        """)
    (check,) = verify(spec, cases=[CASE], frameworks=("numpy",)).cases
    findings = {f.parameter: f.message for f in check.findings}
    assert findings["W1"].startswith("transposed: shape (5, 3) instead of (3, 5)")
    assert "contains nan at index (0,)" in findings["b2"]
    failed = [d.message() for d in check.differences if not d.passed]
    assert any("gradient of W1: shape (5, 3) does not match the numpy shape (3, 5)" in m
               for m in failed)


def test_not_implemented_means_not_handled(tmp_path: Path, capsys) -> None:
    spec = _write(tmp_path, """\
        def gradients(params, x, y, case):
            raise NotImplementedError("only relu")
        """)
    report = verify(spec, cases=[CASE], frameworks=("numpy",))
    assert report.cases[0].status == "not handled"
    assert report.exit_code == 1  # nothing was checked: not a pass
    assert main(["check", f"{spec}:gradients", "--case", "*xor*", "--quiet"]) == 1
    assert "no case was checked" in capsys.readouterr().out


def test_user_code_cannot_corrupt_the_shared_inputs(tmp_path: Path) -> None:
    spec = _write(tmp_path, """\
        from gradparity.check.textbook import gradients as right

        def gradients(params, x, y, case):
            result = right(params, x, y, case)
            params["W1"][...] = 0.0
            x[...] = 0.0
            return result
        """)
    report = verify(spec, cases=[CASE, CASE], frameworks=("numpy",))
    assert [c.status for c in report.cases] == ["pass", "pass"]


def test_plain_callables_and_objects_work_from_python() -> None:
    from gradparity.check.mutants import BY_NAME

    assert verify(textbook_gradients, cases=[CASE], frameworks=("numpy",)).passed
    mutant = BY_NAME["adam_eps_inside_sqrt"].implementation
    adam = Case((3, 5, 2), "tanh", optimizer="adam", hyperparameters={"lr": 0.01}, steps=3)
    report = verify(mutant, cases=[adam], frameworks=("numpy",))
    assert not report.passed  # the object's own step() was used
    assert report.cases[0].first_divergent_step == 1


def test_assert_backprop_message_names_case_parameter_index_values_tolerance() -> None:
    def doubled(params, x, y, case):
        loss, grads = textbook_gradients(params, x, y, case)
        grads["W2"] = 2 * grads["W2"]
        return loss, grads

    with pytest.raises(BackpropMismatch) as error:
        assert_backprop(doubled, cases=[CASE], frameworks=("numpy",))
    message = str(error.value)
    assert CASE.id in message
    assert "yours vs numpy, gradient of W2" in message
    assert "worst index (" in message and "yours=" in message and "numpy=" in message
    assert f"tolerance {derive(CASE).normwise('gradient', 'W2'):.3e}" in message
    assert "W2: off by a constant factor x2" in message


def test_the_fixture_is_registered_through_the_entry_point(pytester) -> None:
    pytester.makepyfile(test_user="""
        from gradparity.spec.case import Case
        from gradparity.check.textbook import gradients

        def test_mine(gradparity_check):
            gradparity_check(gradients, cases=[Case((3, 4, 2))], frameworks=("numpy",))
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_filters_name_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"loss: invalid value 'hinge'; allowed: mse"):
        verify(textbook_gradients, loss="hinge")
    assert main(["check", "gradparity.check.textbook:gradients", "--dtype", "float16"]) == 2


def test_check_cli_report_and_shrunk_reproduction(tmp_path: Path, capsys) -> None:
    import subprocess
    import sys

    report_path = tmp_path / "check.md"
    code = main([
        "check", "gradparity.check.mutants:mse_missing_mean",
        "--case", "mlp4-16-16-3_tanh_mse_float64_sgd",
        "--frameworks", "numpy", "--report", str(report_path), "--shrink", str(tmp_path),
    ])
    assert code == 1
    text = report_path.read_text(encoding="utf-8")
    assert text.startswith("# gradparity check: `gradparity.check.mutants:mse_missing_mean`")
    assert "**FAIL: 1 of 1 checked cases disagree (0 not handled)**" in text
    assert "the 1/n of the mean dropped" in text
    scripts = sorted(tmp_path.glob("*.py"))
    assert len(scripts) == 1
    # shrunk below the original (4, 16, 16, 3), batch 8, 10 steps
    assert "mlp4-16-16-3" not in scripts[0].name
    run = subprocess.run([sys.executable, str(scripts[0])], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 1, run.stderr
    assert "gradient of W1: normwise relative error" in run.stdout and "WRONG" in run.stdout


def test_seeds_option_repeats_cases() -> None:
    report = verify(textbook_gradients, case="mlp4-16-16-3_relu_mse_float64_sgd", seeds=3,
                    frameworks=("numpy",))
    assert sorted(c.case.seed for c in report.cases) == [0, 1, 2]
    assert report.passed


def test_check_exit_code_0_for_the_reference(capsys) -> None:
    code = main(["check", "gradparity.check.textbook:gradients", "--case", "*xor*",
                     "--frameworks", "numpy", "--quiet"])
    assert code == 0
    assert capsys.readouterr().out.strip() == "PASS: all 2 checked cases agree (0 not handled)"


def test_nan_outputs_never_pass() -> None:
    def nan_everywhere(params, x, y, case):
        return float("nan"), {k: np.full_like(v, np.nan) for k, v in params.items()}

    report = verify(nan_everywhere, cases=[CASE], frameworks=("numpy",))
    assert report.exit_code == 1
    assert any(f.kind == "nonfinite" for f in report.cases[0].findings)
