"""The conventions of the layers beyond the MLP: convolutions, pooling, normalisation,
attention, transformer blocks, embeddings. Each claim is pinned against the installed
torch and JAX/Flax by ``tests/adapters/test_layer_conventions.py``, and the ones that
change numbers on a case are measured in the library-defaults table
(:mod:`gradparity.harness.porting`)."""

from __future__ import annotations

from gradparity.adapters.convention import Convention

LAYER_CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "conv_layout",
        "NCHW data, OIHW kernels (nn.Conv2d.weight is (out, in/groups, kH, kW))",
        "lax.conv_general_dilated takes any dimension_numbers; flax.linen.Conv uses NHWC "
        "data and HWIO kernels",
        "NCHW and OIHW (torch's)",
        "none: transposes; a kernel loaded without one is a silently wrong model",
        "the JAX adapter transposes data and kernels inside each layer, so gradients come "
        "back in the reference layout",
    ),
    Convention(
        "cross_correlation",
        "F.conv2d computes cross-correlation (no kernel flip)",
        "lax.conv_general_dilated computes cross-correlation too",
        "cross-correlation",
        "a textbook convolution flips the kernel: a port from scipy.signal.convolve2d or "
        "a hand-written true convolution differs by the flip",
        "all agree",
    ),
    Convention(
        "same_padding",
        "padding='same' only with stride 1 (RuntimeError otherwise); the odd pixel of an "
        "even kernel goes after",
        "'SAME' with any stride: output ceil(n / s), total padding split with the odd pixel "
        "after (bottom, right)",
        "XLA's rule (the odd pixel after) for every stride",
        "a torch port of 'SAME' with stride 2 usually writes padding=k//2, symmetric: a "
        "different output (padding 1 on both sides vs (0, 1) for k = 3 on an even input)",
        "conv2d with padding 'same' and stride > 1 is 'not expressible in torch'",
    ),
    Convention(
        "conv_default_padding",
        "nn.Conv2d padding=0 ('valid')", "flax.linen.Conv padding='SAME'",
        "no default that matters: a case names its padding (0 if it does not)",
        "the output shape differs (6x6 vs 8x8 for a 3x3 kernel on 8x8): a port with the "
        "defaults fails at the next layer's shape, or worse, fits a different head",
        "every adapter receives the case's explicit padding",
    ),
    Convention(
        "conv_transpose_kernel",
        "F.conv_transpose2d: kernel (in, out, k, k), the exact gradient of conv2d; padding p "
        "removes p pixels at each border",
        "flax.linen.ConvTranspose: transpose_kernel=False (no spatial flip) and padding "
        "'SAME'; lax.conv_transpose pads the dilated input (p_lax = d (k - 1) - p)",
        "torch's definition (the gradient of a convolution)",
        "the kernel flipped spatially and in/out swapped, and different output sizes",
        "the JAX adapter uses lax.conv_transpose(transpose_kernel=True) with the padding "
        "converted",
    ),
    Convention(
        "pooling_stride_default",
        "F.max_pool2d / avg_pool2d: stride = kernel_size",
        "flax.linen.max_pool / avg_pool: strides = 1",
        "stride = kernel (torch's)",
        "overlapping windows and a larger output in a port that leaves the stride out",
        "every adapter receives the case's stride",
    ),
    Convention(
        "max_pool_ties",
        "the gradient goes to the first maximum of the window", "the first maximum as well",
        "the first maximum (row-major)",
        "none measured: with a constant window both send the whole gradient to its first "
        "element",
        "all agree",
    ),
    Convention(
        "avg_pool_count_include_pad",
        "count_include_pad=True", "flax.linen.avg_pool count_include_pad=True",
        "True; False on request",
        "none by default; a port that sets one side only divides border windows "
        "differently",
        "all agree",
    ),
    Convention(
        "batch_norm_momentum",
        "momentum=0.1 weighs the NEW value: r = 0.9 r + 0.1 batch",
        "flax.linen.BatchNorm momentum=0.99 weighs the OLD value: r = 0.99 r + 0.01 batch",
        "torch's meaning (the new value's weight); the JAX adapter passes 1 - momentum",
        "with both defaults the running statistics move 10x slower in Flax; copying the "
        "number 0.1 into Flax makes them follow each batch almost entirely",
        "the case's momentum in torch's meaning, converted for Flax",
    ),
    Convention(
        "batch_norm_running_variance",
        "running_var is updated with the unbiased batch variance (m / (m - 1))",
        "flax.linen.BatchNorm keeps the biased batch variance",
        "either (running_var_unbiased, True by default)",
        "running_var differs by the factor m / (m - 1) of its batch part (8 / 7 for 8 "
        "vectors; 512 / 511 for 8 images of 8x8); normalisation in training is the same "
        "(biased) in both",
        "a case with one setting is 'not expressible' in the other framework, never "
        "emulated (cnn-bn: torch only; mlp-bn: jax only)",
    ),
    Convention(
        "batch_norm_eps",
        "eps=1e-5", "flax.linen.BatchNorm epsilon=1e-5", "1e-5", "none", "all agree",
    ),
    Convention(
        "layer_norm_eps",
        "nn.LayerNorm eps=1e-5", "flax.linen.LayerNorm epsilon=1e-6", "1e-5 (the case's)",
        "x_hat = (x - mu) / sqrt(var + eps) differs by about (1e-5 - 1e-6) / (2 var) "
        "relative: 4.5e-6 at var = 1, far above float64 rounding",
        "every adapter receives the case's eps",
    ),
    Convention(
        "norm_variance_form",
        "nn.LayerNorm / F.batch_norm: the biased variance of the centred values, "
        "mean((x - mean)^2)",
        "flax.linen.LayerNorm / BatchNorm use_fast_variance=True (the default): "
        "max(0, mean(x^2) - mean(x)^2)",
        "centered (torch's); mean_of_squares on request (the layer's 'variance' setting)",
        "where a normalised feature's mean is large against its spread the difference of "
        "squares cancels: its rounding, about eps mean^2, is a large part of the variance "
        "(mlp-bn on inputs x + 100: JAX with Flax's default 4e-13 to 9e-13 relative from "
        "the centred reference in float64, over 1,000 eps; on 3 + 1e-3 x: 4e-11 in "
        "float64, 5% in float32)",
        "every adapter receives the case's form (the JAX adapter sets use_fast_variance); "
        "mean_of_squares is 'not expressible in torch'",
    ),
    Convention(
        "attention_scaling",
        "F.scaled_dot_product_attention: scale 1/sqrt(head width) by default",
        "flax.linen.dot_product_attention divides the query by sqrt(head width)",
        "1/sqrt(head width)", "none", "all agree",
    ),
    Convention(
        "attention_mask_polarity",
        "nn.MultiheadAttention(attn_mask=bool): True means MASKED; "
        "F.scaled_dot_product_attention(attn_mask=bool): True means ATTEND",
        "flax.linen attention mask: True means ATTEND",
        "a causal flag (no boolean mask crosses the interface)",
        "a mask copied between nn.MultiheadAttention and SDPA/Flax is inverted: the model "
        "attends exactly where it should not",
        "the adapters build the causal mask each in their framework's polarity",
    ),
    Convention(
        "attention_fully_masked_rows",
        "F.scaled_dot_product_attention returns 0 for a fully masked row; "
        "nn.MultiheadAttention returns NaN",
        "flax.linen.dot_product_attention fills masked logits with the dtype's minimum, not "
        "-inf: a fully masked row is a uniform softmax, the mean of v",
        "not reachable: the causal mask never masks a whole row",
        "padding-only sequences: 0, NaN or mean(v) depending on the module",
        "no built-in case masks a whole row; a port with padding masks must decide",
    ),
    Convention(
        "transformer_norm_first",
        "nn.TransformerEncoderLayer norm_first=False: post-norm, x = LN(x + f(x))",
        "Flax has no transformer layer; its examples (and most JAX models) are pre-norm, "
        "x = x + f(LN(x))",
        "pre-norm blocks (residual of [layer_norm, ...])",
        "a different network, not a rounding difference: gradients differ at O(1)",
        "the transformer case spells its blocks out as layers in every implementation",
    ),
    Convention(
        "embedding_padding_idx",
        "F.embedding(padding_idx=i): row i gets no gradient (and nn.Embedding zeroes it "
        "at init)",
        "flax.linen.Embed has no padding_idx: row i is trained like any other",
        "torch's (padding_idx setting)",
        "row i's gradient: zero in torch, the sum of its positions' signals in Flax",
        "an embedding with padding_idx is 'not expressible in jax'",
    ),
)
"""The layers' conventions, in report order."""
