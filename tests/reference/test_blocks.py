"""The block-by-block optimizer update against the textbook one: equal to the bit."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.reference.blocks import BLOCKED_FROM, elementwise, in_blocks
from gradparity.reference.optimizers import (
    _UNCLIPPED,
    OPTIMIZERS,
    _clipping_first,
    clip_gradients,
)

SHAPES = {"W1": (37, 29), "b1": (29,), "W2": (29, 3), "b2": (3,), "empty": (0, 4)}
FLAGS = {"nesterov": {"momentum": 0.9, "nesterov": True}, "momentum": {"momentum": 0.9},
         "centered": {"centered": True, "momentum": 0.5},
         "max_of_bias_corrected": {"max_of_bias_corrected": True},
         "decay": {"weight_decay": 0.1}}


def _hyperparameters(name: str, extra: dict) -> dict:
    hp = {**OPTIMIZERS[name].hyperparameters, "lr": 0.05, "clip_norm": 1.0}
    return {**hp, **{k: v for k, v in extra.items() if k in hp}}


def _trajectories(name: str, extra: dict, dtype: str, update) -> list:
    """Four steps from the same start; with a gradient whose sign pattern changes."""
    rng = np.random.default_rng(7)
    params = {n: rng.standard_normal(s).astype(dtype) for n, s in SHAPES.items()}
    hp = _hyperparameters(name, extra)
    state, seen = OPTIMIZERS[name].init(params), []
    for _ in range(4):
        grads = {n: (rng.standard_normal(s) * 10.0 ** rng.integers(-8, 3, s)).astype(dtype)
                 for n, s in SHAPES.items()}
        grads["W1"][0, 0] = 0.0  # an exact zero: sqrt(0) and 0 / eps in the update
        params, state = update(params, grads, state, hp)
        seen.append((params, state))
    return seen


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "extra"), [(n, {}) for n in OPTIMIZERS]
                         + [("sgd", FLAGS["nesterov"]), ("sgd", FLAGS["momentum"]),
                            ("sgd", FLAGS["decay"]), ("adam", FLAGS["decay"]),
                            ("rmsprop", FLAGS["centered"]),
                            ("amsgrad", FLAGS["max_of_bias_corrected"])],
                         ids=lambda v: v if isinstance(v, str) else "-".join(v) or "plain")
def test_blocks_give_the_textbook_update_to_the_bit(name, extra, dtype, monkeypatch) -> None:
    plain = _UNCLIPPED[name].update

    def textbook(params, grads, state, hp):
        return plain(params, clip_gradients(grads, hp), state, hp)

    def blocked(params, grads, state, hp):
        # blocks of 100 entries, and blocking from the first entry on: a block boundary
        # inside every parameter but the smallest
        monkeypatch.setattr("gradparity.reference.blocks.BLOCKED_FROM", 0)
        return in_blocks(plain, params, clip_gradients(grads, hp), state, hp, block=100)

    for (mine, my_state), (theirs, their_state) in zip(
            _trajectories(name, extra, dtype, blocked),
            _trajectories(name, extra, dtype, textbook), strict=True):
        assert list(mine) == list(theirs)
        for key in theirs:
            assert mine[key].dtype == theirs[key].dtype and mine[key].shape == theirs[key].shape
            np.testing.assert_array_equal(mine[key], theirs[key], strict=True)
        assert type(my_state) is type(their_state)
        for field, value in their_state._asdict().items():
            if isinstance(value, dict):
                assert list(getattr(my_state, field)) == list(value), field
                for key, array in value.items():
                    np.testing.assert_array_equal(getattr(my_state, field)[key], array,
                                                  strict=True)
            else:
                assert getattr(my_state, field) == value, field


def test_the_registry_updates_a_large_model_in_blocks() -> None:
    calls = []
    original = _UNCLIPPED["adam"].update

    def counted(*args, **kwargs):
        calls.append(sum(np.size(v) for v in args[0].values()))
        return original(*args, **kwargs)

    wrapped = _clipping_first(counted)  # how every registry optimizer is wrapped
    params = {"W": np.ones((BLOCKED_FROM // 512, 512)), "b": np.ones(512)}
    grads = {n: np.full_like(v, 0.5) for n, v in params.items()}
    hp = {**OPTIMIZERS["adam"].hyperparameters, "lr": 0.1}
    new, state = wrapped(params, grads, OPTIMIZERS["adam"].init(params), hp)
    assert max(calls) <= 1 << 15 and len(calls) > 8  # blocks, not one call
    assert state.step == 1
    # Adam's first step moves every entry by lr (m_hat / sqrt(v_hat) = 1 for g != 0)
    np.testing.assert_allclose(new["W"], 0.9, rtol=1e-7)
    np.testing.assert_allclose(new["b"], 0.9, rtol=1e-7)


def test_blocked_update_returns_arrays_that_own_their_memory() -> None:
    """Like the textbook update's new arrays (so the forward pass may keep them frozen,
    without a copy, see reference.network.freeze)."""
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((BLOCKED_FROM // 64, 64))}
    grads = {"W": rng.standard_normal(params["W"].shape)}
    adam = OPTIMIZERS["adam"]
    new, state = in_blocks(adam.update, params, grads, adam.init(params),
                           _hyperparameters("adam", {}))
    assert new["W"].flags.owndata and new["W"].shape == params["W"].shape
    assert all(slot["W"].flags.owndata for slot in state if isinstance(slot, dict))


def test_state_arrays_copy_unless_told_not_to() -> None:
    """The tolerance model reads the state between two updates and asks for no copies;
    every other reader gets arrays of its own."""
    from gradparity.reference.optimizers import state_arrays

    params = {"W": np.ones((3, 2))}
    adam = OPTIMIZERS["adam"]
    hp = {**adam.hyperparameters, "lr": 0.05}  # no clipping
    _, state = adam.update(params, {"W": np.full((3, 2), 0.5)}, adam.init(params), hp)
    shared = state_arrays("adam", state, {}, copy=False)
    copied = state_arrays("adam", state, {})
    assert shared["first_moment/W"] is state.first_moment["W"]
    assert not np.shares_memory(copied["first_moment/W"], state.first_moment["W"])
    np.testing.assert_array_equal(copied["second_moment/W"], np.full((3, 2), (1 - 0.999) * 0.25))


def _probe_combination(probe, value, float32):
    """entry_rounding's kind of expression: differences, a cast, where, maximum."""
    probed = np.abs(probe - value)
    own = np.abs(np.astype(float32, np.float64) - value) * 3.5
    return np.maximum(2.0 * np.where(np.isfinite(probed), probed, 0.0),
                      4.0 * np.where(np.isfinite(own), own, 0.0))


