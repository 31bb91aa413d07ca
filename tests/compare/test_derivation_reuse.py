"""The float64 oracle's run as the tolerance model's clean trajectory: the same model, to
the bit, and the clean trajectory not computed a second time."""

from __future__ import annotations

import pytest

from gradparity.compare import derivation
from gradparity.harness.runner import float64_oracle
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem, problem_from_arrays

_MLP = dict(layer_sizes=(4, 8, 8, 3), loss="softmax_cross_entropy", dtype="float32",
            steps=3, batch_size=8)

CASES = [
    Case(hidden_activation="tanh", optimizer="adam", hyperparameters={"lr": 0.01}, **_MLP),
    Case(hidden_activation="gelu", optimizer="rmsprop",
         hyperparameters={"lr": 0.01, "momentum": 0.9, "centered": True}, **_MLP),
    Case(hidden_activation="sigmoid", optimizer="sgd",
         hyperparameters={"lr": 0.1, "momentum": 0.9}, **_MLP),
    Case(architecture="resmlp-ln", loss="softmax_cross_entropy", dtype="float32",
         optimizer="adamw", hyperparameters={"lr": 0.01}),
    Case(architecture="transformer", loss="softmax_cross_entropy", dtype="float32",
         optimizer="adam", hyperparameters={"lr": 0.01}),
    # float64: the reference's own run is the clean trajectory
    Case(hidden_activation="tanh", optimizer="adam", hyperparameters={"lr": 0.01},
         **{**_MLP, "dtype": "float64"}),
    # kinks: the clean trajectory watches them, so it is computed whatever is given
    Case(hidden_activation="relu", optimizer="adam", hyperparameters={"lr": 0.01}, **_MLP),
    Case(architecture="cnn", loss="softmax_cross_entropy", dtype="float32",
         optimizer="adam", hyperparameters={"lr": 0.01}),
]


def _clean_runs(monkeypatch) -> list[str]:
    """Counts the clean trajectories computed (noise None, from the first step)."""
    calls = []
    trajectory = derivation._trajectory

    def counted(case, problem, noise, *args, **kwargs):
        if noise is None and kwargs.get("start") is None:
            calls.append(case.id)
        return trajectory(case, problem, noise, *args, **kwargs)

    monkeypatch.setattr(derivation, "_trajectory", counted)
    return calls


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_the_oracles_run_gives_the_same_model(case, monkeypatch) -> None:
    kinked = derivation.KinkFlip(case, flip=False).active
    oracle = float64_oracle(case, make_problem(case))
    derivation.clear_caches()
    computed = derivation.derive(case)
    derivation.clear_caches()
    calls = _clean_runs(monkeypatch)
    reused = derivation.derive(case, clean=oracle)
    assert calls == ([case.id] if kinked else [])
    assert repr(reused) == repr(computed)  # repr: NaN reads as nan on both sides
    assert reused.sensitivity and reused.componentwise  # trajectory terms, not floors
    # cached per case: a later call with or without the run gives the same model
    assert derivation.derive(case) is reused
    derivation.clear_caches()


def test_a_users_data_reuses_the_oracles_run_on_that_data(monkeypatch) -> None:
    case = CASES[0]
    generated = make_problem(case)
    given = problem_from_arrays(case, generated.x * 2, generated.y)
    oracle = float64_oracle(case, given)
    computed = derivation.derive(case, given)
    calls = _clean_runs(monkeypatch)
    reused = derivation.derive(case, given, clean=oracle)
    assert calls == []
    assert repr(reused) == repr(computed)
    # and differs from the generated data's model: the run was really read
    assert repr(reused) != repr(derivation.derive(case))
    derivation.clear_caches()
