"""``--device``: torch and JAX on a GPU, the NumPy reference on the CPU.

Most of this runs on a CPU-only machine: the device placement code runs with an
explicit CPU device (the same code path as a GPU) and must give the default
numbers bitwise; without a GPU, ``cuda`` is a named skip, never a silent CPU run.
The GPU parity test itself skips, saying why, where there is no CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.adapters import get_adapter
from gradparity.cli.main import main
from gradparity.harness.audit import numeric_audit
from gradparity.harness.runner import run_case
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from tests.conftest import require

CASES = [
    Case((4, 8, 3), "tanh", loss="softmax_cross_entropy", dtype="float32", optimizer="adam",
         hyperparameters={"lr": 0.01}, steps=3),
    Case((4, 8, 8, 3), "relu", loss="softmax_cross_entropy", dtype="float64",
         options={"dropout": 0.5}, steps=3),
]


def _cuda_available(framework: str) -> bool:
    return get_adapter(framework, "cuda").availability().available


def test_a_bad_device_is_refused() -> None:
    message = "device: invalid value 'tpu'; allowed: cpu, cuda, gpu"
    with pytest.raises(ValueError, match=message):
        run_case(CASES[0], ("numpy",), device="tpu")
    with pytest.raises(ValueError, match=message):
        get_adapter("torch", "tpu")


@pytest.mark.parametrize("framework", ["torch", "jax"], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_explicit_placement_gives_the_default_numbers(framework: str, case: Case) -> None:
    """The placement code with the CPU as the named device: bitwise the default run."""
    require(framework)
    module = __import__(f"gradparity.adapters.{framework}_adapter", fromlist=["x"])
    adapter_class = type(module.ADAPTER)
    placed = adapter_class("cpu").run(case, make_problem(case))
    default = get_adapter(framework).run(case, make_problem(case))
    for mine, theirs in zip(placed.trajectory, default.trajectory, strict=True):
        for name in theirs:
            np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    for name in default.gradients:
        np.testing.assert_array_equal(placed.gradients[name], default.gradients[name])


@pytest.mark.parametrize("framework", ["torch", "jax"], ids=str)
def test_without_a_gpu_cuda_is_a_named_skip(framework: str) -> None:
    require(framework)
    if _cuda_available(framework):
        pytest.skip(f"{framework} has a CUDA device here: nothing to refuse")
    outcome = run_case(CASES[1], ("numpy", framework), device="cuda")
    assert "numpy" in outcome.results  # the reference runs on the CPU regardless
    assert framework not in outcome.results
    reason = outcome.skipped[framework]
    assert "cuda" in reason.lower() or "gpu" in reason.lower(), reason


def test_cli_refuses_a_device_no_framework_has(tmp_path, capsys) -> None:
    require("torch")
    require("jax")
    if _cuda_available("torch") or _cuda_available("jax"):
        pytest.skip("a CUDA device is present: the run would go ahead")
    out = tmp_path / "gpu"
    assert main(["run", "--device", "gpu", "--out", str(out), "--filter", "xor"]) == 2
    error = capsys.readouterr().err
    assert "--device gpu: no framework can run there" in error
    assert "torch:" in error and "jax:" in error
    assert not out.exists()  # nothing half-written


def test_the_audit_names_the_device_and_the_gpu_precision_policy() -> None:
    cpu, cuda = numeric_audit("cpu")["settings"], numeric_audit("cuda")["settings"]
    assert cpu["device"].startswith("cpu ") and cuda["device"].startswith("cuda ")
    assert "jax matmul precision in device sessions" not in cpu
    if "jax" not in cuda:  # installed
        assert cuda["jax matmul precision in device sessions"].startswith("highest")


@pytest.mark.parametrize("framework", ["torch", "jax"], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gpu_results_agree_with_the_cpu_reference(framework: str, case: Case) -> None:
    require(framework)
    if not _cuda_available(framework):
        pytest.skip(f"no CUDA device for {framework}: "
                    f"{get_adapter(framework, 'cuda').availability().reason}")
    outcome = run_case(case, ("numpy", framework), device="cuda")
    assert outcome.passed, [d.message() for d in outcome.checks if not d.passed][:5]
