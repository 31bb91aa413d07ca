"""The NumPy reference against independent oracles: finite differences and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity import reference
from gradparity.compare.finite_differences import central_differences
from gradparity.compare.tolerances import FINITE_DIFFERENCE_TOLERANCE
from gradparity.reference import ACTIVATIONS, LOSSES
from gradparity.reference.activations import sigmoid
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem

FD_CASES = [
    Case((3, 5, 4, 2), activation, loss=loss, batch_size=4, seed=seed,
         output_activation=LOSSES[loss].output_activation or "identity")
    for seed, activation in enumerate(ACTIVATIONS)
    for loss in ("mse", "softmax_cross_entropy", "binary_cross_entropy_with_logits")
] + [
    Case((3, 5, 4, 2), "tanh", loss=loss, batch_size=4, seed=3,
         output_activation=LOSSES[loss].output_activation or "identity")
    for loss in LOSSES
] + [
    Case((3, 5, 2), "tanh", output_activation="sigmoid", batch_size=3),
    Case((3, 5, 2), "sigmoid", output_activation="tanh", batch_size=3),
    Case((3, 5, 2), "tanh", output_activation="relu", batch_size=3, seed=4),
    Case((2, 10, 1), "sigmoid", output_activation="sigmoid", dataset="xor", batch_size=4),
    Case((4, 6, 6, 6, 3), ("relu", "sigmoid", "tanh"), loss="softmax_cross_entropy"),
]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda case: case.id)
def test_backward_matches_central_differences(case: Case) -> None:
    problem = make_problem(case)
    _, grads = reference.loss_and_gradients(
        problem.params, problem.x, problem.y, case.activations, case.loss
    )
    estimate = central_differences(problem.params, problem.x, problem.y, case.activations,
                                   case.loss)
    for name, grad in grads.items():
        keep = ~estimate.kink_elements[name]
        fd = estimate.gradients[name]
        error = np.abs(grad - fd)[keep].max(initial=0.0) / np.abs(fd).max()
        assert error < FINITE_DIFFERENCE_TOLERANCE, (
            f"{case.id}: gradient of {name} differs from central differences by {error:.2e} "
            f"normwise (tolerance {FINITE_DIFFERENCE_TOLERANCE:.0e}); worst index "
            f"{np.unravel_index(np.argmax(np.abs(grad - fd) * keep), grad.shape)}"
        )
    # no more than a few stencils may straddle a relu kink, or the check says little
    assert estimate.kink_count <= 2


def test_finite_differences_detect_a_stencil_that_crosses_a_kink() -> None:
    # one input, one relu unit whose pre-activation sits exactly on the kink
    params = {"W1": np.array([[1.0]]), "b1": np.array([0.0]),
              "W2": np.array([[1.0]]), "b2": np.array([0.0])}
    x, y = np.array([[0.0]]), np.array([[1.0]])
    estimate = central_differences(params, x, y, ("relu", "identity"), "mse")
    assert estimate.kink_elements["b1"].all()
    assert not estimate.kink_elements["b2"].any()


# -- kink conventions, pinned against the frameworks' own answers ---------------


def test_relu_derivative_is_zero_at_the_kink() -> None:
    z = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(
        ACTIVATIONS["relu"].derivative(z, ACTIVATIONS["relu"].forward(z)), [0.0, 0.0, 1.0]
    )


def test_relu_kink_convention_matches_torch_and_jax() -> None:
    torch = pytest.importorskip("torch", reason="torch not installed: convention not checkable")
    jax = pytest.importorskip("jax", reason="jax not installed: convention not checkable")
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    torch.relu(z).sum().backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0]
    assert float(jax.grad(lambda v: jax.nn.relu(v))(0.0)) == 0.0
    reference_value = ACTIVATIONS["relu"].derivative(np.zeros(1), np.zeros(1))
    assert reference_value.tolist() == [0.0]


# -- saturation and stability -------------------------------------------------


def test_sigmoid_is_stable_and_exact_at_saturation() -> None:
    z = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    a = sigmoid(z)  # np.seterr(all="raise") in conftest turns an overflow into an error
    assert a[0] == 0.0 and a[-1] == 1.0 and a[2] == 0.5
    np.testing.assert_allclose(a[1], np.exp(-40.0) / (1 + np.exp(-40.0)), rtol=1e-15)
    derivative = ACTIVATIONS["sigmoid"].derivative(z, a)
    assert derivative[2] == 0.25 and derivative[0] == 0.0


def test_logit_losses_are_finite_for_huge_logits() -> None:
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 999.0]])
    labels = np.array([1, 2])
    # log softmax of the picked logits: -2000 and -1 - log(1 + e^-1)
    expected = (2000.0 + 1.0 + np.log1p(np.exp(-1.0))) / 2
    assert LOSSES["softmax_cross_entropy"].value(logits, labels) == pytest.approx(expected)
    targets = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    bce = LOSSES["binary_cross_entropy_with_logits"].value(logits, targets)
    assert bce == pytest.approx((1000 + 1000 + np.log(2) + 1000 + 1000 + 999) / 6)
    assert np.isfinite(LOSSES["binary_cross_entropy_with_logits"].gradient(logits, targets)).all()


def test_softmax_cross_entropy_gradient_closed_form() -> None:
    logits = np.array([[0.0, 0.0]])
    grad = LOSSES["softmax_cross_entropy"].gradient(logits, np.array([0]))
    np.testing.assert_array_equal(grad, [[-0.5, 0.5]])


def test_mse_divides_by_every_element() -> None:
    y_hat, y = np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2))
    assert LOSSES["mse"].value(y_hat, y) == (1 + 4 + 9 + 16) / 4
    np.testing.assert_array_equal(LOSSES["mse"].gradient(y_hat, y), 2 * y_hat / 4)


# -- the cache is the only input of backward -------------------------------------


def test_backward_uses_the_cache_not_the_current_parameters() -> None:
    case = Case((3, 5, 2), "tanh")
    problem = make_problem(case)
    params = {name: value.copy() for name, value in problem.params.items()}
    cache = reference.forward(params, problem.x, problem.y, case.activations, case.loss)
    before = reference.backward(cache)
    for value in params.values():
        value *= 3.0  # an optimizer step after the forward pass
    after = reference.backward(cache)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


def test_cache_is_read_only() -> None:
    case = Case((3, 5, 2), "tanh")
    problem = make_problem(case)
    cache = reference.forward(problem.params, problem.x, problem.y, case.activations, case.loss)
    with pytest.raises(ValueError, match="read-only"):
        cache.activations[0][0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        cache.weights[0][0, 0] = 1.0


def test_sgd_update_equation() -> None:
    params = {"W1": np.array([[1.0, -2.0]])}
    grads = {"W1": np.array([[0.5, 0.25]])}
    optimizer = reference.OPTIMIZERS["sgd"]
    new, state = optimizer.update(params, grads, optimizer.init(params), _hp("sgd"))
    np.testing.assert_allclose(new["W1"], [[0.95, -2.025]], rtol=0, atol=1e-15)
    assert state.step == 1
    assert params["W1"][0, 0] == 1.0  # nothing updated in place


def _hp(name: str, **given):
    return Case((2, 1), optimizer=name, hyperparameters={"lr": 0.1, **given}).hparams


def test_sgd_momentum_two_steps_by_hand() -> None:
    optimizer = reference.OPTIMIZERS["sgd"]
    hp = _hp("sgd", momentum=0.5, dampening=0.5)
    params = {"w": np.array([1.0])}
    state = optimizer.init(params)
    params, state = optimizer.update(params, {"w": np.array([2.0])}, state, hp)
    assert params["w"][0] == pytest.approx(1.0 - 0.1 * 2.0)  # b1 = g1, undamped
    params, state = optimizer.update(params, {"w": np.array([4.0])}, state, hp)
    # b2 = 0.5 * 2 + (1 - 0.5) * 4 = 3
    assert params["w"][0] == pytest.approx(0.8 - 0.1 * 3.0)


def test_nesterov_and_weight_decay_by_hand() -> None:
    optimizer = reference.OPTIMIZERS["sgd"]
    hp = _hp("sgd", momentum=0.9, nesterov=True, weight_decay=0.5)
    params = {"w": np.array([2.0])}
    new, _ = optimizer.update(params, {"w": np.array([1.0])}, optimizer.init(params), hp)
    g = 1.0 + 0.5 * 2.0  # coupled decay
    assert new["w"][0] == pytest.approx(2.0 - 0.1 * (g + 0.9 * g))


def test_adam_first_step_moves_by_lr_times_sign() -> None:
    optimizer = reference.OPTIMIZERS["adam"]
    hp = _hp("adam", eps=1e-8)
    params = {"w": np.array([1.0, 1.0])}
    grads = {"w": np.array([3.0, -0.5])}
    new, state = optimizer.update(params, grads, optimizer.init(params), hp)
    # m_hat = g, v_hat = g^2 after bias correction: step = lr * g / (|g| + eps)
    np.testing.assert_allclose(new["w"], [1 - 0.1 * 3 / (3 + 1e-8), 1 + 0.1 * 0.5 / (0.5 + 1e-8)],
                               rtol=1e-15)
    assert state.step == 1


def test_adamw_decays_the_weights_before_the_step() -> None:
    optimizer = reference.OPTIMIZERS["adamw"]
    hp = _hp("adamw", weight_decay=0.5)
    params = {"w": np.array([2.0])}
    new, _ = optimizer.update(params, {"w": np.array([1.0])}, optimizer.init(params), hp)
    assert new["w"][0] == pytest.approx(2.0 * (1 - 0.1 * 0.5) - 0.1 * 1 / (1 + 1e-8), rel=1e-14)


def test_rmsprop_first_step_by_hand() -> None:
    optimizer = reference.OPTIMIZERS["rmsprop"]
    params, grads = {"w": np.array([1.0])}, {"w": np.array([2.0])}
    outside = Case((2, 1), optimizer="rmsprop", hyperparameters={"lr": 0.1}).hparams
    new, _ = optimizer.update(params, grads, optimizer.init(params), outside)
    v = 0.01 * 4.0  # (1 - alpha) g^2
    assert new["w"][0] == pytest.approx(1 - 0.1 * 2 / (np.sqrt(v) + 1e-8), rel=1e-15)
    inside = {**outside, "eps_in_sqrt": True, "eps": 1e-2}
    new, _ = optimizer.update(params, grads, optimizer.init(params), inside)
    assert new["w"][0] == pytest.approx(1 - 0.1 * 2 / np.sqrt(v + 1e-2), rel=1e-15)


def test_adagrad_two_steps_by_hand() -> None:
    optimizer = reference.OPTIMIZERS["adagrad"]
    hp = Case((2, 1), optimizer="adagrad",
              hyperparameters={"lr": 0.1, "initial_accumulator_value": 1.0}).hparams
    params = {"w": np.array([0.0])}
    state = optimizer.init(params)
    params, state = optimizer.update(params, {"w": np.array([1.0])}, state, hp)
    assert params["w"][0] == pytest.approx(-0.1 * 1 / (np.sqrt(2.0) + 1e-10))
    params, state = optimizer.update(params, {"w": np.array([2.0])}, state, hp)
    assert params["w"][0] == pytest.approx(-0.1 / np.sqrt(2.0) - 0.1 * 2 / np.sqrt(6.0))


def test_amsgrad_maxima_differ_only_after_the_maximum_moves() -> None:
    optimizer = reference.OPTIMIZERS["amsgrad"]
    raw = Case((2, 1), optimizer="amsgrad", hyperparameters={"lr": 0.1}).hparams
    corrected = {**raw, "max_of_bias_corrected": True}
    params = {"w": np.array([0.0])}
    runs = {}
    for name, hp in (("raw", raw), ("corrected", corrected)):
        p, state = params, optimizer.init(params)
        trace = []
        for g in (3.0, 0.1, 0.1):  # a large gradient, then small ones
            p, state = optimizer.update(p, {"w": np.array([g])}, state, hp)
            trace.append(p["w"][0])
        runs[name] = trace
    assert runs["raw"][0] == pytest.approx(runs["corrected"][0], rel=1e-15)
    # v_hat_1 = 9 stays the corrected maximum; the raw maximum v_1 = 0.009 is divided by a
    # growing 1 - beta2^t, so the two denominators part from step 2 on
    assert runs["raw"][2] != pytest.approx(runs["corrected"][2], rel=1e-6)


def test_loss_family_closed_forms() -> None:
    y_hat, y = np.array([[1.0, 3.0], [0.5, -2.0]]), np.zeros((2, 2))
    squares = 1 + 9 + 0.25 + 4
    assert LOSSES["mse_sum"].value(y_hat, y) == squares
    assert LOSSES["mse_batch_mean"].value(y_hat, y) == squares / 2
    assert LOSSES["half_mse"].value(y_hat, y) == squares / 8
    np.testing.assert_array_equal(LOSSES["half_mse_sum"].gradient(y_hat, y), y_hat)
    # huber, delta 1: quadratic inside, linear outside, continuous gradient at the joint
    assert LOSSES["huber"].value(y_hat, y) == pytest.approx((0.5 + 2.5 + 0.125 + 1.5) / 4)
    np.testing.assert_array_equal(LOSSES["huber"].gradient(y_hat, y),
                                  np.array([[1.0, 1.0], [0.5, -1.0]]) / 4)
    assert LOSSES["smooth_l1"].value(y_hat, y) == LOSSES["huber"].value(y_hat, y)  # beta 1


def test_classification_loss_variants_closed_forms() -> None:
    logits = np.zeros((2, 4))
    labels = np.array([0, 3])
    uniform = np.log(4.0)
    assert LOSSES["softmax_cross_entropy_smoothed"].value(logits, labels) == pytest.approx(uniform)
    soft = np.full((2, 4), 0.25)
    assert LOSSES["softmax_cross_entropy_soft"].value(logits, soft) == pytest.approx(uniform)
    np.testing.assert_allclose(LOSSES["softmax_cross_entropy_soft"].gradient(logits, soft), 0,
                               atol=1e-17)
    # weights 0.5 .. 2 over 4 classes: labels 0 and 3 weigh 0.5 and 2
    grad = LOSSES["softmax_cross_entropy_weighted"].gradient(logits, labels)
    np.testing.assert_allclose(grad[0], 0.5 * (0.25 - np.eye(4)[0]) / 2.5)
    np.testing.assert_allclose(grad[1], 2.0 * (0.25 - np.eye(4)[3]) / 2.5)


def test_binary_cross_entropy_clamps_like_torch() -> None:
    p, y = np.array([[0.0, 1.0, 0.5]]), np.array([[1.0, 1.0, 0.0]])
    # log(0) is clamped at -100: a finite loss, as in torch
    assert LOSSES["binary_cross_entropy"].value(p, y) == pytest.approx((100 + 0 + np.log(2)) / 3)
    assert np.isfinite(LOSSES["binary_cross_entropy"].gradient(p, y)).all()


def test_gradient_clipping_by_value_then_norm() -> None:
    from gradparity.reference.optimizers import clip_gradients

    grads = {"a": np.array([3.0, -4.0]), "b": np.array([0.0])}
    by_value = clip_gradients(grads, {"clip_value": 1.0, "clip_norm": 0.0, "clip_norm_eps": 0})
    np.testing.assert_array_equal(by_value["a"], [1.0, -1.0])
    by_norm = clip_gradients(grads, {"clip_value": 0.0, "clip_norm": 1.0, "clip_norm_eps": 0.0})
    np.testing.assert_allclose(by_norm["a"], [0.6, -0.8], rtol=1e-15)
    torch_form = clip_gradients(grads, {"clip_value": 0, "clip_norm": 1.0, "clip_norm_eps": 1e-6})
    np.testing.assert_allclose(torch_form["a"], np.array([3.0, -4.0]) / (5 + 1e-6), rtol=1e-15)
    unclipped = clip_gradients(grads, {"clip_value": 0, "clip_norm": 10.0, "clip_norm_eps": 0})
    np.testing.assert_array_equal(unclipped["a"], grads["a"])


def test_forward_keeps_unchangeable_weights_and_copies_the_rest() -> None:
    """A weight nothing can write to is kept as it is; a writeable one, or a read-only
    view of a writeable array, is copied (a later in-place update must not reach the
    cache)."""
    case = Case((3, 5, 2), "tanh")
    problem = make_problem(case)
    owner = {name: value.copy() for name, value in problem.params.items()}
    frozen = reference.network.freeze({name: value.copy() for name, value in owner.items()})
    view = owner["W1"].view()
    view.setflags(write=False)  # read-only, but its owner is not
    reshaped = frozen["W2"].reshape(frozen["W2"].shape)  # a view of a frozen array
    kept = reference.forward({**frozen, "W1": frozen["W1"], "W2": reshaped}, problem.x,
                             problem.y, case.activations, case.loss)
    assert kept.weights[0] is frozen["W1"] and kept.weights[1] is reshaped
    writeable = reference.forward(owner, problem.x, problem.y, case.activations, case.loss)
    assert not np.shares_memory(writeable.weights[0], owner["W1"])
    assert not reference.network.unchangeable(view)
    copied = reference.forward({**frozen, "W1": view}, problem.x, problem.y, case.activations,
                               case.loss)
    owner["W1"] *= 3.0  # writes through the read-only view
    np.testing.assert_array_equal(copied.weights[0], frozen["W1"])
    with pytest.raises(ValueError, match="read-only"):
        frozen["W1"][0, 0] = 1.0


def _counting(marked: bool):
    shapes: list[tuple[int, ...]] = []

    def perturb(values):
        shapes.append(values.shape)
        return values

    if marked:
        perturb.rounds_intermediates = True
    return perturb, shapes


@pytest.mark.parametrize("marked", [False, True], ids=["plain", "rounding"])
def test_only_a_rounding_perturbation_reaches_inside_gelu_tanh(marked: bool) -> None:
    """A perturbation marked as rounding is applied to tanh(u) inside gelu_tanh, in the
    forward pass and in its derivative; any other (the kink watch counts its calls: two
    per layer) sees exactly every z and a, as before; the numbers are unchanged by an
    identity either way."""
    case = Case((4, 6, 5, 3), ("gelu_tanh", "tanh"), loss="softmax_cross_entropy",
                dtype="float64")
    problem = make_problem(case)
    x, y, _ = problem.batch(0)
    perturb, shapes = _counting(marked)
    plain = reference.forward(problem.params, x, y, case.activations, case.loss)
    cache = reference.forward(problem.params, x, y, case.activations, case.loss,
                              perturb=perturb)
    rows = x.shape[0]
    forward_calls = [(rows, 6)] * (3 if marked else 2) + [(rows, 5)] * 2 + [(rows, 3)] * 2
    assert shapes == forward_calls
    assert (cache.rounding is perturb) == marked
    grads = reference.BACKPROP.backward(cache)
    assert len(shapes) == len(forward_calls) + marked  # the derivative's tanh(u), layer 1
    expected = reference.BACKPROP.backward(plain)
    for name, value in expected.params.items():
        np.testing.assert_array_equal(grads.params[name], value)


def test_rounding_tanh_inside_gelu_tanh_moves_its_tail_by_an_ulp_of_one() -> None:
    """Where 1 + tanh(u) cancels, rounding t by one eps moves a by about |z|/2 eps, far
    more than a's own eps; elsewhere by about its own rounding."""
    gelu_tanh = ACTIVATIONS["gelu_tanh"]
    eps = np.finfo(np.float64).eps
    z = np.array([-7.0, -1.0, 2.0])
    moved = gelu_tanh.forward(z, rounding=lambda t: t * (1 - eps))
    change = np.abs(moved - gelu_tanh.forward(z))
    assert change[0] == pytest.approx(3.5 * eps, rel=0.01)
    assert change[0] > 1e3 * eps * abs(gelu_tanh.forward(z)[0])
    assert np.all(change[1:] <= 2 * eps * np.abs(z[1:]))