@pytest.mark.parametrize("shape", [(BLOCKED_FROM + 7,), (600, 700), (31, 29, 300)],
                         ids=["vector", "matrix", "three-axes"])
def test_blockwise_elementwise_equals_the_whole_expression(shape) -> None:
    rng = np.random.default_rng(3)
    value = rng.standard_normal(shape)
    probe = value * (1 + 1e-7 * rng.standard_normal(shape))
    float32 = value.astype(np.float32)
    probe.reshape(-1)[[0, -1, 5]] = [np.inf, np.nan, -np.inf]  # in the first and last block
    with np.errstate(invalid="ignore"):
        whole = _probe_combination(probe, value, float32)
        blocked = elementwise(_probe_combination, probe, value, float32, block=1000)
    assert blocked.shape == whole.shape and blocked.dtype == whole.dtype
    np.testing.assert_array_equal(blocked, whole)
    assert blocked.flags.owndata  # freezable without a copy, like the whole expression's


def test_blockwise_elementwise_reads_any_layout() -> None:
    rng = np.random.default_rng(4)
    before = rng.standard_normal((700, 600))
    after = np.asfortranarray(rng.standard_normal((700, 600)))  # torch's transposed layout
    blocked = elementwise(lambda a, b: a + (b - a) * 1.5, before, after, block=999)
    np.testing.assert_array_equal(blocked, before + (after - before) * 1.5)


def test_small_arrays_and_other_namespaces_go_whole() -> None:
    calls = []

    def counted(a):
        calls.append(a.shape)
        return a * 2.0
    elementwise(counted, np.ones((BLOCKED_FROM - 1,)), block=10)
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict is a test extra")
    elementwise(counted, strict.ones((BLOCKED_FROM + 1,)), block=10)
    assert calls == [(BLOCKED_FROM - 1,), (BLOCKED_FROM + 1,)]
    elementwise(counted, np.ones((BLOCKED_FROM,)), block=BLOCKED_FROM // 4)
    assert len(calls) == 6


def test_blockwise_elementwise_refuses_arrays_of_different_shapes() -> None:
    with pytest.raises(ValueError, match=r"shapes differ: \[\(3, 4\), \(4, 3\)\]"):
        elementwise(np.add, np.ones((3, 4)), np.ones((4, 3)))
