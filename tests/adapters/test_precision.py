"""A float64 case never silently runs in float32, in any adapter."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.adapters import PrecisionError, get_adapter
from gradparity.spec.case import Case
from gradparity.spec.data import Problem, make_problem
from tests.conftest import require, run_once

CASE64 = Case((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy", dtype="float64")
CASE32 = Case((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy", dtype="float32")


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("case", [CASE32, CASE64], ids=lambda c: c.dtype)
def test_every_returned_array_has_the_case_dtype(name: str, case: Case) -> None:
    result = run_once(case, name)
    arrays = [*result.gradients.values(), result.losses]
    arrays += [value for params in result.trajectory for value in params.values()]
    assert {array.dtype for array in arrays} == {np.dtype(case.dtype)}


def test_float64_results_carry_float64_information(framework: str) -> None:
    """Independent of any dtype attribute: float64 results are not float32 numbers upcast."""
    grads = run_once(CASE64, framework).gradients
    for name, grad in grads.items():
        assert not np.array_equal(grad, grad.astype(np.float32).astype(np.float64)), name


def test_jax_without_x64_fails_loudly(monkeypatch) -> None:
    require("jax")
    import jax

    from gradparity.adapters import jax_adapter

    monkeypatch.setattr(jax_adapter, "_set_x64", lambda enabled: None)
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(PrecisionError, match=r"jax: .* is float32, case .* is float64"):
            get_adapter("jax").run(CASE64, make_problem(CASE64))
    finally:
        jax.config.update("jax_enable_x64", previous)


def test_jax_float32_results_do_not_depend_on_earlier_float64_cases() -> None:
    require("jax")
    import jax

    from gradparity.spec.case import Case as C

    adam32 = C((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy", dtype="float32",
               optimizer="adam", hyperparameters={"lr": 0.01})
    jax.config.update("jax_enable_x64", False)  # as in a fresh process
    before = get_adapter("jax").run(adam32, make_problem(adam32))
    get_adapter("jax").run(CASE64, make_problem(CASE64))  # switches x64 on
    after = get_adapter("jax").run(adam32, make_problem(adam32))
    for name, value in before.trajectory[-1].items():
        np.testing.assert_array_equal(value, after.trajectory[-1][name], err_msg=name)


def test_torch_downcast_fails_loudly(monkeypatch) -> None:
    require("torch")
    import torch

    from gradparity.adapters import torch_adapter

    monkeypatch.setitem(torch_adapter._TORCH_DTYPES, "float64", torch.float32)
    with pytest.raises(PrecisionError, match=r"torch: x is torch.float32, case .* is float64"):
        get_adapter("torch").run(CASE64, make_problem(CASE64))


def test_numpy_downcast_fails_loudly(monkeypatch) -> None:
    from gradparity import reference

    original = reference.Backprop.weight_gradient

    def float32_inside(self, a_prev, delta):
        return original(self, a_prev, delta).astype(np.float32)

    monkeypatch.setattr(reference.Backprop, "weight_gradient", float32_inside)
    with pytest.raises(PrecisionError, match=r"numpy: gradient of W1 came back as float32"):
        get_adapter("numpy").run(CASE64, make_problem(CASE64))


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_inputs_in_another_dtype_are_refused(name: str) -> None:
    require(name)
    problem = make_problem(CASE32)
    mismatched = Problem(params=problem.params, x=problem.x, y=problem.y)
    with pytest.raises(ValueError, match=r"problem.W1: dtype float32 does not match case.dtype"):
        get_adapter(name).run(CASE64, mismatched)
