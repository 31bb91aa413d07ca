"""Elementwise activations, each forward next to its derivative.

Every activation is a pair ``forward(z) -> a`` and ``derivative(z, a) -> da/dz``.
The derivative receives both the pre-activation ``z`` and the activation ``a``
from the forward cache, so backward never recomputes the forward pass: sigmoid
and tanh use their output, relu uses its input.

Kink conventions (the value of the derivative where the function is not
differentiable) are stated per activation and pinned by tests. They match
PyTorch autograd and ``jax.grad`` so a disagreement there is a real difference.

Every function takes arrays of any array API namespace (NumPy, CuPy, ...) and
computes in it (:mod:`gradparity.reference.namespace`).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradparity.reference.namespace import erf, erfc, namespace


@dataclass(frozen=True)
class Activation:
    """A named elementwise nonlinearity with its hand-written derivative.

    ``kinks`` lists the inputs where the function is not differentiable; the
    finite-difference oracle avoids stencils that cross them. ``parameter``
    names the case option (``gradparity.spec.options``) that both functions take as
    a keyword argument of the same name; ``conventions`` names the catalogued
    conventions (``gradparity.adapters.conventions``) they take the same way, where
    the frameworks differ; :meth:`bound` fixes both from a case's options.
    ``rounds_inside``: both functions take ``rounding``, applied to an intermediate of
    their own formula that then cancels (``1 + tanh(u)``), so that the tolerance model's
    conditioning probe, which rounds every z and a, rounds that one too
    (:func:`rounds_intermediates`).
    """

    name: str
    forward: Callable[..., np.ndarray]
    derivative: Callable[..., np.ndarray]
    kinks: tuple[float, ...] = ()
    parameter: str | None = None
    conventions: tuple[str, ...] = ()
    rounds_inside: bool = False

    def bound(self, options: Mapping[str, Any]) -> Activation:
        """This activation with its parameter set from ``options`` (if it has one)."""
        return bind_parameter(self, options, "forward", "derivative")


def bind_parameter(entry: Any, options: Mapping[str, Any], *functions: str) -> Any:
    """``entry`` (a frozen dataclass with a ``parameter`` field naming a case option, and
    optionally ``conventions``) with the values ``options`` gives them bound into each of
    its ``functions`` as keywords (a convention only where its function takes it)."""
    names = [entry.parameter] if entry.parameter is not None else []
    names += list(getattr(entry, "conventions", ()))
    values = {name: options[name] for name in names if name in options}
    if not values:
        return entry
    bound = {}
    for function in functions:
        original = getattr(entry, function)
        accepted = {n: v for n, v in values.items() if n == entry.parameter
                    or n in inspect.signature(original).parameters}
        bound[function] = functools.partial(original, **accepted) if accepted else original
    return replace(entry, **bound)


def identity(z: np.ndarray) -> np.ndarray:
    """Identity: ``a = z``."""
    return z


def identity_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``da/dz = 1``."""
    return namespace(z).ones_like(z)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid: ``a = 1 / (1 + exp(-z))``, without overflow.

    ``exp(-|z|)`` is at most 1, so neither branch overflows: for z >= 0 use
    1 / (1 + e^-z), for z < 0 the algebraically equal e^z / (1 + e^z).
    """
    xp = namespace(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``da/dz = a (1 - a)``, from the cached output."""
    return a * (1 - a)


TANH_FLOAT32_FORMS = ("library", "xla_rational")
"""How a float32 tanh is computed (the catalogued convention ``tanh_float32_form``):
``library`` (the array library's own, within an ulp: NumPy's, like torch's) or
``xla_rational`` (XLA's CPU kernel, which JAX runs: a rational approximation)."""

# XLA's float32 tanh on the CPU (xla/codegen/intrinsic/tanh.cc, from Eigen's ptanh_float):
# x clamped to +-XLA_TANH_CLAMP, then x p(x^2) / q(x^2) by Horner's rule with fused
# multiply-adds; x itself below XLA_TANH_LINEAR, +-1 from XLA_TANH_ONE
XLA_TANH_NUMERATOR = (-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
                      5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
                      4.89352455891786e-03)
XLA_TANH_DENOMINATOR = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
                        4.89352518554385e-03)
XLA_TANH_CLAMP = 7.99881172180175781
XLA_TANH_LINEAR = 0.0004
XLA_TANH_ONE = 20.0


