"""Tolerances for one layer checked on its own (``gradparity check --layer``).

A single layer's output, input gradient and parameter gradients are each the result
of a few sums and elementwise steps, so the model is the network model's static part,
measured on the layer's own inputs (in float64, like :mod:`gradparity.compare.derivation`):

    K_q = C sqrt(n) + G (Gamma_q + Rho_q)

``n`` is the layer's longest sum (fan-in, kernel x kernel x channels, ...) plus the
batch; ``Gamma_q`` the change of quantity q when the input, the parameters, the
upstream gradient and the output are each moved by one eps (random signs); ``Rho_q``
the reference layer's own float32 rounding against float64, in eps (0 where float32
cannot represent q). The constants are the network model's
(:mod:`gradparity.compare.tolerances`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from gradparity.compare.metrics import machine_epsilon
from gradparity.compare.tolerances import (
    CONDITIONING_DRAWS,
    CONDITIONING_SAFETY,
    REFERENCE_ROUNDING_SAFETY,
    SUM_SAFETY,
)
from gradparity.reference.layers import Layer

EPS32 = machine_epsilon("float32")
REPRESENTABLE32 = float(np.finfo(np.float32).tiny) / EPS32


def _run(layer: Layer, params: Mapping[str, np.ndarray], x: np.ndarray, dy: np.ndarray,
         training: bool, state) -> dict[str, np.ndarray]:
    with np.errstate(all="ignore"):
        y, cache = layer.forward(params, x, training, state)
        dx, grads = layer.backward(params, cache, dy)
        new_state = layer.new_state(cache, state) if state else {}
    return {"output": np.asarray(y), "input gradient": np.asarray(dx),
            **{f"gradient of {n}": np.asarray(g) for n, g in grads.items()},
            **{f"state {n}": np.asarray(v) for n, v in new_state.items()}}


def _relative(mine: np.ndarray, exact: np.ndarray) -> float:
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    if scale == 0.0:
        return 0.0
    with np.errstate(all="ignore"):
        change = float(np.abs(np.asarray(mine, np.float64) - exact).max())
    return min(change / scale, 1.0) if np.isfinite(change) else 1.0


def layer_tolerances(layer: Layer, params: Mapping[str, np.ndarray], x: np.ndarray,
                     dy: np.ndarray, dtype: str, input_shape: tuple[int, ...],
                     training: bool = True, state=None, seed: int = 0) -> dict[str, float]:
    """The normwise relative tolerance of every quantity of one layer check."""
    eps = machine_epsilon(dtype)
    wide = {n: np.asarray(v, np.float64) for n, v in params.items()}
    x64 = x if x.dtype.kind == "i" else np.asarray(x, np.float64)
    dy64 = np.asarray(dy, np.float64)
    state64 = {n: np.asarray(v, np.float64) for n, v in (state or {}).items()}
    exact = _run(layer, wide, x64, dy64, training, state64)
    rng = np.random.default_rng([seed, 3])

    def rounded(values: np.ndarray) -> np.ndarray:
        if values.dtype.kind == "i":
            return values
        return values * (1 + eps * np.where(rng.random(values.shape) < 0.5, -1.0, 1.0))

    gamma = dict.fromkeys(exact, 0.0)
    for _ in range(CONDITIONING_DRAWS):
        moved = _run(layer, {n: rounded(v) for n, v in wide.items()}, rounded(x64),
                     rounded(dy64), training, state64)
        for name, value in exact.items():
            gamma[name] = max(gamma[name], _relative(rounded(moved[name]), value) / eps)
    narrow = _run(layer, {n: v.astype(np.float32) for n, v in wide.items()},
                  x64 if x64.dtype.kind == "i" else x64.astype(np.float32),
                  dy64.astype(np.float32), training,
                  {n: v.astype(np.float32) for n, v in state64.items()})
    rho = {name: (0.0 if float(np.abs(value).max(initial=0.0)) < REPRESENTABLE32
                  else _relative(narrow[name], value) / EPS32) for name, value in exact.items()}
    n = layer.reduction_length(input_shape) + x.shape[0] * layer.gradient_terms(input_shape)
    base = SUM_SAFETY * math.sqrt(n)
    return {name: (base + CONDITIONING_SAFETY * gamma[name]
                   + REFERENCE_ROUNDING_SAFETY * rho[name]) * eps for name in exact}


def loss_tolerances(loss, y_hat: np.ndarray, y: np.ndarray, dtype: str,
                    seed: int = 0) -> dict[str, float]:
    """The tolerances of a loss layer's value and gradient (``loss``: a bound reference
    loss), measured the same way as a layer's."""
    eps = machine_epsilon(dtype)
    wide = np.asarray(y_hat, np.float64)
    targets = y if y.dtype.kind == "i" else np.asarray(y, np.float64)
    rng = np.random.default_rng([seed, 4])

    def run(values, labels) -> dict[str, np.ndarray]:
        with np.errstate(all="ignore"):
            return {"loss": np.asarray(loss.value(values, labels)),
                    "input gradient": np.asarray(loss.gradient(values, labels))}

    exact = run(wide, targets)
    gamma = dict.fromkeys(exact, 0.0)
    for _ in range(CONDITIONING_DRAWS):
        signs = np.where(rng.random(wide.shape) < 0.5, -1.0, 1.0)
        moved = run(wide * (1 + eps * signs), targets)
        for name, value in exact.items():
            gamma[name] = max(gamma[name], _relative(moved[name], value) / eps)
    narrow = run(wide.astype(np.float32),
                 targets if targets.dtype.kind == "i" else targets.astype(np.float32))
    rho = {name: _relative(narrow[name], value) / EPS32 for name, value in exact.items()}
    terms = float(np.abs(wide).max(axis=-1).mean()) / max(abs(float(exact["loss"])), 1e-300)
    base = SUM_SAFETY * math.sqrt(wide.size)
    return {name: (base + CONDITIONING_SAFETY * (gamma[name] + (min(terms, 1 / eps)
                                                                if name == "loss" else 0.0))
                   + REFERENCE_ROUNDING_SAFETY * rho[name]) * eps for name in exact}
