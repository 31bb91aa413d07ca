"""Every framework claim of gradparity.adapters.layer_conventions, pinned against the
installed torch, JAX and Flax (each with its direction: which side does what)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from gradparity.adapters.conventions import BY_NAME
from gradparity.adapters.layer_conventions import LAYER_CONVENTIONS
from gradparity.reference.layers import build

torch = pytest.importorskip("torch", reason="torch not installed: conventions not checkable")
jax = pytest.importorskip("jax", reason="jax not installed: conventions not checkable")
linen = pytest.importorskip("flax.linen", reason="flax not installed: conventions not checkable")
F = torch.nn.functional
jnp = jax.numpy


@pytest.fixture(autouse=True)
def x64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


RNG = np.random.default_rng(0)


def test_every_layer_convention_is_in_the_catalogue() -> None:
    assert all(BY_NAME[c.name] is c for c in LAYER_CONVENTIONS)
    assert len(LAYER_CONVENTIONS) >= 15


def test_conv_layout() -> None:
    assert tuple(torch.nn.Conv2d(3, 4, 3).weight.shape) == (4, 3, 3, 3)  # OIHW
    variables = linen.Conv(4, (3, 3)).init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
    assert variables["params"]["kernel"].shape == (3, 3, 3, 4)  # HWIO, NHWC data


def test_cross_correlation_in_both_and_the_reference() -> None:
    x, w = RNG.standard_normal((1, 1, 5, 5)), RNG.standard_normal((1, 1, 3, 3))
    by_hand = np.array([[np.sum(x[0, 0, i:i + 3, j:j + 3] * w[0, 0]) for j in range(3)]
                        for i in range(3)])  # no flip
    flipped = np.array([[np.sum(x[0, 0, i:i + 3, j:j + 3] * w[0, 0, ::-1, ::-1])
                         for j in range(3)] for i in range(3)])
    torch_out = F.conv2d(torch.tensor(x), torch.tensor(w)).numpy()[0, 0]
    lax_out = np.asarray(jax.lax.conv_general_dilated(jnp.asarray(x), jnp.asarray(w), (1, 1),
                                                      "VALID"))[0, 0]
    reference, _ = build({"type": "conv2d", "channels": 1}).forward({"W": w, "b": np.zeros(1)},
                                                                    x)
    for out in (torch_out, lax_out, reference[0, 0]):
        np.testing.assert_allclose(out, by_hand, rtol=1e-12)
        assert np.abs(out - flipped).max() > 1e-3


def test_same_padding_with_stride_two() -> None:
    x, w = torch.ones(1, 1, 8, 8), torch.ones(1, 1, 3, 3)
    with pytest.raises(RuntimeError, match="not supported for strided"):
        F.conv2d(x, w, stride=2, padding="same")
    xs, ws = RNG.standard_normal((1, 1, 8, 8)), RNG.standard_normal((1, 1, 3, 3))
    same = np.asarray(jax.lax.conv_general_dilated(jnp.asarray(xs), jnp.asarray(ws), (2, 2),
                                                   "SAME"))
    after_only = np.asarray(jax.lax.conv_general_dilated(jnp.asarray(xs), jnp.asarray(ws),
                                                         (2, 2), ((0, 1), (0, 1))))
    torch_port = F.conv2d(torch.tensor(xs), torch.tensor(ws), stride=2, padding=1).numpy()
    np.testing.assert_allclose(same, after_only, rtol=1e-12)  # XLA: the odd pixel after
    assert same.shape == torch_port.shape == (1, 1, 4, 4)
    assert np.abs(same - torch_port).max() > 1e-3  # symmetric padding: another output
    reference, _ = build({"type": "conv2d", "channels": 1, "stride": 2,
                          "padding": "same"}).forward({"W": ws, "b": np.zeros(1)}, xs)
    np.testing.assert_allclose(reference, same, rtol=1e-12)


def test_conv_default_padding() -> None:
    assert torch.nn.Conv2d(3, 4, 3).padding == (0, 0)
    assert linen.Conv(4, (3, 3)).padding == "SAME"
    assert tuple(torch.nn.Conv2d(3, 4, 3)(torch.ones(1, 3, 8, 8)).shape) == (1, 4, 6, 6)
    module = linen.Conv(4, (3, 3))
    out = module.apply(module.init(jax.random.key(0), jnp.ones((1, 8, 8, 3))),
                       jnp.ones((1, 8, 8, 3)))
    assert out.shape == (1, 8, 8, 4)


def test_conv_transpose_kernel_flip() -> None:
    x, w = RNG.standard_normal((1, 2, 4, 4)), RNG.standard_normal((2, 3, 3, 3))  # (in, out)
    expected = F.conv_transpose2d(torch.tensor(x), torch.tensor(w), stride=2).numpy()
    nhwc = jnp.transpose(jnp.asarray(x), (0, 2, 3, 1))

    def lax_transpose(kernel, flip: bool) -> np.ndarray:
        out = jax.lax.conv_transpose(nhwc, kernel, (2, 2), ((2, 2), (2, 2)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     transpose_kernel=flip)
        return np.asarray(jnp.transpose(out, (0, 3, 1, 2)))

    # transpose_kernel=True swaps in/out and flips: torch's kernel as the forward conv's
    np.testing.assert_allclose(lax_transpose(jnp.transpose(jnp.asarray(w), (2, 3, 1, 0)),
                                             True), expected, rtol=1e-12)
    # Flax's default (no flip): torch's kernel as (k, k, in, out) differs ...
    as_is = jnp.transpose(jnp.asarray(w), (2, 3, 0, 1))
    assert np.abs(lax_transpose(as_is, False) - expected).max() > 1e-3
    # ... and agrees once flipped spatially
    np.testing.assert_allclose(lax_transpose(as_is[::-1, ::-1], False), expected, rtol=1e-12)
    assert linen.ConvTranspose(3, (3, 3)).transpose_kernel is False


def test_pooling_stride_defaults() -> None:
    assert tuple(F.max_pool2d(torch.ones(1, 1, 8, 8), 2).shape) == (1, 1, 4, 4)
    assert linen.max_pool(jnp.ones((1, 8, 8, 1)), (2, 2)).shape == (1, 7, 7, 1)  # strides 1
    assert inspect.signature(linen.max_pool).parameters["strides"].default is None


def test_max_pool_ties_go_to_the_first_element() -> None:
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    flax_grad = jax.grad(lambda v: linen.max_pool(v, (2, 2), (2, 2)).sum())(
        jnp.ones((1, 2, 2, 1)))
    layer = build({"type": "max_pool2d", "kernel": 2})
    _, cache = layer.forward({}, np.ones((1, 1, 2, 2)))
    reference, _ = layer.backward({}, cache, np.ones((1, 1, 1, 1)))
    for grad in (x.grad.numpy().ravel(), np.asarray(flax_grad).ravel(), reference.ravel()):
        np.testing.assert_array_equal(grad, [1.0, 0.0, 0.0, 0.0])


def test_avg_pool_count_include_pad_defaults_agree() -> None:
    assert inspect.signature(torch.nn.AvgPool2d).parameters["count_include_pad"].default
    assert inspect.signature(linen.avg_pool).parameters["count_include_pad"].default


def _bn_after_one_step(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    bn = torch.nn.BatchNorm1d(x.shape[1], dtype=torch.float64)
    bn(torch.tensor(x))
    module = linen.BatchNorm(use_running_average=False)
    variables = module.init(jax.random.key(0), jnp.asarray(x))
    _, updated = module.apply(variables, jnp.asarray(x), mutable=["batch_stats"])
    return bn.running_mean.numpy(), bn.running_var.numpy(), updated["batch_stats"]


def test_batch_norm_momentum_and_running_variance() -> None:
    assert torch.nn.BatchNorm1d(3).momentum == 0.1
    assert linen.BatchNorm().momentum == 0.99
    x = RNG.standard_normal((8, 3)) + 2.0
    mean, var = x.mean(axis=0), x.var(axis=0)
    torch_mean, torch_var, flax_stats = _bn_after_one_step(x)
    np.testing.assert_allclose(torch_mean, 0.1 * mean, rtol=1e-12)  # 0.1 on the new value
    np.testing.assert_allclose(flax_stats["mean"], 0.01 * mean, rtol=1e-6)  # 0.99 on old
    np.testing.assert_allclose(torch_var, 0.9 + 0.1 * var * 8 / 7, rtol=1e-12)  # unbiased
    # Flax keeps its statistics in float32 (param_dtype) by default
    np.testing.assert_allclose(flax_stats["var"], 0.99 + 0.01 * var, rtol=1e-6)  # biased
    assert abs(float(flax_stats["var"][0]) - (0.99 + 0.01 * var[0] * 8 / 7)) > 1e-4


def test_normalisation_eps_defaults() -> None:
    assert torch.nn.BatchNorm1d(3).eps == linen.BatchNorm().epsilon == 1e-5
    assert torch.nn.LayerNorm(3).eps == 1e-5
    assert linen.LayerNorm().epsilon == 1e-6
    x = RNG.standard_normal((4, 8))
    torch_out = F.layer_norm(torch.tensor(x), (8,)).numpy()
    module = linen.LayerNorm()
    flax_out = np.asarray(module.apply(module.init(jax.random.key(0), jnp.asarray(x)),
                                       jnp.asarray(x)))
    relative = np.abs(torch_out - flax_out).max() / np.abs(torch_out).max()
    assert 1e-7 < relative < 1e-4  # eps-sized, far above float64 rounding


def test_norm_variance_form() -> None:
    """torch centres before squaring; Flax's default subtracts the squared mean from the
    mean of squares, which cancels where the mean is large against the spread; the
    reference computes either as the layer's ``variance`` asks."""
    assert linen.LayerNorm().use_fast_variance and linen.BatchNorm().use_fast_variance
    x = 1e6 + RNG.standard_normal((4, 8))  # a mean 1e6 times the spread
    exact = F.layer_norm(torch.tensor(x), (8,)).numpy()

    def flax(fast: bool) -> np.ndarray:
        module = linen.LayerNorm(epsilon=1e-5, use_fast_variance=fast)
        return np.asarray(module.apply(module.init(jax.random.key(0), jnp.asarray(x)),
                                       jnp.asarray(x)))

    def reference(variance: str) -> np.ndarray:
        layer = build({"type": "layer_norm", "variance": variance, "affine": False})
        return layer.forward({}, x)[0]

    np.testing.assert_allclose(flax(False), exact, atol=1e-9)
    np.testing.assert_allclose(reference("centered"), exact, atol=1e-9)
    # eps mean^2 = 2e-4 against a variance of about 1: x_hat off by about 1e-4
    assert np.abs(flax(True) - exact).max() > 1e-6
    assert np.abs(reference("mean_of_squares") - exact).max() > 1e-6