def _xla_tanh(z: np.ndarray) -> np.ndarray:
    """XLA's float32 tanh kernel, bit for bit (each fused multiply-add is one float64
    multiply-add rounded once to float32: the float32 product is exact in float64). A
    float64 ``z`` is rounded to float32 first and the kernel's value returned in float64:
    the float64 oracle in JAX's setting has JAX's tanh, and its own rounding elsewhere."""
    xp = namespace(z)
    wide = z.dtype != xp.float32
    x32 = xp.astype(z, xp.float32) if wide else z
    clamp = xp.asarray(XLA_TANH_CLAMP, dtype=xp.float32)
    x = xp.clip(x32, -clamp, clamp)
    square = xp.astype(x * x, xp.float64)

    def horner(coefficients: tuple[float, ...]) -> np.ndarray:
        value = xp.full_like(x, float(np.float32(coefficients[0])))
        for c in coefficients[1:]:  # fma(square, value, c), rounded once to float32
            value = xp.astype(square * xp.astype(value, xp.float64) + float(np.float32(c)),
                              xp.float32)
        return value

    ratio = x * horner(XLA_TANH_NUMERATOR) / horner(XLA_TANH_DENOMINATOR)
    magnitude = xp.abs(x32)
    ratio = xp.where(magnitude < XLA_TANH_LINEAR, x32, ratio)
    ratio = xp.where(magnitude >= XLA_TANH_ONE, xp.sign(x32), ratio)
    return xp.astype(ratio, z.dtype) if wide else ratio


def tanh(z: np.ndarray, tanh_float32_form: str = "library") -> np.ndarray:
    """Hyperbolic tangent: ``a = tanh(z)``; ``tanh_float32_form`` (the catalogued
    convention): ``library`` computes it with the array library's tanh, ``xla_rational``
    with XLA's CPU kernel (:func:`_xla_tanh`)."""
    if tanh_float32_form == "library":
        return namespace(z).tanh(z)
    if tanh_float32_form == "xla_rational":
        return _xla_tanh(z)
    raise ValueError(f"tanh_float32_form must be one of {', '.join(TANH_FLOAT32_FORMS)}; "
                     f"got {tanh_float32_form!r}")


def tanh_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``da/dz = 1 - a^2``, from the cached output."""
    return 1 - a * a


def relu(z: np.ndarray) -> np.ndarray:
    """Rectified linear unit: ``a = max(z, 0)``."""
    return namespace(z).maximum(z, 0)


def relu_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``da/dz = 1 if z > 0 else 0``; at the kink z == 0 the derivative is **0**.

    That is the subgradient PyTorch (``threshold_backward``) and ``jax.nn.relu``
    both return at exactly zero.
    """
    return namespace(z).astype(z > 0, z.dtype)


LEAKY_SLOPE = 0.01  # torch.nn.functional.leaky_relu and jax.nn.leaky_relu default


def leaky_relu(z: np.ndarray, negative_slope: float = LEAKY_SLOPE) -> np.ndarray:
    """Leaky relu: ``a = z if z >= 0 else s z`` (``s = negative_slope``, default 0.01)."""
    return namespace(z).where(z >= 0, z, negative_slope * z)


def leaky_relu_derivative(
    z: np.ndarray, a: np.ndarray, negative_slope: float = LEAKY_SLOPE,
    leaky_relu_derivative_at_zero: str = "one",
) -> np.ndarray:
    """``da/dz = 1 if z >= 0 else s``. At the kink z == 0 the derivative is **1**.

    That is jax.nn.leaky_relu's (``where(x >= 0, ...)``); PyTorch's
    ``leaky_relu_backward`` returns the slope at exactly 0 (``x > 0``): the catalogued
    convention ``leaky_relu_derivative_at_zero`` ("one" or "slope"), reachable only at
    z == 0 exactly. The harness sets "slope" to reproduce PyTorch when it explains a
    difference.
    """
    xp = namespace(z)
    # ones in z's dtype and the slope a weak scalar: the slope is rounded to that dtype
    # once, as a where in float64 followed by a cast would round it
    if leaky_relu_derivative_at_zero == "slope":
        return xp.where(z > 0, xp.ones_like(z), negative_slope)
    return xp.where(z >= 0, xp.ones_like(z), negative_slope)


ELU_ALPHA = 1.0  # torch and jax default


