"""Losses, each value next to its gradient with respect to the network output.

``value(y_hat, y)`` returns the scalar loss; ``gradient(y_hat, y)`` returns
dL/dy_hat with the shape of ``y_hat``. Values also take a stack of outputs,
``y_hat`` shaped ``(..., batch, outputs)`` against the same ``y``, and return one
loss per network of the stack: the finite-difference oracle evaluates many
perturbed networks at once that way. ``y_hat`` is the output of the last
layer *after* the output activation; the two ``*_with_logits`` style losses
require the identity output activation, so there ``y_hat`` are the logits.

Reductions follow PyTorch's defaults (``reduction='mean'``), stated per loss.
Every function takes arrays of any array API namespace and computes in it
(:mod:`gradparity.reference.namespace`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.reference.activations import bind_parameter, sigmoid
from gradparity.reference.namespace import namespace


@dataclass(frozen=True)
class Loss:
    """A named loss with its hand-written gradient.

    ``target_kind`` says what ``y`` holds: ``"real"`` (same shape as the output),
    ``"class_index"`` (integer labels of shape ``(batch,)``), ``"binary"``
    (0/1 floats, same shape as the output) or ``"probabilities"`` (rows that
    sum to 1). ``takes_logits`` losses fold the output nonlinearity in and need
    the identity output activation; ``output_activation`` names the one a loss
    requires otherwise (binary cross-entropy on probabilities: sigmoid).
    """

    name: str
    short_name: str
    value: Callable[..., np.ndarray]
    gradient: Callable[..., np.ndarray]
    target_kind: str
    takes_logits: bool
    min_outputs: int = 1
    output_activation: str | None = None
    parameter: str | None = None  # a case option both functions take as a keyword
    conventions: tuple[str, ...] = ()  # catalogued conventions they take the same way

    def bound(self, options: Mapping[str, Any]) -> Loss:
        """This loss with its parameter set from ``options`` (if it has one)."""
        return bind_parameter(self, options, "value", "gradient")


def _count(array: np.ndarray) -> int:
    """The number of entries (``math.prod`` of the shape: torch's ``size`` is a method)."""
    return math.prod(array.shape)


def mean_squared_error(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean squared error, reduction='mean' over ALL elements (batch B * outputs K):
    ``L = 1/(B*K) sum_ij (y_hat_ij - y_ij)^2``."""
    diff = y_hat - y
    return namespace(diff).mean(diff * diff, axis=(-2, -1))


def mean_squared_error_gradient(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dL/dy_hat = 2 (y_hat - y) / (B*K)``."""
    return 2 * (y_hat - y) / _count(y_hat)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    # Subtracting the row max keeps exp() from overflowing; log-softmax is
    # invariant to that shift.
    xp = namespace(logits)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def _picked(log_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log_probs[..., i, labels[i]] for every row i (of every network of a stack)."""
    xp = namespace(log_probs)
    index = xp.broadcast_to(xp.reshape(labels, (-1, 1)), (*log_probs.shape[:-1], 1))
    return xp.take_along_axis(log_probs, index, axis=-1)[..., 0]


def _onehot(labels: np.ndarray, classes: int, dtype: Any) -> np.ndarray:
    """``onehot[i, k] = 1 if labels[i] == k else 0``, in ``dtype``."""
    xp = namespace(labels)
    return xp.astype(xp.reshape(labels, (-1, 1)) == xp.arange(classes), dtype)


def _softmax_minus_onehot(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``softmax(z) - onehot(y)`` (subtracting 0 elsewhere changes no entry)."""
    probs = namespace(logits).exp(_log_softmax(logits))
    return probs - _onehot(labels, logits.shape[-1], logits.dtype)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax cross-entropy with integer labels, mean over the batch:
    ``L = -1/B sum_i log softmax(z_i)[y_i]`` (max-subtracted log-softmax)."""
    return -namespace(logits).mean(_picked(_log_softmax(logits), labels), axis=-1)


def softmax_cross_entropy_gradient(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``dL/dz = (softmax(z) - onehot(y)) / B``."""
    return _softmax_minus_onehot(logits, labels) / logits.shape[0]


def softmax_cross_entropy_sum(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax cross-entropy with integer labels, summed over the batch (two of five
    from-scratch projects reduce so): ``L = -sum_i log softmax(z_i)[y_i]``."""
    return -namespace(logits).sum(_picked(_log_softmax(logits), labels), axis=-1)


def softmax_cross_entropy_sum_gradient(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``dL/dz = softmax(z) - onehot(y)``."""
    return _softmax_minus_onehot(logits, labels)


def binary_cross_entropy_with_logits(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary cross-entropy on logits, reduction='mean' over all elements:
    ``L = 1/(B*K) sum_ij [max(z,0) - z*y + log(1 + exp(-|z|))]``, algebraically
    ``-[y log s(z) + (1-y) log(1-s(z))]``, written so that no exp overflows and no log
    sees 0."""
    xp = namespace(logits)
    per_element = xp.maximum(logits, 0) - logits * y + xp.log1p(xp.exp(-xp.abs(logits)))
    return xp.mean(per_element, axis=(-2, -1))


BCE_LOGITS_GRADIENT_FORMS = ("exact", "sigmoid_minus_target")
"""How ``sigmoid(z) - y`` is computed (the catalogued convention
``bce_logits_gradient_form``): ``exact`` (the reference's, what JAX's autodiff of optax's
loss gives) or ``sigmoid_minus_target`` (PyTorch's)."""


def binary_cross_entropy_with_logits_gradient(
        logits: np.ndarray, y: np.ndarray, bce_logits_gradient_form: str = "exact"
) -> np.ndarray:
    """``dL/dz = (sigmoid(z) - y) / (B*K)``, computed as
    ``((1 - y) sigmoid(z) - y sigmoid(-z)) / (B*K)`` (equal, as sigmoid(z) + sigmoid(-z)
    = 1): for y = 1 that is ``-sigmoid(-z)``, accurate where the logit is confidently
    right (``-4.2e-18`` at z = 40), where ``sigmoid(z) - 1`` is 0 in float64 from about
    z = 37 (17 in float32). ``sigmoid_minus_target`` (PyTorch's ``sigmoid(z) - y``, the
    catalogued convention ``bce_logits_gradient_form``) computes the difference."""
    if bce_logits_gradient_form == "exact":
        return ((1 - y) * sigmoid(logits) - y * sigmoid(-logits)) / _count(logits)
    if bce_logits_gradient_form == "sigmoid_minus_target":
        return (sigmoid(logits) - y) / _count(logits)
    raise ValueError(f"bce_logits_gradient_form must be one of "
                     f"{', '.join(BCE_LOGITS_GRADIENT_FORMS)}; got {bce_logits_gradient_form!r}")


def _squared_error_loss(half: bool, reduction: str) -> tuple[Callable, Callable]:
    """The mean squared error family, ``(value, gradient)`` for one reduction::

        mean:       L = sum (y_hat - y)^2 / (B*K)  dL/dy_hat = 2 (y_hat - y) / (B*K)
        sum:        L = sum (y_hat - y)^2          dL/dy_hat = 2 (y_hat - y)
        batch_mean: L = sum (y_hat - y)^2 / B      dL/dy_hat = 2 (y_hat - y) / B
        half_*:     the same times 1/2             (the 2 cancels)
    """
    factor = 0.5 if half else 1.0

    def divisor(y_hat: np.ndarray) -> int:
        batch, outputs = y_hat.shape[-2:]
        return {"mean": batch * outputs, "sum": 1, "batch_mean": batch}[reduction]

    def value(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
        diff = y_hat - y
        return factor * namespace(diff).sum(diff * diff, axis=(-2, -1)) / divisor(y_hat)

    def gradient(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 2 * factor * (y_hat - y) / divisor(y_hat)

    return value, gradient


HUBER_DELTA = 1.0  # torch.nn.functional.huber_loss and optax.losses.huber_loss default
SMOOTH_L1_BETA = 1.0  # torch.nn.functional.smooth_l1_loss default


def huber(y_hat: np.ndarray, y: np.ndarray, huber_delta: float = HUBER_DELTA) -> np.ndarray:
    """Huber loss (``delta = huber_delta``, default 1), mean over all elements:
    ``l(d) = d^2 / 2 if |d| <= delta else delta (|d| - delta / 2)``, ``d = y_hat - y``."""
    xp = namespace(y_hat)
    d = xp.abs(y_hat - y)
    return xp.mean(xp.where(d <= huber_delta, 0.5 * d * d, huber_delta * (d - 0.5 * huber_delta)),
                   axis=(-2, -1))


def huber_gradient(y_hat: np.ndarray, y: np.ndarray,
                   huber_delta: float = HUBER_DELTA) -> np.ndarray:
    """``dl/dd = d if |d| <= delta else delta sign(d)``, over the element count; continuous
    at ``|d| = delta``."""
    d = y_hat - y
    return namespace(d).clip(d, -huber_delta, huber_delta) / _count(y_hat)


def smooth_l1(y_hat: np.ndarray, y: np.ndarray,
              smooth_l1_beta: float = SMOOTH_L1_BETA) -> np.ndarray:
    """Smooth L1 (``beta = smooth_l1_beta``, default 1), mean over all elements:
    ``l(d) = d^2 / (2 beta) if |d| < beta else |d| - beta / 2`` (= huber with
    ``delta = beta``, divided by beta)."""
    xp = namespace(y_hat)
    d = xp.abs(y_hat - y)
    return xp.mean(xp.where(d < smooth_l1_beta, 0.5 * d * d / smooth_l1_beta,
                            d - 0.5 * smooth_l1_beta), axis=(-2, -1))


def smooth_l1_gradient(y_hat: np.ndarray, y: np.ndarray,
                       smooth_l1_beta: float = SMOOTH_L1_BETA) -> np.ndarray:
    """``dl/dd = clip(d / beta, -1, 1)``, over the element count."""
    d = y_hat - y
    return namespace(d).clip(d / smooth_l1_beta, -1, 1) / _count(y_hat)


BCE_LOG_FLOOR = -100.0  # torch clamps each log here (catalogued convention)
BCE_DENOMINATOR_FLOOR = 1e-12  # ... and p (1 - p) here in the gradient


def binary_cross_entropy(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary cross-entropy on probabilities (output activation sigmoid), mean over all:
    ``L = -mean[y log p + (1 - y) log(1 - p)]``, each log clamped at -100 like PyTorch
    (so saturated outputs give a finite loss that compares)."""
    xp = namespace(p)
    with np.errstate(divide="ignore"):  # log(0) is -inf, then clamped
        log_p = xp.maximum(xp.log(p), BCE_LOG_FLOOR)
        log_q = xp.maximum(xp.log1p(-p), BCE_LOG_FLOOR)
    return -xp.mean(y * log_p + (1 - y) * log_q, axis=(-2, -1))


def binary_cross_entropy_gradient(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dL/dp = (p - y) / max(p (1 - p), 1e-12) / n`` (PyTorch's clamp)."""
    return (p - y) / namespace(p).maximum(p * (1 - p), BCE_DENOMINATOR_FLOOR) / _count(p)


def softmax_cross_entropy_soft(logits: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Softmax cross-entropy with probability targets q (rows sum to 1), mean over the
    batch: ``L = -1/B sum_i sum_k q_ik log softmax(z_i)_k``."""
    return -namespace(logits).sum(q * _log_softmax(logits), axis=(-2, -1)) / logits.shape[-2]


def softmax_cross_entropy_soft_gradient(logits: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``dL/dz = (softmax(z) - q) / B``."""
    return (namespace(logits).exp(_log_softmax(logits)) - q) / logits.shape[0]


LABEL_SMOOTHING = 0.1  # the default epsilon of softmax_cross_entropy_smoothed


def _smoothed(labels: np.ndarray, classes: int, dtype: np.dtype, epsilon: float) -> np.ndarray:
    return (1 - epsilon) * _onehot(labels, classes, dtype) + epsilon / classes


def softmax_cross_entropy_smoothed(logits: np.ndarray, labels: np.ndarray,
                                   label_smoothing: float = LABEL_SMOOTHING) -> np.ndarray:
    """Label smoothing: the soft cross-entropy with ``q = (1 - e) onehot(y) + e / K``
    (``e = label_smoothing``, default 0.1)."""
    q = _smoothed(labels, logits.shape[-1], logits.dtype, label_smoothing)
    return softmax_cross_entropy_soft(logits, q)


def softmax_cross_entropy_smoothed_gradient(
    logits: np.ndarray, labels: np.ndarray, label_smoothing: float = LABEL_SMOOTHING
) -> np.ndarray:
    """``dL/dz = (softmax(z) - q) / B`` with the smoothed q."""
    q = _smoothed(labels, logits.shape[1], logits.dtype, label_smoothing)
    return softmax_cross_entropy_soft_gradient(logits, q)


def class_weights(classes: int, dtype: np.dtype, xp: Any = np) -> np.ndarray:
    """The class weights of ``softmax_cross_entropy_weighted``: ``w_k = linspace(0.5, 2, K)``
    (in float64, then rounded to ``dtype``), arrays of the namespace ``xp``."""
    return xp.astype(xp.linspace(0.5, 2.0, classes, dtype=xp.float64), dtype)


def _label_weights(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``w_{y_i}`` for every row i."""
    xp = namespace(logits)
    return xp.take(class_weights(logits.shape[-1], logits.dtype, xp), labels)


def softmax_cross_entropy_weighted(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Class-weighted softmax cross-entropy, PyTorch's weighted mean:
    ``L = sum_i w_{y_i} ce_i / sum_i w_{y_i}``."""
    xp, w = namespace(logits), _label_weights(logits, labels)
    return -xp.sum(w * _picked(_log_softmax(logits), labels), axis=-1) / xp.sum(w)


def softmax_cross_entropy_weighted_gradient(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``dL/dz_i = w_{y_i} (softmax(z_i) - onehot_i) / sum_i w_{y_i}``."""
    xp, w = namespace(logits), _label_weights(logits, labels)
    return xp.reshape(w, (-1, 1)) * _softmax_minus_onehot(logits, labels) / xp.sum(w)


def _mse_family() -> dict[str, Loss]:
    family = {}
    for half in (False, True):
        for reduction, suffix in (("mean", ""), ("sum", "_sum"), ("batch_mean", "_batch_mean")):
            if not half and reduction == "mean":
                continue  # "mse" itself, below
            name = ("half_mse" if half else "mse") + suffix
            value, gradient = _squared_error_loss(half, reduction)
            family[name] = Loss(name, name.replace("_", "-"), value, gradient,
                                target_kind="real", takes_logits=False)
    return family


LOSSES: dict[str, Loss] = {
    "mse": Loss(
        "mse", "mse", mean_squared_error, mean_squared_error_gradient,
        target_kind="real", takes_logits=False,
    ),
    "softmax_cross_entropy": Loss(
        "softmax_cross_entropy", "softmax-ce",
        softmax_cross_entropy, softmax_cross_entropy_gradient,
        target_kind="class_index", takes_logits=True, min_outputs=2,
    ),
    "binary_cross_entropy_with_logits": Loss(
        "binary_cross_entropy_with_logits", "bce-logits",
        binary_cross_entropy_with_logits, binary_cross_entropy_with_logits_gradient,
        target_kind="binary", takes_logits=True, conventions=("bce_logits_gradient_form",),
    ),
    **_mse_family(),
    "huber": Loss("huber", "huber", huber, huber_gradient, target_kind="real",
                  takes_logits=False, parameter="huber_delta"),
    "smooth_l1": Loss("smooth_l1", "smooth-l1", smooth_l1, smooth_l1_gradient,
                      target_kind="real", takes_logits=False, parameter="smooth_l1_beta"),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy", "bce", binary_cross_entropy, binary_cross_entropy_gradient,
        target_kind="binary", takes_logits=False, output_activation="sigmoid",
    ),
    "softmax_cross_entropy_soft": Loss(
        "softmax_cross_entropy_soft", "softmax-ce-soft", softmax_cross_entropy_soft,
        softmax_cross_entropy_soft_gradient, target_kind="probabilities", takes_logits=True,
        min_outputs=2,
    ),
    "softmax_cross_entropy_smoothed": Loss(
        "softmax_cross_entropy_smoothed", "softmax-ce-smooth",
        softmax_cross_entropy_smoothed, softmax_cross_entropy_smoothed_gradient,
        target_kind="class_index", takes_logits=True, min_outputs=2, parameter="label_smoothing",
    ),
    "softmax_cross_entropy_sum": Loss(
        "softmax_cross_entropy_sum", "softmax-ce-sum", softmax_cross_entropy_sum,
        softmax_cross_entropy_sum_gradient, target_kind="class_index", takes_logits=True,
        min_outputs=2,
    ),
    "softmax_cross_entropy_weighted": Loss(
        "softmax_cross_entropy_weighted", "softmax-ce-weighted",
        softmax_cross_entropy_weighted, softmax_cross_entropy_weighted_gradient,
        target_kind="class_index", takes_logits=True, min_outputs=2,
    ),
}
"""The registry of losses: case validation, adapters, tests and the CLI read it."""
