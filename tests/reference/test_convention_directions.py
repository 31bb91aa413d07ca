"""Each convention option changes the reference's result, in the documented direction.

These tests use only the NumPy reference and the math the catalogue states;
no framework is involved, so a wrong option wiring fails here even where both
frameworks happen to agree with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS, loss_and_gradients
from gradparity.reference.optimizers import clip_gradients
from gradparity.reference.schedules import learning_rate, step_hyperparameters
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.options import OPTIONS

RNG = np.random.default_rng(0)
PARAMS = {"W1": RNG.standard_normal((3, 4)), "b1": RNG.standard_normal(4)}


def _grads(scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    # mixes large and tiny entries: the placements differ most where v is small
    return {n: scale * rng.standard_normal(p.shape) * np.logspace(-5, 0, p.size).reshape(p.shape)
            for n, p in PARAMS.items()}


def _run(optimizer: str, hp: dict, grads_per_step: list[dict], options: dict | None = None,
         steps: int | None = None) -> list[dict[str, np.ndarray]]:
    """The parameters after every step of the reference optimizer on given gradients."""
    spec = OPTIMIZERS[optimizer]
    full = {**{k: v for k, v in spec.hyperparameters.items() if v is not None}, **hp}
    all_options = {name: option.default for name, option in OPTIONS.items()}
    all_options.update(options or {})
    params, state, trajectory = dict(PARAMS), spec.init(PARAMS), []
    total = steps or len(grads_per_step)
    for k, grads in enumerate(grads_per_step):
        params, state = spec.update(params, grads, state,
                                    step_hyperparameters(full, all_options, k, total))
        trajectory.append(params)
    return trajectory


def _moves(trajectory: list[dict], start: dict | None = None) -> dict[str, np.ndarray]:
    start = PARAMS if start is None else start
    return {n: np.abs(trajectory[-1][n] - start[n]) for n in start}


@pytest.mark.parametrize("optimizer", ["rmsprop", "adagrad"])
def test_eps_inside_the_square_root_takes_smaller_steps(optimizer: str) -> None:
    # sqrt(v + eps) - sqrt(v) = eps / (sqrt(v + eps) + sqrt(v)) >= eps while the two roots
    # sum to at most 1: gradients below 0.4 keep sqrt(v) < 1/2 for both optimizers
    hp = {"lr": 0.01, "eps": 1e-8}
    outside = _moves(_run(optimizer, {**hp, "eps_in_sqrt": False}, [_grads(0.4)]))
    inside = _moves(_run(optimizer, {**hp, "eps_in_sqrt": True}, [_grads(0.4)]))
    for name in PARAMS:
        assert np.all(inside[name] <= outside[name] * (1 + 1e-12)), name
    ratio = min(float((inside[n] / outside[n]).min()) for n in PARAMS)
    assert ratio < 0.5  # the tiniest gradients (1e-5) feel eps = 1e-8 inside the root


def test_amsgrad_maximum_of_bias_corrected_moments_takes_no_larger_steps() -> None:
    # v_s / (1 - b2^s) >= v_s / (1 - b2^t) for s <= t: optax's maximum is the larger
    shrinking = [_grads(scale) for scale in (1.0, 0.5, 0.25, 0.1)]
    raw = _run("amsgrad", {"lr": 0.01, "max_of_bias_corrected": False}, shrinking)
    corrected = _run("amsgrad", {"lr": 0.01, "max_of_bias_corrected": True}, shrinking)
    first_raw, first_corrected = raw[0], corrected[0]
    for name in PARAMS:  # identical after one step: no earlier maximum yet
        np.testing.assert_allclose(first_raw[name], first_corrected[name], rtol=1e-12)
    last_raw = _moves([raw[-1]], raw[-2])
    last_corrected = _moves([corrected[-1]], corrected[-2])
    for name in PARAMS:
        assert np.all(last_corrected[name] <= last_raw[name] * (1 + 1e-12)), name
        assert np.any(last_corrected[name] < last_raw[name] * (1 - 1e-3)), name


def test_clip_norm_epsilon_clips_slightly_below_the_threshold() -> None:
    grads = _grads(10.0)
    norm = lambda g: math.sqrt(sum(float((v * v).sum()) for v in g.values()))  # noqa: E731
    torch_form = clip_gradients(grads, {"clip_norm": 0.5, "clip_norm_eps": 1e-6})
    optax_form = clip_gradients(grads, {"clip_norm": 0.5, "clip_norm_eps": 0.0})
    assert norm(optax_form) == pytest.approx(0.5, rel=1e-14)
    original = norm(grads)
    assert norm(torch_form) == pytest.approx(0.5 * original / (original + 1e-6), rel=1e-14)
    assert norm(torch_form) < norm(optax_form)


def test_lr_in_momentum_keeps_old_larger_rates_under_a_decaying_schedule() -> None:
    same = [_grads()] * 6  # a constant gradient: every buffer entry keeps its sign
    options = {"schedule": "step", "step_size": 2, "gamma": 0.5}
    hp = {"lr": 0.01, "momentum": 0.9}
    outside = _run("rmsprop", hp, same, options)
    inside = _run("rmsprop", hp, same, {**options, "lr_in_momentum": True})
    for name in PARAMS:  # the first two steps use the same lr: identical
        np.testing.assert_allclose(outside[1][name], inside[1][name], rtol=1e-12)
    step_outside, step_inside = _moves([outside[-1]], outside[-2]), _moves([inside[-1]], inside[-2])
    for name in PARAMS:
        assert np.all(step_inside[name] > step_outside[name]), name
    constant = [_run("rmsprop", hp, same, {"lr_in_momentum": flag}) for flag in (False, True)]
    for name in PARAMS:  # and with a constant rate the two forms are the same numbers
        np.testing.assert_allclose(constant[0][-1][name], constant[1][-1][name], rtol=1e-13)


def test_cosine_past_the_period_continues_up_in_torch_form_and_holds_in_optax_form() -> None:
    options = {"schedule": "cosine", "cosine_period": 4, "cosine_min_lr": 0.01}
    go_on = {**options, "cosine_past_period": "continue"}
    hold = {**options, "cosine_past_period": "hold"}
    for k in range(5):
        assert learning_rate(0.1, k, go_on, 10) == learning_rate(0.1, k, hold, 10)
    assert learning_rate(0.1, 4, hold, 10) == pytest.approx(0.01, rel=1e-15)
    for k in (5, 6, 7):
        assert learning_rate(0.1, k, hold, 10) == pytest.approx(0.01, rel=1e-15)
        assert learning_rate(0.1, k, go_on, 10) > learning_rate(0.1, k - 1, go_on, 10)
    assert learning_rate(0.1, 8, go_on, 10) == pytest.approx(0.1, rel=1e-15)


def test_step_schedule_multiplies_by_gamma_every_step_size_steps() -> None:
    options = {"schedule": "step", "step_size": 3, "gamma": 0.5}
    rates = [learning_rate(0.1, k, options, 10) for k in range(7)]
    assert rates == [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]


def test_decoupled_weight_decay_is_not_normalised_by_the_second_moment() -> None:
    # a parameter with zero gradient: coupled decay (Adam) feeds wd * theta through
    # m / sqrt(v) = sign(theta), a full lr step; decoupled (AdamW) moves lr * wd * theta
    zero = {n: np.zeros_like(p) for n, p in PARAMS.items()}
    hp = {"lr": 0.01, "weight_decay": 0.1}
    coupled = _moves(_run("adam", hp, [zero]))
    decoupled = _moves(_run("adamw", hp, [zero]))
    for name, value in PARAMS.items():
        np.testing.assert_allclose(coupled[name], 0.01, rtol=1e-5)
        np.testing.assert_allclose(decoupled[name], 0.01 * 0.1 * np.abs(value), rtol=1e-12)


def test_gelu_forms_differ_by_about_5e_4_at_most() -> None:
    z = np.linspace(-6, 6, 20001)
    gap = np.abs(ACTIVATIONS["gelu"].forward(z) - ACTIVATIONS["gelu_tanh"].forward(z))
    assert 1e-4 < gap.max() < 1e-3


def test_squared_error_conventions_scale_the_gradient_by_the_documented_factor() -> None:
    y_hat, y = RNG.standard_normal((8, 3)), RNG.standard_normal((8, 3))
    mse = LOSSES["mse"].gradient(y_hat, y)
    np.testing.assert_allclose(LOSSES["half_mse"].gradient(y_hat, y), 0.5 * mse, rtol=1e-15)
    np.testing.assert_allclose(LOSSES["mse_sum"].gradient(y_hat, y), 24 * mse, rtol=1e-15)
    np.testing.assert_allclose(LOSSES["mse_batch_mean"].gradient(y_hat, y), 3 * mse,
                               rtol=1e-15)


def test_smooth_l1_is_huber_divided_by_beta() -> None:
    y_hat, y = 2 * RNG.standard_normal((8, 3)), RNG.standard_normal((8, 3))
    huber = LOSSES["huber"].bound({"huber_delta": 0.5})
    smooth = LOSSES["smooth_l1"].bound({"smooth_l1_beta": 0.5})
    assert smooth.value(y_hat, y) == pytest.approx(huber.value(y_hat, y) / 0.5, rel=1e-14)
    np.testing.assert_allclose(smooth.gradient(y_hat, y), huber.gradient(y_hat, y) / 0.5,
                               rtol=1e-14)


def test_more_label_smoothing_costs_more_on_a_confident_correct_prediction() -> None:
    logits, labels = np.array([[8.0, 0.0, 0.0]]), np.array([0])
    values = [LOSSES["softmax_cross_entropy_smoothed"].bound({"label_smoothing": e})
              .value(logits, labels) for e in (0.0, 0.1, 0.3)]
    assert values[0] < values[1] < values[2]
    hard = LOSSES["softmax_cross_entropy"].value(logits, labels)
    assert values[0] == pytest.approx(hard, rel=1e-14)


@pytest.mark.parametrize(("name", "option", "value"),
                         [("leaky_relu", "negative_slope", 0.2), ("elu", "elu_alpha", 0.5)])
def test_activation_parameters_scale_the_negative_side(name, option, value) -> None:
    z = np.array([-2.0, -0.5, 0.5, 2.0])
    default = ACTIVATIONS[name]
    changed = default.bound({option: value})
    default_value = OPTIONS[option].default
    np.testing.assert_allclose(changed.forward(z)[:2], default.forward(z)[:2] * value
                               / default_value, rtol=1e-14)
    np.testing.assert_array_equal(changed.forward(z)[2:], z[2:])  # the positive side is z


def test_dropout_masks_are_inverted_and_dropped_units_get_no_gradient() -> None:
    case = Case((4, 32, 3), "tanh", loss="softmax_cross_entropy", batch_size=64,
                options={"dropout": 0.25})
    problem = make_problem(case)
    masks = np.stack([m[0] for m in problem.masks])
    assert set(np.unique(masks)) == {0.0, 1 / 0.75}
    assert masks.mean() == pytest.approx(1.0, abs=0.02)  # unbiased in expectation
    x, y, (mask,) = problem.batch(0)
    _, grads = loss_and_gradients(problem.params, x, y, case.activations, case.loss, {},
                                  (mask,))
    _, without = loss_and_gradients(problem.params, x, y, case.activations, case.loss)
    dropped_everywhere = np.all(mask == 0, axis=0)
    assert np.all(grads["W2"][dropped_everywhere] == 0)
    assert not np.allclose(grads["W1"], without["W1"])


def test_a_batch_sequence_cycles_through_distinct_batches() -> None:
    case = Case((3, 8, 2), "tanh", options={"batches": 3}, steps=7)
    problem = make_problem(case)
    first, second, fourth = problem.batch(0), problem.batch(1), problem.batch(3)
    assert first.x.shape == (case.batch_size, 3)
    assert not np.array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.x, fourth.x)
    single = make_problem(Case((3, 8, 2), "tanh", steps=7))
    np.testing.assert_array_equal(single.batch(0).x, first.x)  # batch 0 is unchanged


@pytest.mark.parametrize("shape", [(), (7,), (3, 4), (0, 5)], ids=str)
def test_erf_is_the_c_librarys_entry_by_entry(shape) -> None:
    from gradparity.reference.namespace import erf

    rng = np.random.default_rng(0)
    special = [0.0, -0.0, 1e-310, -3.0, 5.9, 6.5, np.inf, -np.inf, np.nan]
    values = np.resize(np.concatenate([special, 4 * rng.standard_normal(64)]), shape)
    # a strided view: the shape is what counts, not the memory layout
    values = np.repeat(values[..., None], 2, axis=-1)[..., 0] if values.ndim else values
    found = erf(values)
    expected = np.array([math.erf(float(v)) for v in np.ravel(values)]).reshape(shape)
    assert found.shape == shape and found.dtype == np.float64
    np.testing.assert_array_equal(found, expected)  # NaN where NaN, equal bits elsewhere
    assert np.array_equal(np.signbit(found), np.signbit(expected))
