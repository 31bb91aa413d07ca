"""What ``run_case`` derives, how often, and when: the tolerance model once per run,
before the frameworks' runs are held."""

from __future__ import annotations

import numpy as np

from gradparity.adapters import base
from gradparity.compare import derivation
from gradparity.harness import runner
from gradparity.harness.runner import run_case
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem, problem_from_arrays

CASE = Case((3, 8, 2), "tanh", loss="softmax_cross_entropy", dtype="float32",
            optimizer="adam", hyperparameters={"lr": 1e-2}, steps=3, batch_size=8)


def _counted(monkeypatch) -> list[str]:
    calls = []
    trajectories = derivation._with_trajectories

    def with_trajectories(case, static, wide, recorded=None, draw=0, xp=np):
        calls.append(case.id)
        return trajectories(case, static, wide, recorded, draw, xp)

    monkeypatch.setattr(derivation, "_with_trajectories", with_trajectories)
    return calls


def _recorded_runs(monkeypatch, order: list[str]) -> None:
    """Every framework run appends "<framework> <dtype>" to ``order``."""
    run = base.Adapter.run

    def ran(self, case, problem):
        order.append(f"{self.name} {case.dtype}")
        return run(self, case, problem)

    monkeypatch.setattr(base.Adapter, "run", ran)


def test_a_users_data_is_derived_once_for_every_pair(monkeypatch) -> None:
    generated = make_problem(CASE)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(generated.x.shape).astype(np.float32)
    y = rng.integers(0, 2, size=generated.y.shape[0])
    given = problem_from_arrays(CASE, x, y)
    calls = _counted(monkeypatch)
    outcome = run_case(CASE, ("numpy", "torch"), problem=given, finite_differences=False)
    # the numpy-torch pair and both implementations against the float64 oracle: three
    # judged pairs (each derived the model once before)
    assert len({(d.framework, d.baseline) for d in outcome.checks}) == 3
    assert outcome.passed
    assert calls == [CASE.id]


def test_the_model_is_derived_before_the_frameworks_run(monkeypatch) -> None:
    derivation.clear_caches()
    order = []
    derive = runner.derive

    def derived(*args, **kwargs):
        order.append("model")
        return derive(*args, **kwargs)

    monkeypatch.setattr(runner, "derive", derived)
    _recorded_runs(monkeypatch, order)
    assert run_case(CASE, ("numpy", "torch"), finite_differences=False).passed
    # the float64 oracle first (its run is the model's clean trajectory), and only once
    assert order == ["numpy float64", "model", "numpy float32", "torch float32"]


def test_one_framework_alone_derives_nothing(monkeypatch) -> None:
    derivation.clear_caches()
    calls = _counted(monkeypatch)
    float64 = Case((3, 8, 2), "tanh", loss="softmax_cross_entropy", steps=2)
    outcome = run_case(float64, ("numpy",), finite_differences=False)
    assert not outcome.compared and calls == []  # no pair, no oracle: no model needed


def test_freed_memory_is_handed_back_once_after_the_oracles_run(monkeypatch) -> None:
    """Once the float64 oracle's run is dropped, before the teacher-forced reruns: after
    the tolerance model its pages stay in the heap for the runs (handing them back there
    cost time and lowered no peak, docs/speed.md)."""
    derivation.clear_caches()
    order = []
    forced = runner.run_teacher_forced

    def rerun(adapter, *args):
        order.append(f"{adapter.name} teacher-forced")
        return forced(adapter, *args)

    _recorded_runs(monkeypatch, order)
    monkeypatch.setattr(runner, "run_teacher_forced", rerun)
    monkeypatch.setattr(runner, "release_freed_memory", lambda size: order.append("release"))
    assert run_case(CASE, ("numpy", "torch")).passed
    assert order.count("release") == 1
    released = order.index("release")
    assert order[released + 1:] == ["torch teacher-forced"]
    assert order[:3] == ["numpy float64", "numpy float32", "torch float32"]


def test_a_float64_case_reads_its_clean_trajectory_from_the_references_run(monkeypatch
                                                                          ) -> None:
    derivation.clear_caches()
    order = []
    trajectory = derivation._trajectory

    def counted(case, problem, noise, *args, **kwargs):
        order.append(f"trajectory {noise}")
        return trajectory(case, problem, noise, *args, **kwargs)

    _recorded_runs(monkeypatch, order)
    monkeypatch.setattr(derivation, "_trajectory", counted)
    wide = Case((3, 8, 2), "tanh", loss="softmax_cross_entropy", optimizer="adam",
                hyperparameters={"lr": 1e-2}, steps=3, batch_size=8)
    outcome = run_case(wide, ("numpy", "torch"), finite_differences=False)
    assert outcome.passed and list(outcome.results) == ["numpy", "torch"]
    # the reference first, the perturbed trajectories (no clean one), then torch
    assert order[0] == "numpy float64" and order[-1] == "torch float64"
    assert "trajectory None" not in order
    assert {entry for entry in order[1:-1]} <= {"trajectory gradient", "trajectory state",
                                                 "trajectory componentwise"}