def elu(z: np.ndarray, elu_alpha: float = ELU_ALPHA) -> np.ndarray:
    """ELU: ``a = z if z > 0 else alpha (e^z - 1)`` (``alpha = elu_alpha``, default 1)."""
    xp = namespace(z)
    return xp.where(z > 0, z, elu_alpha * xp.expm1(xp.minimum(z, 0)))


def elu_derivative(z: np.ndarray, a: np.ndarray, elu_alpha: float = ELU_ALPHA) -> np.ndarray:
    """``da/dz = 1 if z > 0 else alpha e^z = a + alpha``: **alpha** at the kink (both
    frameworks). For alpha != 1 the derivative jumps there (1 versus alpha)."""
    return namespace(z).where(z > 0, 1.0, a + elu_alpha)


SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
GELU_TANH_CUBIC = 0.044715  # the tanh approximation's coefficient (both frameworks)


def _float64(z: np.ndarray) -> np.ndarray:
    xp = namespace(z)
    return xp.astype(z, xp.float64, copy=False)


GELU_CDF_FORMS = ("erfc", "one_plus_erf")
"""How Phi is computed (the catalogued convention ``gelu_cdf_form``): ``erfc`` (JAX's,
the reference's) or ``one_plus_erf`` (PyTorch's)."""


def _normal_cdf(z: np.ndarray, gelu_cdf_form: str = "erfc") -> np.ndarray:
    """Phi(z), the standard normal CDF.

    ``erfc`` (the default, ``jax.nn.gelu``'s): ``Phi(z) = erfc(-z / sqrt 2) / 2`` in
    float64, accurate to an ulp in the lower tail too (``Phi(-9) = 1.1e-19``).
    ``one_plus_erf`` (``F.gelu``'s, the catalogued convention ``gelu_cdf_form``):
    ``(1 + erf(z / sqrt 2)) / 2`` with erf rounded to z's dtype and the sum in it, which
    cancels where erf is within rounding of -1: torch's GELU is 0.1% off at z = -4 and 0
    below -5.5 in float32, 2% off at -8 and 0 below -8.4 in float64 (this form
    reproduces torch's float64 values to an ulp of 1 in Phi, zeros included; torch's
    float32 kernel's vectorised erf is not reproduced to the bit)."""
    xp, z64 = namespace(z), _float64(z)
    if gelu_cdf_form == "erfc":
        return 0.5 * erfc(-z64 / math.sqrt(2))
    if gelu_cdf_form == "one_plus_erf":
        return 0.5 * (1 + xp.astype(erf(z64 / math.sqrt(2)), z.dtype))
    raise ValueError(f"gelu_cdf_form must be one of {', '.join(GELU_CDF_FORMS)}; "
                     f"got {gelu_cdf_form!r}")


def gelu(z: np.ndarray, gelu_cdf_form: str = "erfc") -> np.ndarray:
    """GELU, the exact form: ``a = z Phi(z)`` with Phi the standard normal CDF
    (``F.gelu`` default; ``jax.nn.gelu(approximate=False)``), Phi from erfc (see
    :func:`_normal_cdf`)."""
    return namespace(z).astype(z * _normal_cdf(z, gelu_cdf_form), z.dtype)


def gelu_derivative(z: np.ndarray, a: np.ndarray, gelu_cdf_form: str = "erfc"
                    ) -> np.ndarray:
    """``da/dz = Phi(z) + z phi(z)``, phi the standard normal density. No cancellation in
    the lower tail: there ``Phi(z)`` is about ``phi(z) / |z|``, far below ``|z| phi(z)``."""
    xp, z64 = namespace(z), _float64(z)
    density = xp.exp(-0.5 * z64 * z64) / math.sqrt(2 * math.pi)
    return xp.astype(_normal_cdf(z, gelu_cdf_form) + z64 * density, z.dtype)


GELU_TANH_SATURATED = 20.0
"""Beyond it ``u`` exceeds 300 and ``tanh(u)`` is exactly +-1 in float32 and float64."""


def _saturated(z: np.ndarray) -> np.ndarray:
    """z clipped to +-:data:`GELU_TANH_SATURATED` where only ``tanh(u)`` and ``u'`` read
    it: the same values, but ``z^3`` no longer overflows (float32 beyond about 7e12, where
    training that explodes takes it) and ``(1 - t^2) u'`` is ``0``, not ``0 * inf``."""
    return namespace(z).clip(z, -GELU_TANH_SATURATED, GELU_TANH_SATURATED)


