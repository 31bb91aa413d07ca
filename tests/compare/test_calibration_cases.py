"""The closest calls of the slow calibration sweep (``nox -s slow``), held here on their
own: each was above the 0.5 observed/allowed bound before the model term that covers it.

* a float64 cnn-bn running mean: a batch mean near 0 of values near 1 cancels, and torch
  and the reference were 9.3 eps apart against 16 eps allowed (0.58); the running
  statistics now get their own Gamma and Rho;
* a float32 transformer with Adam: dense-layer gradient entries whose terms cancel,
  which the componentwise probe of a network of layers did not see (0.53); it now takes
  the reference's own float32 rounding of each entry too.

The other side is torch, an independent implementation; the tolerance is the model's.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gradparity.harness.runner import run_case
from gradparity.spec.matrix import check_cases

CLOSEST = [
    ("cnn-bn_softmax-ce_float64_sgd", 14, "state", "running/bn1.running_mean"),
    ("transformer_softmax-ce_float32_adam_lr0.01", 7, "trajectory", "res2.dense2.W"),
]


@pytest.mark.parametrize(("case_id", "seed", "quantity", "parameter"), CLOSEST,
                         ids=[f"{c}-seed{s}" for c, s, _, _ in CLOSEST])
def test_the_sweeps_closest_calls_are_within_half_their_tolerance(case_id, seed, quantity,
                                                                 parameter) -> None:
    case = next(c for c in check_cases() if c.id == case_id)
    outcome = run_case(replace(case, seed=seed), ("numpy", "torch"), explain=False,
                       finite_differences=False)
    (worst,) = [d for d in outcome.checks if (d.quantity, d.parameter) == (quantity, parameter)]
    assert worst.normwise_eps > 1.0  # a real rounding difference, not a tie at zero
    assert worst.headroom < 0.5, worst.message()
