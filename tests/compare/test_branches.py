"""Kinks within rounding (``X_t``): a value a few eps from relu's kink may land on either
side in float32, and the optimizer carries the other branch into every later step.

The oracle here is the reference itself, run twice in float64 on weights that differ by
a rounding-sized nudge of one bias, which takes one pre-activation across the kink: both
runs are legitimate float32 outcomes, and the model must allow their distance, which it
did not before the branch term.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gradparity import reference
from gradparity.compare.branches import KinkFlip, watched_intermediates
from gradparity.compare.derivation import derive, floors
from gradparity.reference.schedules import step_hyperparameters
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem, problem_from_arrays
from gradparity.spec.evaluation import evaluate

CASE = Case((3, 6, 2), "relu", loss="mse", dtype="float32", optimizer="adam",
            hyperparameters={"lr": 0.01}, steps=6, batch_size=8)


def _with_bias(case: Case, unit: int, shift: float):
    """The case's problem with b1[unit] set so that example 0's pre-activation of ``unit``
    is ``shift`` (in float64 arithmetic), and the float64 parameters that give exactly
    that."""
    problem = make_problem(case)
    params = {n: np.array(v, dtype=np.float64) for n, v in problem.params.items()}
    x0 = np.asarray(problem.x[0], dtype=np.float64)
    params["b1"][..., unit] = shift - x0 @ params["W1"][:, unit]
    rounded = {n: v.astype(case.dtype) for n, v in params.items()}
    return problem_from_arrays(case, problem.x, problem.y, rounded)


def _trajectory(case: Case, params: dict, problem) -> list[dict]:
    """The float64 reference trajectory from ``params`` (the test's own loop)."""
    optimizer = reference.OPTIMIZERS[case.optimizer]
    wide = problem.as_float64()
    current, state, out = dict(params), optimizer.init(params), []
    for step in range(case.steps):
        grads = evaluate(case, current, wide.batch(step)).gradients
        hp = step_hyperparameters(case.hparams, case.all_options, step, case.steps)
        current, state = optimizer.update(current, grads, state, hp)
        out.append(current)
    return out


def _normwise(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_flip_mirrors_exactly_the_values_within_rounding_of_the_kink() -> None:
    flip = KinkFlip(CASE)
    reach = flip.watched[0].reach  # z_1 feeds relu; C sqrt(fan-in + 1) eps
    assert reach == pytest.approx(4 * np.sqrt(4) * np.finfo(np.float32).eps)
    z = np.array([[1.0, 0.5 * reach, -0.9 * reach, 1.1 * reach, 0.0, -2 * reach]])
    mirrored = flip.reset()(z.copy())
    np.testing.assert_array_equal(mirrored, [[1.0, -0.5 * reach, 0.9 * reach, 1.1 * reach,
                                              0.0, -2 * reach]])
    assert flip.found == 2
    counted = KinkFlip(CASE, flip=False)
    np.testing.assert_array_equal(counted(z.copy()), z)  # counting changes nothing
    assert counted.found == 2
    assert counted(z.copy()) is not None and counted.found == 2  # a_1: not watched


POOLED = Case(layers=({"type": "conv2d", "channels": 1, "kernel": 1},
                      {"type": "max_pool2d", "kernel": 2}, {"type": "flatten"},
                      {"type": "dense", "features": 2}), input_shape=(1, 4, 4),
              loss="softmax_cross_entropy", dtype="float32")


def test_flip_takes_the_runner_up_of_a_near_tie_in_a_max_pooling_window() -> None:
    flip = KinkFlip(POOLED)
    reach = flip.watched[0].reach  # conv1's output fills the pooling windows
    gap = 0.5 * reach  # times max|x| = 1
    # 2x2 windows: a dead one but for a tiny maximum, a near tie, a far one; an exact
    # tie, a near tie among negatives, a dead one
    x = np.array([[[[0.0, 1e-3 * gap, 1.0, 1.0 - gap, 0.9, 0.9 - 2 * reach],
                    [0.0, 0.0, 0.1, 0.0, 0.3, 0.0],
                    [0.5, 0.5, -0.3, -0.2, 0.0, 0.0],
                    [0.2, 0.1, -0.2 - gap / 2, -0.4, 0.0, 0.0]]]])
    out = flip.reset()(x.copy())
    expected = x.copy()
    expected[0, 0, 0, 3] = 1.0 + gap  # the near tie's runner-up now wins
    expected[0, 0, 3, 2] = -0.2 + gap / 2  # also among negatives
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)
    # left alone: the exact tie (0.5, 0.5), the far one, the dead one, and a relu's exact
    # 0 under a tiny maximum (1e-3 gap, 0): that is the kink's question, asked of the
    # relu's input
    assert flip.found == 2
    # the reference's own max-pool now routes the gradient to the runner-up
    pooled = POOLED.network().stack.layers[1]
    assert pooled.forward({}, out)[1][1][0, 0, 0, 1] == 1


@pytest.mark.parametrize(("case", "expected"), [
    (CASE, {0}),
    (Case((3, 4, 4, 2), ("relu", "tanh"), output_activation="identity"), {0}),
    (Case((3, 4, 4, 2), ("tanh", "leaky_relu")), {2}),
    (Case((3, 4, 2), "tanh"), set()),
    # conv1 and conv2 (relu follows), relu1 and relu2 (max-pooling follows)
    (Case(architecture="cnn", loss="softmax_cross_entropy"), {0, 1, 3, 4}),
    (Case(architecture="transformer", loss="softmax_cross_entropy"), set()),  # gelu inside
], ids=["mlp-relu", "relu-tanh", "tanh-leaky", "tanh", "cnn", "transformer"])
def test_watched_intermediates_are_the_inputs_of_kinked_activations(case, expected) -> None:
    _, watched = watched_intermediates(case)
    assert set(watched) == expected


def test_a_kink_crossed_by_rounding_is_allowed_and_was_a_false_alarm_before() -> None:
    near = _with_bias(CASE, unit=2, shift=0.0)  # within rounding of the kink
    wide = near.as_float64()
    z = wide.batch(0)[0] @ wide.params["W1"] + wide.params["b1"]
    reach = KinkFlip(CASE).watched[0].reach * np.abs(z).max()
    assert 0 < abs(z[0, 2]) < reach  # its sign is float32 rounding of b1
    # the other side, by a nudge of b1 far below float32's rounding of it
    other = dict(wide.params)
    other["b1"] = wide.params["b1"].copy()
    other["b1"][..., 2] -= 2 * z[0, 2]
    assert abs(2 * z[0, 2]) < np.finfo(np.float32).eps * np.abs(z).max()
    one, two = _trajectory(CASE, wide.params, near), _trajectory(CASE, other, near)

    model = derive(CASE, near)
    assert model.branched, "a value within rounding of the kink: the branch is measured"
    without = replace(model, branched={}, branched_loss=0.0)
    ratios, before = [], []
    for step, (a, b) in enumerate(zip(one, two, strict=True), start=1):
        for name in a:
            distance = _normwise(b[name], a[name])
            ratios.append(distance / model.normwise(f"params@{step}", name))
            before.append(distance / without.normwise(f"params@{step}", name))
    assert max(ratios) <= 1.0
    assert max(before) > 1.0  # the false alarm the branch term removes


def test_nothing_near_a_kink_adds_nothing() -> None:
    far = _with_bias(CASE, unit=2, shift=-0.3)
    model = derive(CASE, far)
    assert all(v == 0.0 for by_name in model.branched.values() for v in by_name.values())
    assert model.branched_loss == 0.0
    # and the first pass's probe is the two random draws alone: floors are unchanged
    assert floors(CASE, far).conditioning == model.conditioning


def test_the_outcome_and_the_report_name_the_pass_with_a_kink_within_rounding() -> None:
    from gradparity.harness.runner import run_case
    from gradparity.report.sections import kink_lines

    near, far = _with_bias(CASE, unit=2, shift=0.0), _with_bias(CASE, unit=2, shift=-0.3)
    options = {"explain": False, "finite_differences": False, "tolerances": "full"}
    kinked = run_case(CASE, ("numpy", "torch"), problem=near, **options)
    clear = run_case(CASE, ("numpy", "torch"), problem=far, **options)
    assert (kinked.kink_pass, clear.kink_pass) == (0, None)
    lines = kink_lines([kinked, clear])
    assert lines[0].startswith("**1 case has a value within rounding of an activation's kink or "
                               "a max-pooling tie**")
    assert lines[1:] == [f"- {CASE.id}: from pass 0", ""]
    assert kink_lines([clear]) == []


def test_the_false_alarm_the_slow_sweep_found_is_a_kink_crossed_by_rounding() -> None:
    """cnn, float32, Adam lr 0.01, seed 2: at pass 2 a conv2 pre-activation lies 1.1 eps
    (of the layer's largest) below relu's kink; JAX's float32 convolution rounds it to
    the other side, and Adam carries the difference to about 1e-2 by step 10 (it failed
    before the branch term). The kink is the float64 reference's: found whatever JAX does."""
    from gradparity.harness.runner import run_case
    from gradparity.spec.matrix import check_cases

    case = next(c for c in check_cases() if c.id == "cnn_softmax-ce_float32_adam_lr0.01")
    outcome = run_case(replace(case, seed=2), ("numpy", "jax"), explain=False,
                       finite_differences=False)
    assert outcome.kink_pass == 2
    assert outcome.passed, [d.message() for d in outcome.checks if not d.passed][:2]
