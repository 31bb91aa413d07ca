"""Losses, each value next to its gradient with respect to the network output.

``value(y_hat, y)`` returns the scalar loss; ``gradient(y_hat, y)`` returns
dL/dy_hat with the shape of ``y_hat``. ``y_hat`` is the output of the last
layer *after* the output activation; the two ``*_with_logits`` style losses
require the identity output activation, so there ``y_hat`` are the logits.

Reductions follow PyTorch's defaults (``reduction='mean'``), stated per loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradparity.reference.activations import sigmoid


@dataclass(frozen=True)
class Loss:
    """A named loss with its hand-written gradient.

    ``target_kind`` says what ``y`` holds: ``"real"`` (same shape as the output),
    ``"class_index"`` (integer labels of shape ``(batch,)``) or ``"binary"``
    (0/1 floats, same shape as the output). ``takes_logits`` losses fold the
    output nonlinearity in and need the identity output activation.
    """

    name: str
    short_name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    gradient: Callable[[np.ndarray, np.ndarray], np.ndarray]
    target_kind: str
    takes_logits: bool
    min_outputs: int = 1


# mean squared error, reduction='mean' over ALL elements (batch * outputs):
#   L = 1/(B*K) sum_ij (y_hat_ij - y_ij)^2
#   dL/dy_hat = 2 (y_hat - y) / (B*K)
def mean_squared_error(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    diff = y_hat - y
    return np.mean(diff * diff)


def mean_squared_error_gradient(y_hat: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 2 * (y_hat - y) / y_hat.size


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    # Subtracting the row max keeps exp() from overflowing; log-softmax is
    # invariant to that shift.
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))


# softmax cross-entropy with integer labels, mean over the batch:
#   L = -1/B sum_i log softmax(z_i)[y_i]
#   dL/dz = (softmax(z) - onehot(y)) / B
def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    log_probs = _log_softmax(logits)
    picked = log_probs[np.arange(logits.shape[0]), labels]
    return -np.mean(picked)


def softmax_cross_entropy_gradient(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    probs = np.exp(_log_softmax(logits))
    probs[np.arange(logits.shape[0]), labels] -= 1
    return probs / logits.shape[0]


# binary cross-entropy on logits, reduction='mean' over all elements:
#   L = 1/(B*K) sum_ij [max(z,0) - z*y + log(1 + exp(-|z|))]
# (algebraically -[y log s(z) + (1-y) log(1-s(z))], written so that no exp
# overflows and no log sees 0)
#   dL/dz = (sigmoid(z) - y) / (B*K)
def binary_cross_entropy_with_logits(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    per_element = np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))
    return np.mean(per_element)


def binary_cross_entropy_with_logits_gradient(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (sigmoid(logits) - y) / logits.size


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
        target_kind="binary", takes_logits=True,
    ),
}
"""The registry of losses: case validation, adapters, tests and the CLI read it."""
