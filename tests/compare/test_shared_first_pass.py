"""The tolerance model's perturbed trajectories share their first, unperturbed pass:
each yields, to the bit, what it yields when it runs that pass itself, however the
others advance meanwhile (none may write into the shared gradients or statistics)."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.compare import derivation
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.evaluation import evaluate

CASES = [
    Case(layer_sizes=(4, 8, 8, 3), hidden_activation="tanh", loss="softmax_cross_entropy",
         dtype="float32", optimizer="adam", hyperparameters={"lr": 0.01}, steps=3,
         batch_size=8),
    Case(architecture="cnn", loss="softmax_cross_entropy", dtype="float32",
         optimizer="adam", hyperparameters={"lr": 0.01}, steps=2),
]
NOISES = ("gradient", "update", "componentwise", "state")


def _steps(runs, steps: int) -> list[list]:
    """Advance every run one step at a time, side by side, as the model does (and once
    more: each is then exhausted)."""
    seen: list[list] = [[] for _ in runs]
    for _ in range(steps + 1):
        for kept, run in zip(seen, runs, strict=True):
            kept.extend([next(run, None)])
    return seen


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_sharing_the_first_pass_changes_no_step(case) -> None:
    wide = make_problem(case).as_float64()
    first = evaluate(case, wide.params, wide.batch(0), wide.state, keep_forward=True)
    before = {n: g.copy() for n, g in first.gradients.items()}
    shared = _steps([derivation._trajectory(case, wide, noise, initial=first)
                     for noise in NOISES], case.steps)
    alone = _steps([derivation._trajectory(case, wide, noise) for noise in NOISES], case.steps)
    for noise, mine, theirs in zip(NOISES, shared, alone, strict=True):
        assert len(mine) == len(theirs) and mine[case.steps] is None
        for step, (got, expected) in enumerate(zip(mine[:-1], theirs[:-1], strict=True), 1):
            assert got[1] == expected[1], (noise, step, "loss")
            assert list(got[0]) == list(expected[0])
            for name, value in expected[0].items():
                np.testing.assert_array_equal(got[0][name], value, strict=True,
                                              err_msg=f"{noise} step {step} {name}")
    for name, value in before.items():  # nobody wrote into the shared pass
        np.testing.assert_array_equal(first.gradients[name], value, strict=True)


def test_the_last_pass_gives_the_loss_of_a_full_pass() -> None:
    case = CASES[0]
    wide = make_problem(case).as_float64()
    params = wide.params
    full = evaluate(case, params, wide.batch(case.steps), wide.state)
    loss_only = evaluate(case, params, wide.batch(case.steps), wide.state, backward=False)
    assert float(loss_only.loss) == float(full.loss) and not loss_only.gradients
