"""The matrix: every framework against the NumPy reference, and against each other."""

from __future__ import annotations

import pytest

from gradparity.compare.metrics import assert_parity
from gradparity.compare.tolerances import FLOAT64_AGREEMENT_TARGET
from gradparity.harness.runner import compare_pair
from gradparity.spec.case import Case
from gradparity.spec.matrix import parity_cases
from tests.conftest import require, run_once

CASES = parity_cases()
QUANTITIES = ("loss", "gradient", "delta", "params@1", "params@10", "losses")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_framework_agrees_with_reference(case: Case, framework: str) -> None:
    """Every quantity is compared, and agrees (a failure names the quantity); float64
    also agrees to FLOAT64_AGREEMENT_TARGET normwise."""
    differences = compare_pair(run_once(case, framework), run_once(case, "numpy"), case)
    for quantity in QUANTITIES:
        assert any(d.quantity == quantity for d in differences), (
            f"no {quantity} checks were produced for {case.id}")
    assert_parity(differences)
    if case.dtype == "float64":
        worst = max(differences, key=lambda d: d.normwise)
        assert worst.normwise < FLOAT64_AGREEMENT_TARGET, worst.message()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_torch_agrees_with_jax(case: Case) -> None:
    require("torch")
    require("jax")
    assert_parity(compare_pair(run_once(case, "jax"), run_once(case, "torch"), case))


def test_xor_seed_example_agrees_over_1000_steps(framework: str) -> None:
    from gradparity.spec.matrix import xor_case

    case = xor_case("float64")
    result, reference = run_once(case, framework), run_once(case, "numpy")
    assert len(result.losses) == 1001
    assert_parity(compare_pair(result, reference, case, steps=(1, 10, 100, 1000)))
    # the network does learn: the loss goes down, identically in every implementation
    assert reference.losses[-1] < reference.losses[0]
