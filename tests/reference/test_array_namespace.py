"""The reference on other array API namespaces: the same textbook lines, the same numbers.

``array_api_strict`` implements the standard and nothing more, on top of NumPy: the
reference running there proves it calls only the standard (anything else raises), and,
since the arithmetic underneath is NumPy's, its results must equal NumPy's to the bit.
torch tensors (through ``array_api_compat``) are a second, independent set of kernels:
float64 agreement to rounding. CuPy, the namespace a GPU run uses, is tested where a
GPU is present.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradparity.adapters.numpy_adapter import NumpyAdapter
from gradparity.compare.metrics import ORACLE
from gradparity.harness import audit, oracle
from gradparity.harness.oracle import float64_oracle, oracle_namespace, oracle_timing
from gradparity.harness.runner import run_case
from gradparity.reference.activations import ACTIVATIONS
from gradparity.reference.losses import LOSSES
from gradparity.reference.namespace import NAMESPACES, erf, erfc, named, namespace, to_numpy
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.matrix import default_cases, parity_cases

strict = pytest.importorskip("array_api_strict", reason="array-api-strict is a test "
                             "dependency (pip install -e '.[test]')")

DENSE_CASES = list({case.id: case for case in default_cases() + parity_cases()
                    if not case.is_sequence}.values())
SEQUENCE_CASE = next(case for case in default_cases() if case.is_sequence)

# kinks, saturation and ordinary values: where the branches of each function meet
SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 8.0, -8.0, 25.0,
           -25.0]


def _values(dtype: str, shape: tuple[int, ...] = (5, 7)) -> np.ndarray:
    rng = np.random.default_rng(7)
    values = np.concatenate([SPECIAL, 4 * rng.standard_normal(math.prod(shape))])
    return values[:math.prod(shape)].reshape(shape).astype(dtype)


def _bitwise_equal(found, expected) -> None:
    found, expected = to_numpy(found), np.asarray(expected)
    assert found.dtype == expected.dtype and found.shape == expected.shape
    np.testing.assert_array_equal(found, expected)
    assert np.array_equal(np.signbit(found), np.signbit(expected))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_on_the_strict_namespace_is_numpys_to_the_bit(name, dtype) -> None:
    activation = ACTIVATIONS[name]
    z = _values(dtype)
    a = activation.forward(z)
    _bitwise_equal(activation.forward(strict.asarray(z)), a)
    _bitwise_equal(activation.derivative(strict.asarray(z), strict.asarray(a)),
                   activation.derivative(z, a))


def _targets(loss_name: str, dtype: str, shape: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(3)
    kind = LOSSES[loss_name].target_kind
    if kind == "class_index":
        return rng.integers(0, shape[1], shape[0])
    if kind == "binary":
        return (rng.random(shape) > 0.5).astype(dtype)
    if kind == "probabilities":
        q = rng.random(shape).astype(dtype)
        return q / q.sum(axis=1, keepdims=True)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_on_the_strict_namespace_is_numpys_to_the_bit(name, dtype) -> None:
    loss = LOSSES[name]
    y = _targets(name, dtype, (5, 7))
    y_hat = _values(dtype)
    if loss.output_activation == "sigmoid":  # probabilities, 0 and 1 included
        y_hat = ACTIVATIONS["sigmoid"].forward(y_hat)
    stack = np.stack([y_hat, y_hat[::-1], 2 * y_hat])  # the finite differences' stacks
    if loss.output_activation == "sigmoid":
        stack = np.clip(stack, 0, 1)
    for given in (y_hat, stack):
        _bitwise_equal(loss.value(strict.asarray(given), strict.asarray(y)),
                       loss.value(given, y))
    _bitwise_equal(loss.gradient(strict.asarray(y_hat), strict.asarray(y)),
                   loss.gradient(y_hat, y))


def _same(found, expected) -> bool:
    if isinstance(expected, (tuple, list)):
        return len(found) == len(expected) and all(map(_same, found, expected))
    if isinstance(expected, dict):
        return found.keys() == expected.keys() and all(_same(found[k], expected[k])
                                                         for k in expected)
    found, expected = np.asarray(found), np.asarray(expected)
    return (found.dtype == expected.dtype and found.shape == expected.shape
            and np.array_equal(found, expected, equal_nan=True))


RESULT_FIELDS = ("loss", "gradients", "trajectory", "losses", "deltas", "states")


def test_float64_oracle_on_the_strict_namespace_is_numpys_to_the_bit() -> None:
    """Every dense MLP of the default and parity matrices: every activation, loss and
    optimizer with its variants, clipping, schedules and dropout."""
    assert len(DENSE_CASES) > 300
    different = []
    for case in DENSE_CASES:
        problem = make_problem(case)
        expected = float64_oracle(case, problem)
        found = float64_oracle(case, problem, "array_api_strict")
        different += [(case.id, field) for field in RESULT_FIELDS
                      if not _same(getattr(found, field), getattr(expected, field))]
    assert different == []


def test_the_strict_session_computes_with_the_strict_namespace() -> None:
    case = DENSE_CASES[0]
    session = NumpyAdapter(namespace="array_api_strict").start(case, make_problem(case))
    loss, gradients = session.loss_and_gradients(0)
    # the session's own arrays are the namespace's; what it hands out is NumPy's
    assert namespace(*session._params.values()) is strict
    assert namespace(*session._grads.values()) is strict
    assert isinstance(loss, np.ndarray) and all(isinstance(g, np.ndarray)
                                                for g in gradients.values())


def test_float64_oracle_on_torch_tensors_agrees_to_rounding() -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    worst = 0.0
    for case in DENSE_CASES[::3]:
        problem = make_problem(case)
        expected = float64_oracle(case, problem)
        found = float64_oracle(case, problem, "torch")
        for step in range(1, case.steps + 1):
            new, old = found.parameters_after(step), expected.parameters_after(step)
            for name in old:
                scale = max(float(np.max(np.abs(old[name]))), np.finfo(float).tiny)
                worst = max(worst, float(np.max(np.abs(new[name] - old[name]))) / scale)
    # torch's own float64 kernels: rounding differences only (1.6e-15 measured)
    assert 0 < worst < 1e-12


@pytest.mark.parametrize("library", ["array_api_strict", "torch"])
def test_erf_and_erfc_of_each_namespace_are_the_c_librarys(library) -> None:
    xp = named(library) if library == "array_api_strict" else pytest.importorskip(library)
    values = np.array([0.0, -0.0, 0.3, -1.7, 3.9, -5.5, 6.5, np.inf, -np.inf])
    found = to_numpy(erf(xp.asarray(values)))
    expected = [math.erf(v) for v in values]
    np.testing.assert_allclose(found, expected, rtol=4e-16, atol=0)
    # erfc is its own function, not 1 - erf: 4.2e-37 at 9, where 1 - erf(9) is 0
    values = np.append(values, [9.0, 26.0])
    found = to_numpy(erfc(xp.asarray(values)))
    np.testing.assert_allclose(found, [math.erfc(v) for v in values], rtol=4e-16, atol=0)
    assert found[-2] == pytest.approx(4.1370317465138102e-37, rel=1e-15) and found[-1] > 0


def test_a_sequence_network_is_refused_on_another_namespace() -> None:
    with pytest.raises(ValueError, match=r"reference_namespace: .*allowed: numpy"):
        NumpyAdapter(namespace="array_api_strict").start(SEQUENCE_CASE,
                                                         make_problem(SEQUENCE_CASE))


def test_an_unknown_namespace_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="reference_namespace: invalid value 'jnp'; "
                                         f"allowed: {', '.join(NAMESPACES)}"):
        NumpyAdapter(namespace="jnp")
    with pytest.raises(ValueError, match="reference_namespace"):
        oracle_namespace(DENSE_CASES[0], "cpu", "jnp")


@pytest.mark.parametrize(("device", "devices", "sequence", "expected"), [
    ("cpu", 1, False, "numpy"),
    ("cuda", 0, False, "numpy"),  # no CuPy, or no GPU for it
    ("cuda", 1, False, "cupy"),
    ("gpu", 1, False, "cupy"),
    ("cuda", 1, True, "numpy"),  # the layer library is NumPy's alone
], ids=["cpu", "cuda-without-cupy", "cuda", "gpu", "cuda-sequence"])
def test_the_oracle_runs_on_the_gpu_only_where_cupy_can(monkeypatch, device, devices,
                                                        sequence, expected) -> None:
    monkeypatch.setattr(oracle, "cupy_device_count", lambda: devices)
    case = SEQUENCE_CASE if sequence else DENSE_CASES[0]
    assert oracle_namespace(case, device) == expected
    assert oracle_namespace(case, device, "numpy") == "numpy"  # asked for: as asked


@pytest.mark.parametrize("devices", [0, 1])
def test_the_audit_says_where_the_oracle_ran(monkeypatch, devices) -> None:
    monkeypatch.setattr(audit, "cupy_device_count", lambda: devices)
    where = audit._where("cuda")
    assert ("float64 oracle and the tolerance model's trajectories of dense MLPs with CuPy "
            "on the GPU" in where) == bool(devices)
    assert ("NumPy on the CPU (CuPy is missing or sees no GPU)" in where) == (not devices)
    assert "CuPy" not in audit._where("cpu")


def _case(case_id_part: str) -> Case:
    return next(case for case in DENSE_CASES if case_id_part in case.id
                and case.dtype == "float32")


@pytest.mark.parametrize("part", ["gelu_softmax-ce", "adam_lr0.01_batches3_dropout0.5"])
def test_a_run_with_the_oracle_on_the_strict_namespace_reports_the_same(part) -> None:
    """The plumbing a GPU run takes (the oracle in another namespace, its results
    brought back), end to end on the CPU: the same checks, numbers and verdicts."""
    case = _case(part)
    on_numpy = run_case(case, ("numpy",))
    on_strict = run_case(case, ("numpy",), reference_namespace="array_api_strict")
    assert on_strict.checks == on_numpy.checks
    assert on_strict.verdicts == on_numpy.verdicts
    assert on_strict.trajectories == on_numpy.trajectories
    assert any(d.baseline == ORACLE for d in on_numpy.checks)


def test_the_oracle_on_cupy_agrees_with_numpys() -> None:
    if not oracle.cupy_device_count():
        pytest.skip("CuPy with a CUDA device is needed (the oracle's GPU namespace)")
    for case in DENSE_CASES[::7]:
        problem = make_problem(case)
        expected = float64_oracle(case, problem)
        found = float64_oracle(case, problem, "cupy")
        for step in range(1, case.steps + 1):
            for name, old in expected.parameters_after(step).items():
                np.testing.assert_allclose(found.parameters_after(step)[name], old,
                                           rtol=1e-11, atol=1e-14)


def test_the_oracle_bench_times_each_namespace_and_its_difference() -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    case = DENSE_CASES[0]
    lines = oracle_timing([case], ["numpy", "array_api_strict", "torch"])
    rows = {line.split(" | ")[1]: line.split(" | ") for line in lines[2:5]}
    assert rows["numpy"][3] == rows["numpy"][5] == "1.0x"
    assert rows["numpy"][6] == "0.0e+00 |"
    assert rows["array_api_strict"][6] == "0.0e+00 |"  # NumPy's arithmetic underneath
    assert 0 < float(rows["torch"][6].rstrip(" |")) < 1e-12  # torch's own kernels
    assert all(float(row[4]) > 0 for row in rows.values())  # the model, timed
    assert len(lines) == 5  # the namespaces asked for, no note


def test_the_oracle_bench_says_why_it_has_no_cupy_row(monkeypatch) -> None:
    monkeypatch.setattr(oracle, "cupy_device_count", lambda: 0)
    lines = oracle_timing([DENSE_CASES[0]])
    assert [line.split(" | ")[1] for line in lines[2:-2]] == ["numpy"]
    assert lines[-1] == "(no CuPy row: CuPy is missing or sees no GPU)"


def test_an_adapter_on_another_namespace_pickles_by_name() -> None:
    """Adapters travel to worker processes: a module would not pickle, its name does."""
    import pickle

    adapter = pickle.loads(pickle.dumps(NumpyAdapter(namespace="array_api_strict")))
    case = DENSE_CASES[0]
    session = adapter.start(case, make_problem(case))
    session.loss_and_gradients(0)
    assert namespace(*session._params.values()) is strict