@pytest.mark.parametrize(("dtype", "large"), [(np.float32, 1e13), (np.float64, 1e103)])
def test_gelu_tanh_saturates_without_overflowing_z_cubed(dtype, large: float) -> None:
    """Training that explodes takes z past 7e12, where z^3 overflows float32 (past 5.6e102
    in float64): tanh(u) is exactly +-1 there, so a is z (or 0) and da/dz is 1 (or 0),
    with no overflow raised and no 0 * inf. Where nothing overflows (20 <= |z| <= 1e4),
    the values are those of the formula without the clip, to the bit."""
    gelu_tanh = ACTIVATIONS["gelu_tanh"]
    top = float(np.finfo(dtype).max) / 2
    huge = np.array([-top, -large, large, top], dtype)
    with np.errstate(all="raise"):
        a = gelu_tanh.forward(huge)
        slope = gelu_tanh.derivative(huge, a)
    np.testing.assert_array_equal(a, np.where(huge > 0, huge, 0.0).astype(dtype))
    np.testing.assert_array_equal(slope, np.where(huge > 0, 1.0, 0.0))
    z = np.concatenate([np.linspace(-1e4, -20, 50), np.linspace(20, 1e4, 50)]).astype(dtype)
    c, k = np.sqrt(2 / np.pi), 0.044715
    t = np.tanh(c * (z + k * z**3))
    np.testing.assert_array_equal(gelu_tanh.forward(z), 0.5 * z * (1 + t))
    np.testing.assert_array_equal(gelu_tanh.derivative(z, gelu_tanh.forward(z)),
                                  0.5 * (1 + t) + 0.5 * z * (1 - t * t) * c
                                  * (1 + 3 * k * z * z))
