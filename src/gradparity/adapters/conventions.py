"""The catalogue of conventions: where PyTorch and JAX/optax define the same thing differently.

One entry per convention: its value in PyTorch, in JAX/optax and in the
gradparity reference, what it changes mathematically, and how gradparity
aligns the frameworks (or why it cannot). ``gradparity list``, the report and
the tests (``tests/adapters/test_conventions.py`` and
``tests/adapters/test_layer_conventions.py`` pin every framework claim made here against
the installed frameworks) all read this one tuple.
"""

from __future__ import annotations

from gradparity.adapters.convention import Convention
from gradparity.adapters.layer_conventions import LAYER_CONVENTIONS

MLP_CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "linear_weight_layout",
        "nn.Linear / F.linear store W as (out, in): z = x W^T + b",
        "any layout; gradparity's pytree uses (in, out): z = x W + b",
        "(fan_in, fan_out): z = a W + b",
        "none: a transpose",
        "the torch adapter transposes weights in and gradients/parameters out",
    ),
    Convention(
        "relu_derivative_at_zero",
        "0 (threshold_backward: x > 0)", "0", "0",
        "the gradient of a unit whose pre-activation is exactly 0",
        "all agree",
    ),
    Convention(
        "leaky_relu_derivative_at_zero",
        "negative_slope (leaky_relu_backward: x > 0)", "1 (where(x >= 0, ...))",
        "1; 'slope' (torch's) on request",
        "the gradient of a unit whose pre-activation is exactly 0: 1 versus 0.01",
        "no option in either framework; only reachable at z == 0 exactly. When a pair "
        "differs, the harness reruns the reference with torch's setting: a difference it "
        "reproduces is reported as this convention at those entries, not as a bug",
    ),
    Convention(
        "elu_derivative_at_zero",
        "alpha (x <= 0 branch)", "alpha (where(x > 0, 1, alpha e^x))", "alpha",
        "none with the default alpha = 1 (the derivative is continuous there)",
        "all agree",
    ),
    Convention(
        "gelu_default_form",
        "F.gelu default approximate='none': exact z Phi(z)",
        "jax.nn.gelu default approximate=True: the tanh approximation",
        "both, as the activations 'gelu' (exact) and 'gelu_tanh'",
        "activations differ by up to about 5e-4 absolute: a porting difference, not rounding",
        "gradparity passes the form explicitly (approximate='tanh' / approximate=False)",
    ),
    Convention(
        "gelu_cdf_form",
        "F.gelu (approximate='none'): z (1 + erf(z / sqrt 2)) / 2, which cancels in the "
        "lower tail: in float32 0.1% off at z = -4, 17% at -5 and 0 below -5.5 (its "
        "derivative 0 below -6.2); in float64 2% off at -8 and 0 below -8.4",
        "jax.nn.gelu(approximate=False): z erfc(-z / sqrt 2) / 2, accurate in the tail",
        "erfc (JAX's), in float64; torch's form on request",
        "units far below 0 give activations and derivatives under 1e-7 (float32) or 1e-16 "
        "(float64) of a unit's scale: invisible in most sums, but where a gradient entry is "
        "made only of them (raw 0..255 pixels) it is 0 in torch and not in JAX, and Adam "
        "turns either into a step of about lr",
        "no option in either framework. When a pair differs, the harness reruns the "
        "reference with torch's form: a difference it reproduces is reported as this "
        "convention, not as a bug",
    ),
    Convention(
        "tanh_float32_form",
        "torch.tanh in float32 on the CPU: within 0.53 ulp of tanh over [-9, 9]",
        "jnp.tanh in float32 on XLA's CPU backend: Eigen's rational approximation (a degree "
        "13 odd numerator over a degree 6 even denominator, fused multiply-adds, the input "
        "clamped at 7.9988): up to 2.3 ulp from tanh, its mean error 0.47 ulp (torch's "
        "0.13) and of one sign over stretches of inputs. In float64 another approximation, "
        "within 7 ulp of NumPy's",
        "np.tanh (within 0.91 ulp); XLA's kernel on request, bit for bit in float32",
        "each float32 tanh differs by an ulp or two, with a bias: invisible after one pass, "
        "but chaotic float32 training (lr 0.1, RMSprop, 8-bit pixels) carries it past the "
        "tolerance model, whose rounding is that of correctly rounded steps: JAX 37.6 times "
        "its tolerance (one draw) after 5 steps, where a correctly rounded tanh in JAX passes",
        "no option in either framework (a framework's own kernel). When a pair with JAX "
        "fails on a float32 tanh case, the harness reruns the reference with XLA's kernel: a "
        "difference it reproduces is reported as this convention, not as a bug",
    ),
    Convention(
        "bce_logits_gradient_form",
        "F.binary_cross_entropy_with_logits' backward: (sigmoid(z) - y), which cancels where a "
        "logit is confidently right: in float32 17% off at z = 15 and 0 from 16.6; in "
        "float64 4% off at 34 and 0 from 36.7",
        "jax.grad of optax.sigmoid_binary_cross_entropy (log_sigmoid terms): "
        "-sigmoid(-z) for y = 1, accurate (-4.2e-18 at z = 40)",
        "exact: ((1 - y) sigmoid(z) - y sigmoid(-z)); torch's form on request",
        "the gradient of a confidently right logit, below 1e-7 (float32) or 1e-16 (float64) "
        "of the loss's scale: invisible in most sums, but where a gradient entry is made only "
        "of such logits (large weights or inputs) it is 0 in torch and not in JAX, and an "
        "optimizer that normalises turns either into a step",
        "no option in either framework. When a pair differs, the harness reruns the "
        "reference with torch's form: a difference it reproduces is reported as this "
        "convention, not as a bug",
    ),
    Convention(
        "softplus_threshold",
        "F.softplus(threshold=20): returns z itself (derivative 1) for z > 20",
        "jax.nn.softplus: exact log(1 + e^z) everywhere",
        "exact (JAX's); threshold 20 (torch's) on request",
        "for z > 20 the value differs by log1p(e^-z) < 2.1e-9 and the derivative by "
        "1 - sigmoid(z) < 2.1e-9",
        "gradparity keeps torch's default. When a pair differs, the reference is rerun "
        "with torch's threshold: a difference it reproduces is reported as this convention "
        "at the entries above 20, not as a bug",
    ),
    Convention(
        "sgd_dampening",
        "torch.optim.SGD(dampening=d): b_t = momentum b_{t-1} + (1 - d) g_t",
        "optax.sgd's trace has no dampening",
        "torch's form",
        "the momentum buffer is scaled by (1 - d) after the first step",
        "cases with dampening != 0 are reported 'not expressible in jax', never emulated",
    ),
    Convention(
        "adamw_default_weight_decay",
        "torch.optim.AdamW weight_decay=1e-2", "optax.adamw weight_decay=1e-4",
        "1e-2 (torch's) unless the case sets it",
        "a 100x different decoupled decay when a port relies on defaults",
        "gradparity passes weight_decay explicitly to both",
    ),
    Convention(
        "adam_coupled_weight_decay",
        "torch.optim.Adam(weight_decay=w) adds w * theta to the gradient",
        "optax.adam has no weight decay; chain(add_decayed_weights(w), adam) does the same",
        "coupled for adam, decoupled for adamw",
        "none once chained that way",
        "the JAX adapter chains add_decayed_weights before adam / sgd",
    ),
    Convention(
        "rmsprop_eps_placement_and_decay",
        "torch.optim.RMSprop: g / (sqrt(v) + eps), alpha (decay) 0.99",
        "optax.rmsprop: g / sqrt(v + eps) by default (eps_in_sqrt=True), decay 0.9",
        "both placements (hyperparameter eps_in_sqrt), alpha 0.99 unless the case sets it",
        "with eps = 1e-8 and small v the step sizes differ visibly; the default decays "
        "differ 10x in memory length",
        "gradparity passes decay and eps_in_sqrt to optax; eps_in_sqrt=True is 'not "
        "expressible in torch'",
    ),
    Convention(
        "adagrad_eps_and_initial_accumulator",
        "torch.optim.Adagrad: g / (sqrt(s) + eps), eps 1e-10, initial accumulator 0",
        "optax.adagrad: g / sqrt(s + eps), eps 1e-7, initial accumulator 0.1",
        "both placements (eps_in_sqrt); eps and initial accumulator from the case",
        "the first steps differ strongly (an initial 0.1 in the accumulator shrinks them)",
        "eps and the initial accumulator are passed explicitly; each placement is 'not "
        "expressible' in the other framework",
    ),
    Convention(
        "adagrad_zero_accumulator_guard",
        "torch.optim.Adagrad: g / (sqrt(s) + eps), no guard",
        "optax.scale_by_rss: g * where(s > 0, rsqrt(s + eps), 0)",
        "optax's guard in optax's form (eps inside the root); none in torch's form",
        "where the accumulator s is 0 and eps underflows to 0 in the dtype (eps < 1e-45 in "
        "float32), the unguarded form gives 0 / 0 = NaN and optax gives 0",
        "the reference applies the guard in the eps-inside form, so jax and numpy agree; "
        "each form is 'not expressible' in the other framework",
    ),
    Convention(
        "amsgrad_maximum",
        "Adam(amsgrad=True): max of the raw v_t, divided by the current 1 - beta2^t",
        "optax.amsgrad: max of the bias-corrected v_hat_t",
        "both (hyperparameter max_of_bias_corrected)",
        "differs once the maximum was reached at an earlier step (the corrections differ)",
        "each form is 'not expressible' in the other framework; each framework is compared "
        "with the reference in its own form",
    ),
    Convention(
        "clip_by_global_norm_epsilon",
        "torch.nn.utils.clip_grad_norm_: g * max_norm / (||g|| + 1e-6) when that is < 1",
        "optax.clip_by_global_norm: g * max_norm / ||g|| when ||g|| > max_norm",
        "both (hyperparameter clip_norm_eps: 1e-6 or 0)",
        "clipped gradients differ by a relative 1e-6 / ||g||: far above float64 rounding",
        "each form is 'not expressible' in the other framework",
    ),
    Convention(
        "float64_mode",
        "float64 tensors compute in float64",
        "float64 needs jax_enable_x64; without it float64 input silently becomes float32",
        "float64 when the case says so",
        "a float64 case silently run in float32 would differ by ~1e-7",
        "the JAX adapter sets x64 per case and every adapter's output dtype is checked "
        "(PrecisionError)",
    ),
    Convention(
        "adam_bias_correction_dtype",
        "1 - beta^t computed in Python floats (float64)",
        "with x64 off (float32 cases) optax computes 1 - beta^t in float32; with x64 on, in "
        "float64 even for float32 parameters",
        "Python floats (float64)",
        "in float32, 1 - 0.999^t carries ~1000 eps relative error: Adam updates differ by up "
        "to ~500 eps between JAX and the others",
        "float32 cases run with x64 off (JAX's default); the derived tolerance has a term for "
        "it (gradparity.compare.tolerances, A) for pairs involving JAX",
    ),
    Convention(
        "squared_error_half_factor",
        "F.mse_loss has no 1/2",
        "optax.losses.l2_loss = 0.5 * squared_error; squared_error has no 1/2",
        "both: the losses mse* and half_mse*",
        "a factor 2 in every gradient when a port swaps l2_loss for mse_loss",
        "each loss name maps to the matching function in each framework",
    ),
    Convention(
        "smooth_l1_versus_huber",
        "F.smooth_l1_loss(beta) = huber(delta=beta) / beta; F.huber_loss(delta) separate",
        "optax has huber_loss only; smooth_l1 is huber_loss(delta=beta) / beta",
        "both, written out separately (equal at beta = delta = 1)",
        "a factor beta between the two for beta != 1",
        "the JAX adapter composes optax.losses.huber_loss / beta (an identity, not an emulation)",
    ),
    Convention(
        "binary_cross_entropy_clamp",
        "F.binary_cross_entropy clamps log(p) and log(1-p) at -100 and p(1-p) at 1e-12 in "
        "the gradient",
        "no BCE on probabilities in optax (only sigmoid_binary_cross_entropy on logits)",
        "torch's clamps",
        "finite loss and gradient at saturated outputs p = 0 or 1",
        "'not expressible in jax'",
    ),
    Convention(
        "class_weight_normalisation",
        "F.cross_entropy(weight=w), reduction='mean': sum w_y ce / sum w_y",
        "optax's softmax cross-entropy takes no class weights",
        "torch's weighted mean, w = linspace(0.5, 2, K)",
        "dividing by the batch size instead (a common hand-written idiom) rescales every "
        "gradient by sum w_y / B",
        "'not expressible in jax'",
    ),
    Convention(
        "label_smoothing",
        "F.cross_entropy(label_smoothing=e): targets (1 - e) onehot + e / K",
        "optax.smooth_labels(onehot, e): the same",
        "epsilon 0.1",
        "none",
        "all agree",
    ),
    Convention(
        "rmsprop_lr_in_momentum",
        "torch.optim.RMSprop: b_t = momentum b_{t-1} + d_t, theta -= lr_t b_t",
        "optax.rmsprop: scale_by_learning_rate before trace: b_t = momentum b_{t-1} + lr_t d_t",
        "both (option lr_in_momentum)",
        "none while lr is constant; under a schedule old steps keep their old learning rate "
        "in optax and take the current one in torch",
        "each form is 'not expressible' in the other framework; optimizer state is compared "
        "as the buffer of steps to subtract (optax's trace of updates is negated)",
    ),
    Convention(
        "cosine_schedule_past_period",
        "CosineAnnealingLR keeps following the cosine after T_max (back up to lr at 2 T_max)",
        "optax.cosine_decay_schedule clamps the count at decay_steps and holds alpha * lr",
        "both (option cosine_past_period: continue / hold)",
        "different learning rates for every step after the period",
        "only matters when steps > period + 1; then each form is 'not expressible' in the "
        "other framework",
    ),
    Convention(
        "step_schedule_precision",
        "StepLR: Python floats (float64)",
        "optax.exponential_decay: float32 even with jax_enable_x64 (the step count is int32)",
        "float64 (the case dtype)",
        "about 1e-8 relative error in every scheduled learning rate of a float64 run",
        "float64 cases with schedule='step' are 'not expressible in jax'; float32 cases "
        "compare (the rounding is below one float32 eps)",
    ),
    Convention(
        "scheduler_stepping",
        "lr_scheduler.step() is called by the user: per step or per epoch",
        "an optax schedule is evaluated at the update count, every update",
        "the schedule evaluated at the number of completed steps",
        "a port that steps torch's scheduler per epoch changes the rate batches-times less often",
        "gradparity calls scheduler.step() after every optimizer.step()",
    ),
    Convention(
        "dropout_masks",
        "F.dropout draws its mask from torch's generator; kept units scaled by 1 / (1 - p)",
        "jax.nn has no dropout: a JAX model draws its mask from a jax.random key",
        "inverted dropout with masks from the data generator",
        "different random masks: no two frameworks drop the same units",
        "the masks are drawn once in NumPy and multiplied in by every implementation",
    ),
    Convention(
        "mse_reduction",
        "F.mse_loss reduction='mean': divides by batch * outputs",
        "optax.losses.squared_error is elementwise; the caller reduces (gradparity: jnp.mean)",
        "mean over all elements",
        "a factor of outputs (or 2 with l2_loss's 1/2) when a port reduces differently",
        "gradparity reduces with the mean over all elements in every implementation",
    ),
)
"""The conventions of dense networks, activations, losses and optimizers."""

CONVENTIONS: tuple[Convention, ...] = MLP_CONVENTIONS + LAYER_CONVENTIONS
"""Every known convention, in report order: the MLP's, then the layers' beyond it."""

BY_NAME: dict[str, Convention] = {convention.name: convention for convention in CONVENTIONS}
