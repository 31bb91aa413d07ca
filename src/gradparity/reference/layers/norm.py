"""Layer normalisation and batch normalisation, with their backward passes written out.

Both normalise x over some axes A (m values each) and scale and shift the result:

    mu = mean_A x,   var = mean_A (x - mu)^2      (the biased variance)
    x_hat = (x - mu) / sqrt(var + eps),   y = gamma x_hat + beta
(``variance="mean_of_squares"`` computes var as ``mean(x^2) - mu^2``, Flax's default,
which cancels where the mean is large against the spread: the catalogued
``norm_variance_form``.)

and share one backward (the mean and the variance depend on every x in A):

    dx_hat = dL/dy gamma
    dL/dx = (dx_hat - mean_A dx_hat - x_hat mean_A(dx_hat x_hat)) / sqrt(var + eps)
    dL/dgamma = sum dL/dy x_hat,   dL/dbeta = sum dL/dy      (over every other axis)

LayerNorm normalises each example over its last axis (eps 1e-5 is PyTorch's default,
Flax's is 1e-6: catalogued, ``layer_norm_eps``). BatchNorm normalises each channel over
the batch (and the pixels of NCHW images) while training, and keeps running statistics

    running_mean = (1 - momentum) running_mean + momentum mu
    running_var  = (1 - momentum) running_var + momentum var * m / (m - 1)

with PyTorch's meaning of ``momentum`` (the weight of the new value, 0.1) and its
unbiased running variance; Flax weighs the *old* value (momentum 0.99) and keeps the
biased one (catalogued: ``batch_norm_momentum``, ``batch_norm_running_variance``). In
eval mode (``training=False``) it normalises with the running statistics, an affine map
whose backward is ``dL/dx = dL/dy gamma / sqrt(running_var + eps)``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gradparity.reference.layers.base import Layer, Setting, Shape, boolean, positive_number


def _momentum(value) -> bool:
    return positive_number(value) and value <= 1


VARIANCES = ("centered", "mean_of_squares")
"""How a normalisation computes its variance (the catalogued ``norm_variance_form``):
``centered``, ``mean((x - mu)^2)`` (PyTorch's), or ``mean_of_squares``,
``max(0, mean(x^2) - mu^2)`` (Flax's default, ``use_fast_variance=True``), which cancels
where |mu| is large against the spread: its rounding, about ``eps mu^2``, is then a large
part of the variance."""


def normalise(x: np.ndarray, axes: tuple[int, ...], eps: float,
              variance: str = "centered", rounding=None):
    """``(x_hat, 1 / sqrt(var + eps), mu, var)`` over ``axes``. ``rounding`` (the
    tolerance model's probe) rounds the two terms of the ``mean_of_squares`` difference,
    whose own rounding no rounding of x or of the output reaches."""
    mu = x.mean(axis=axes, keepdims=True)
    if variance == "mean_of_squares":
        squares, square = (x * x).mean(axis=axes, keepdims=True), mu * mu
        if rounding is not None:
            squares, square = rounding(squares), rounding(square)
        var = np.maximum(squares - square, 0.0)
    else:
        var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    inverse = 1.0 / np.sqrt(var + eps)
    return (x - mu) * inverse, inverse, mu, var


def _variance(value) -> bool:
    return value in VARIANCES


VARIANCE_SETTING = Setting("centered", "centered (PyTorch) or mean_of_squares (Flax's "
                           "default, use_fast_variance)", _variance)


class _Normalisation(Layer):
    """What both norms share: the variance's form, and the probe's rounding inside the
    form that cancels."""

    @property
    def ROUNDS_INSIDE(self) -> bool:  # the base class's flag, per instance
        return self.variance == "mean_of_squares"

    def _rounded(self, y, rounding):
        return y if rounding is None else rounding(y)


def normalise_backward(dx_hat: np.ndarray, x_hat: np.ndarray, inverse: np.ndarray,
                       axes: tuple[int, ...]) -> np.ndarray:
    """dL/dx of x_hat = (x - mean) / std over ``axes``, given dL/dx_hat."""
    return (dx_hat - dx_hat.mean(axis=axes, keepdims=True)
            - x_hat * (dx_hat * x_hat).mean(axis=axes, keepdims=True)) * inverse


class LayerNorm(_Normalisation):
    """Normalises over the last axis; ``affine`` adds gamma (ones) and beta (zeros)."""

    kind = "layer_norm"
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "eps": Setting(1e-5, "a number > 0", positive_number),
        "affine": Setting(True, "True or False", boolean),
        "variance": VARIANCE_SETTING,
    }

    @property
    def PARAMETERS(self) -> tuple[str, ...]:
        return ("gamma", "beta") if self.affine else ()

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {name: (input_shape[-1],) for name in self.PARAMETERS}

    def reduction_length(self, input_shape: Shape) -> int:
        return input_shape[-1]

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # PyTorch initialises gamma to 1 and beta to 0; a check with those would never see
        # a gamma or beta mixed up, so the reference draws them around those values
        features = input_shape[-1]
        if not self.affine:
            return {}
        return {"gamma": 1.0 + 0.1 * rng.standard_normal(features),
                "beta": 0.1 * rng.standard_normal(features)}

    def forward(self, params, x, training=True, state=None, rounding=None):
        x_hat, inverse, _, _ = normalise(x, (-1,), self.eps, self.variance, rounding)
        y = x_hat * params["gamma"] + params["beta"] if self.affine else x_hat
        return self._rounded(y, rounding), (x_hat, inverse)

    def backward(self, params, cache, dy):
        x_hat, inverse = cache
        dx_hat = dy * params["gamma"] if self.affine else dy
        grads = {}
        if self.affine:
            leading = tuple(range(dy.ndim - 1))
            grads = {"gamma": (dy * x_hat).sum(axis=leading), "beta": dy.sum(axis=leading)}
        return normalise_backward(dx_hat, x_hat, inverse, (-1,)), grads


class BatchNorm(_Normalisation):
    """Normalises each channel (axis 1) over the batch and the pixels; keeps running
    statistics (``running_mean``, ``running_var``) as its state."""

    kind = "batch_norm"
    STATE = ("running_mean", "running_var")
    SETTINGS: ClassVar[dict[str, Setting]] = {
        "eps": Setting(1e-5, "a number > 0", positive_number),
        "momentum": Setting(0.1, "a number in (0, 1] (the weight of the new statistics, "
                            "PyTorch's meaning)", _momentum),
        "training": Setting(True, "True (batch statistics) or False (running statistics)",
                            boolean),
        "running_var_unbiased": Setting(True, "True (PyTorch) or False (Flax)", boolean),
        "variance": VARIANCE_SETTING,
    }
    PARAMETERS = ("gamma", "beta")

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {name: (input_shape[0],) for name in self.PARAMETERS}

    def reduction_length(self, input_shape: Shape) -> int:
        return int(np.prod(input_shape[1:])) if len(input_shape) > 1 else 1

    def gradient_terms(self, input_shape: Shape) -> int:
        return self.reduction_length(input_shape)

    def init(self, input_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        channels = input_shape[0]
        return {"gamma": 1.0 + 0.1 * rng.standard_normal(channels),
                "beta": 0.1 * rng.standard_normal(channels)}

    def init_state(self, input_shape: Shape) -> dict[str, np.ndarray]:
        channels = input_shape[0]
        return {"running_mean": np.zeros(channels), "running_var": np.ones(channels)}

    @staticmethod
    def _axes(x: np.ndarray) -> tuple[int, ...]:
        return (0, *range(2, x.ndim))

    @staticmethod
    def _per_channel(values: np.ndarray, x: np.ndarray) -> np.ndarray:
        return values.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, params, x, training=True, state=None, rounding=None):
        gamma, beta = (self._per_channel(params[n], x) for n in ("gamma", "beta"))
        axes = self._axes(x)
        if self.training:
            x_hat, inverse, mu, var = normalise(x, axes, self.eps, self.variance, rounding)
            count = x.size // x.shape[1]
            return (self._rounded(gamma * x_hat + beta, rounding),
                    (x_hat, inverse, mu, var, count))
        inverse = 1.0 / np.sqrt(self._per_channel(state["running_var"], x) + self.eps)
        x_hat = (x - self._per_channel(state["running_mean"], x)) * inverse
        return self._rounded(gamma * x_hat + beta, rounding), (x_hat, inverse, None, None, None)

    def new_state(self, cache, state):
        _, _, mu, var, count = cache
        if mu is None:
            return dict(state)
        m = self.momentum
        batch_var = var.ravel() * count / (count - 1) if self.running_var_unbiased else var.ravel()
        return {"running_mean": (1 - m) * state["running_mean"] + m * mu.ravel(),
                "running_var": (1 - m) * state["running_var"] + m * batch_var}

    def backward(self, params, cache, dy):
        x_hat, inverse, mu, _, _ = cache
        axes = self._axes(dy)
        grads = {"gamma": (dy * x_hat).sum(axis=axes), "beta": dy.sum(axis=axes)}
        dx_hat = dy * self._per_channel(params["gamma"], dy)
        if mu is None:  # eval mode: an affine map of x
            return dx_hat * inverse, grads
        return normalise_backward(dx_hat, x_hat, inverse, axes), grads