def _gelu_tanh_t(z: np.ndarray, rounding: Callable | None) -> np.ndarray:
    """``t = tanh(u)``, ``u = c (z + 0.044715 z^3)``; ``rounding`` applied to it."""
    z = _saturated(z)
    t = namespace(z).tanh(SQRT_2_OVER_PI * (z + GELU_TANH_CUBIC * z**3))
    return t if rounding is None else rounding(t)


def gelu_tanh(z: np.ndarray, rounding: Callable | None = None) -> np.ndarray:
    """GELU, the tanh approximation: ``a = z/2 (1 + tanh(u))``,
    ``u = c (z + 0.044715 z^3)``, ``c = sqrt(2/pi)`` (``jax.nn.gelu`` default;
    ``F.gelu(approximate="tanh")``). Every framework writes it so, and ``1 + tanh(u)``
    cancels where z is far below 0: an ulp of tanh (libraries differ by one there) is
    then a large part of ``a`` (``rounding``: the probe's rounding of ``t``)."""
    return 0.5 * z * (1 + _gelu_tanh_t(z, rounding))


def gelu_tanh_derivative(z: np.ndarray, a: np.ndarray, rounding: Callable | None = None
                         ) -> np.ndarray:
    """``da/dz = (1 + t)/2 + z/2 (1 - t^2) c (1 + 3 * 0.044715 z^2)``, ``t = tanh(u)``
    (``rounding``: as in :func:`gelu_tanh`)."""
    t, inside = _gelu_tanh_t(z, rounding), _saturated(z)
    return (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * SQRT_2_OVER_PI
            * (1 + 3 * GELU_TANH_CUBIC * inside * inside))


def silu(z: np.ndarray) -> np.ndarray:
    """SiLU (swish): ``a = z sigmoid(z)``."""
    return z * sigmoid(z)


def silu_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``da/dz = s (1 + z (1 - s))``, ``s = sigmoid(z)``."""
    s = sigmoid(z)
    return s * (1 + z * (1 - s))


def softplus(z: np.ndarray, softplus_threshold: float = 0.0) -> np.ndarray:
    """Softplus: ``a = log(1 + e^z) = max(z, 0) + log1p(e^-|z|)``, exact everywhere
    (jax.nn.softplus). PyTorch's default ``threshold=20`` returns z itself above 20: the
    catalogued convention ``softplus_threshold`` (0: exact; 20: PyTorch's), about 2e-9
    relative there."""
    xp = namespace(z)
    exact = xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))
    return xp.where(z > softplus_threshold, z, exact) if softplus_threshold else exact


def softplus_derivative(z: np.ndarray, a: np.ndarray, softplus_threshold: float = 0.0
                        ) -> np.ndarray:
    """``da/dz = sigmoid(z)`` (1 above the threshold in PyTorch's convention)."""
    if softplus_threshold:
        return namespace(z).where(z > softplus_threshold, 1.0, sigmoid(z))
    return sigmoid(z)


def rounds_intermediates(perturb: Callable | None) -> Callable | None:
    """``perturb`` where it stands for rounding (it carries ``rounds_intermediates``: the
    tolerance model's conditioning probes), to be applied inside activations that round
    an intermediate of their own (``Activation.rounds_inside``); None otherwise (no
    perturbation, or one that mirrors values near kinks and counts its calls)."""
    return perturb if getattr(perturb, "rounds_intermediates", False) else None


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation("identity", identity, identity_derivative),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_derivative),
    "tanh": Activation("tanh", tanh, tanh_derivative, conventions=("tanh_float32_form",)),
    "relu": Activation("relu", relu, relu_derivative, kinks=(0.0,)),
    "leaky_relu": Activation("leaky_relu", leaky_relu, leaky_relu_derivative, kinks=(0.0,),
                              parameter="negative_slope",
                              conventions=("leaky_relu_derivative_at_zero",)),
    "elu": Activation("elu", elu, elu_derivative, kinks=(0.0,), parameter="elu_alpha"),
    "gelu": Activation("gelu", gelu, gelu_derivative, conventions=("gelu_cdf_form",)),
    "gelu_tanh": Activation("gelu_tanh", gelu_tanh, gelu_tanh_derivative,
                            rounds_inside=True),
    "silu": Activation("silu", silu, silu_derivative),
    "softplus": Activation("softplus", softplus, softplus_derivative,
                            conventions=("softplus_threshold",)),
}
"""The registry of activations: case validation, adapters, tests and the CLI read it."""
