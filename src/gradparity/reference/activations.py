"""Elementwise activations, each forward next to its derivative.

Every activation is a pair ``forward(z) -> a`` and ``derivative(z, a) -> da/dz``.
The derivative receives both the pre-activation ``z`` and the activation ``a``
from the forward cache, so backward never recomputes the forward pass: sigmoid
and tanh use their output, relu uses its input.

Kink conventions (the value of the derivative where the function is not
differentiable) are stated per activation and pinned by tests. They match
PyTorch autograd and ``jax.grad`` so a disagreement there is a real difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Activation:
    """A named elementwise nonlinearity with its hand-written derivative.

    ``kinks`` lists the inputs where the function is not differentiable; the
    finite-difference oracle avoids stencils that cross them.
    """

    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray], np.ndarray]
    kinks: tuple[float, ...] = ()


# identity: a = z,  da/dz = 1
def identity(z: np.ndarray) -> np.ndarray:
    return z


def identity_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


# sigmoid: a = 1 / (1 + exp(-z)),  da/dz = a (1 - a)
def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid without overflow.

    ``exp(-|z|)`` is at most 1, so neither branch overflows: for z >= 0 use
    1 / (1 + e^-z), for z < 0 the algebraically equal e^z / (1 + e^z).
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return a * (1 - a)


# tanh: a = tanh(z),  da/dz = 1 - a^2
def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def tanh_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return 1 - a * a


# relu: a = max(z, 0),  da/dz = 1 if z > 0 else 0
def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def relu_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Step function; at the kink z == 0 the derivative is **0**.

    That is the subgradient PyTorch (``threshold_backward``) and ``jax.nn.relu``
    both return at exactly zero.
    """
    return (z > 0).astype(z.dtype)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", identity, identity_derivative),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_derivative),
    "tanh": Activation("tanh", tanh, tanh_derivative),
    "relu": Activation("relu", relu, relu_derivative, kinks=(0.0,)),
}
"""The registry of activations: case validation, adapters, tests and the CLI read it."""
