"""Data-parallel gradients (DDP over gloo, JAX over 2 host devices) equal one process."""

from __future__ import annotations

import pytest

from gradparity.harness.data_parallel import data_parallel_checks, unsupported_reason
from gradparity.spec.case import Case
from tests.conftest import require

CASES = [
    Case((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy"),
    Case((3, 8, 2), "gelu", loss="mse", batch_size=16),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("implementation", ["torch-ddp", "jax-2dev"])
def test_two_workers_agree_with_one_process_below_1e_12(case: Case, implementation) -> None:
    require("torch" if implementation == "torch-ddp" else "jax")
    differences = data_parallel_checks(case, (implementation,))
    assert len(differences) == 2 * case.num_layers
    for d in differences:
        assert d.passed, d.message()
        assert d.normwise < 1e-12, d.message()


def test_a_summed_loss_is_refused_with_the_ddp_convention() -> None:
    reason = unsupported_reason(Case((3, 8, 2), "tanh", loss="mse_sum"))
    assert "average the two halves' gradients, which halves a summed gradient" in reason
    with pytest.raises(ValueError, match=r"not comparable data-parallel: batch_size 7 does not "
                                         r"split into 2 equal halves"):
        data_parallel_checks(Case((3, 8, 2), "tanh", batch_size=7))
