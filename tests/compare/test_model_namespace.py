"""The tolerance model's trajectories on another array namespace (CuPy on a GPU): the same
model. On ``array_api_strict`` (the standard alone, NumPy's arithmetic underneath) it is
NumPy's to the bit, which also proves that the trajectories, the probes, the random
signs and the kink watch call nothing outside the standard."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gradparity.compare import random_signs
from gradparity.compare.branches import KinkFlip
from gradparity.compare.derivation import derive
from gradparity.harness.runner import run_case
from gradparity.reference.blocks import BLOCK_ENTRIES
from gradparity.reference.namespace import to_numpy
from gradparity.spec.data import make_problem
from gradparity.spec.matrix import default_cases, parity_cases

strict = pytest.importorskip("array_api_strict", reason="array-api-strict is a test "
                             "dependency (pip install -e '.[test]')")

DENSE_CASES = list({case.id: case for case in default_cases() + parity_cases()
                    if not case.is_sequence}.values())
SAMPLE = DENSE_CASES[::4]


def test_the_sample_covers_what_the_trajectories_branch_on() -> None:
    """Kinks (the kink watch and the branch trajectory), Adam's update trajectory in
    float32, optimizer state (the state trajectory), dropout, both dtypes."""
    assert {"relu", "leaky_relu", "elu"} <= {a for c in SAMPLE for a in c.activations}
    assert {"sgd", "adam", "adamw", "amsgrad", "rmsprop", "adagrad"} <= {
        c.optimizer for c in SAMPLE}
    assert {"float32", "float64"} <= {c.dtype for c in SAMPLE}
    assert any(c.option("dropout") for c in SAMPLE)


def test_the_model_on_the_strict_namespace_is_numpys_to_the_bit() -> None:
    different = []
    for case in SAMPLE:
        problem = make_problem(case)
        expected = pickle.dumps(derive(case, problem))
        if pickle.dumps(derive(case, problem, namespace="array_api_strict")) != expected:
            different.append(case.id)
    assert different == []


def test_a_confirming_draw_on_the_strict_namespace_is_numpys() -> None:
    case = next(c for c in SAMPLE if c.optimizer == "rmsprop")
    problem = make_problem(case)
    assert pickle.dumps(derive(case, problem, draw=3, namespace="array_api_strict")) == (
        pickle.dumps(derive(case, problem, draw=3)))


def test_generated_data_caches_each_namespace_apart() -> None:
    case = SAMPLE[1]
    on_numpy = derive(case)
    on_strict = derive(case, namespace="array_api_strict")
    assert on_strict is not on_numpy and on_strict == on_numpy  # equal, cached apart
    assert derive(case, namespace="array_api_strict") is on_strict


def test_a_sequence_network_keeps_its_model_on_numpy() -> None:
    case = next(c for c in default_cases() if c.is_sequence)
    with pytest.raises(ValueError, match=r"namespace: .*allowed: numpy"):
        derive(case, namespace="array_api_strict")


@pytest.mark.parametrize("size", [7, 3 * BLOCK_ENTRIES + 11], ids=["small", "blocked"])
def test_random_signs_draw_the_same_signs_in_any_namespace(size) -> None:
    """NumPy draws a large array block by block; another namespace draws it whole: the
    same draws, the same arithmetic."""
    values = np.random.default_rng(0).standard_normal((size, 2))
    amounts = np.abs(values) * 1e-3
    for function, argument in ((random_signs.scaled, 1e-8), (random_signs.moved, amounts)):
        on_strict = argument if function is random_signs.scaled else strict.asarray(argument)
        expected = function(values, argument, np.random.default_rng(5))
        found = function(strict.asarray(values), on_strict, np.random.default_rng(5))
        np.testing.assert_array_equal(to_numpy(found), expected)
        assert not np.array_equal(expected, values)  # it moved them


@pytest.mark.parametrize("flip", [True, False], ids=["flip", "count"])
def test_the_kink_watch_is_the_same_in_any_namespace(flip) -> None:
    case = next(c for c in DENSE_CASES if c.activations[0] == "relu")
    values = np.array([[-1.0, 1e-17, -1e-17, 0.0, 0.5, 2e-16], [3.0, -2.0, 1e-18, 1.0,
                                                                  -4e-17, 0.25]])
    on_numpy, on_strict = KinkFlip(case, flip), KinkFlip(case, flip)
    expected, found = on_numpy(values), on_strict(strict.asarray(values))
    np.testing.assert_array_equal(to_numpy(found), expected)
    assert on_strict.found == on_numpy.found > 0
    assert flip == (not np.array_equal(expected, values))


@pytest.mark.parametrize("part", ["relu_softmax-ce_float32_sgd", "rmsprop_lr0.01_momentum0.9"])
def test_a_run_with_the_model_on_torch_tensors_agrees_on_the_verdicts(part) -> None:
    """torch's float64 kernels round differently, as a GPU's do: the model's terms move
    like another draw of its probes (tens of percent where training is sensitive), the
    verdicts do not."""
    pytest.importorskip("torch", reason="torch is not installed")
    case = next(c for c in DENSE_CASES if part in c.id and c.dtype == "float32")
    on_numpy = run_case(case, ("numpy",))
    on_torch = run_case(case, ("numpy",), reference_namespace="torch")
    assert [d.passed for d in on_torch.checks] == [d.passed for d in on_numpy.checks]
    assert all(d.passed for d in on_torch.checks)


@pytest.mark.parametrize(("dtype", "reused"), [("float32", True), ("float64", False)])
def test_the_clean_trajectory_is_reused_only_from_the_models_namespace(
        monkeypatch, dtype, reused) -> None:
    """A float32 case's oracle ran where the model runs; a float64 case's clean run is the
    NumPy implementation's own, on the CPU, which must not stand in for a trajectory on
    another namespace: its different rounding would read as the perturbations' effect."""
    pytest.importorskip("torch", reason="torch is not installed")
    from gradparity.harness import runner

    case = next(c for c in DENSE_CASES if "tanh_softmax-ce" in c.id and c.dtype == dtype
                and c.optimizer == "adam")
    cleans = []
    derived = runner.derive

    def recorded(*args, clean=None, **kwargs):
        cleans.append(clean)
        return derived(*args, clean=clean, **kwargs)

    monkeypatch.setattr(runner, "derive", recorded)
    for namespace in ("numpy", "torch"):
        run_case(case, ("numpy", "torch"), finite_differences=False,
                 reference_namespace=namespace)
    assert cleans[0] is not None  # on NumPy, every case reuses its float64 run
    assert (cleans[-1] is not None) == reused