def _qkv(heads: int = 1):
    return (RNG.standard_normal((1, heads, 3, 4)) for _ in range(3))


def test_attention_scaling_agrees() -> None:
    q, k, v = _qkv()
    torch_out = F.scaled_dot_product_attention(*(torch.tensor(t) for t in (q, k, v))).numpy()
    flax_out = linen.dot_product_attention(*(jnp.asarray(t.transpose(0, 2, 1, 3))
                                             for t in (q, k, v)))
    scores = q[0, 0] @ k[0, 0].T / np.sqrt(4)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected = (weights / weights.sum(axis=1, keepdims=True)) @ v[0, 0]
    np.testing.assert_allclose(torch_out[0, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(flax_out)[0, :, 0], expected, rtol=1e-12)


def test_attention_mask_polarity_and_fully_masked_rows() -> None:
    q, k, v = _qkv()
    attend = np.array([[True, True, True], [False, False, False], [True, False, True]])
    sdpa = F.scaled_dot_product_attention(*(torch.tensor(t) for t in (q, k, v)),
                                          attn_mask=torch.tensor(attend)).numpy()[0, 0]
    mha = torch.nn.MultiheadAttention(4, 1, batch_first=True, dtype=torch.float64)
    with torch.no_grad():  # identity projections: the module's attention alone
        mha.in_proj_weight.copy_(torch.eye(4).repeat(3, 1))
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(torch.eye(4))
        mha.out_proj.bias.zero_()
        masked_is_true, _ = mha(*(torch.tensor(t[0]) for t in (q, k, v)),
                                attn_mask=torch.tensor(~attend))
    flax_out = np.asarray(linen.dot_product_attention(
        *(jnp.asarray(t.transpose(0, 2, 1, 3)) for t in (q, k, v)),
        mask=jnp.asarray(attend)[None, None]))[0, :, 0]
    # row 2 attends to keys 0 and 2: the same in all three once each gets its polarity
    np.testing.assert_allclose(sdpa[2], flax_out[2], rtol=1e-12)
    np.testing.assert_allclose(masked_is_true.numpy()[0, 2], sdpa[2], rtol=1e-12)
    # the fully masked row 1: torch SDPA 0, nn.MultiheadAttention NaN, Flax the mean of v
    np.testing.assert_array_equal(sdpa[1], np.zeros(4))
    assert np.isnan(masked_is_true.numpy()[0, 1]).all()
    np.testing.assert_allclose(flax_out[1], v[0, 0].mean(axis=0), rtol=1e-12)


def test_transformer_layer_is_post_norm_by_default() -> None:
    assert torch.nn.TransformerEncoderLayer(8, 2).norm_first is False
    assert not hasattr(linen, "TransformerEncoderLayer")


def test_embedding_padding_idx() -> None:
    weights = RNG.standard_normal((5, 3))
    ids = np.array([0, 1, 0, 2])
    table = torch.tensor(weights, requires_grad=True)
    F.embedding(torch.tensor(ids), table, padding_idx=0).sum().backward()
    np.testing.assert_array_equal(table.grad.numpy()[0], np.zeros(3))
    module = linen.Embed(5, 3)
    assert "padding_idx" not in inspect.signature(linen.Embed).parameters
    grad = jax.grad(lambda w: module.apply({"params": {"embedding": w}},
                                           jnp.asarray(ids)).sum())(jnp.asarray(weights))
    np.testing.assert_array_equal(np.asarray(grad)[0], np.full(3, 2.0))  # id 0 twice
