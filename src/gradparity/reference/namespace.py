"""Which array library the reference computes with: NumPy, or any other that follows the
array API standard (CuPy on a GPU, torch tensors, the strict test namespace).

The dense MLP's textbook code (forward, :class:`~gradparity.reference.network.Backprop`,
the activations, the losses and the optimizers) asks :func:`namespace` for the module
of its input arrays and calls only functions of the standard on it, so the same lines
run on NumPy and, where a GPU is used, on CuPy. NumPy arrays get NumPy itself (NumPy 2's
main namespace follows the standard), so a NumPy run makes exactly the calls it always
made; any other array goes through ``array_api_compat``, imported only then.

The standard has no error function; :func:`erf` and :func:`erfc` name each library's
own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

NAMESPACES = ("numpy", "cupy", "torch", "array_api_strict")
"""The array libraries the reference can be asked to run on (``reference_namespace``):
``numpy``, ``cupy`` (a CUDA GPU), ``torch`` (its tensors, on their own device) and
``array_api_strict`` (the standard and nothing more: the tests' proof that the code
calls nothing else)."""


_NUMPY = (np.ndarray, np.generic, int, float)


def namespace(*arrays: Any) -> ModuleType:
    """The array API namespace of ``arrays``: ``numpy`` itself for NumPy arrays and
    Python scalars, ``array_api_compat.array_namespace`` for anything else."""
    for array in arrays:  # a loop, not all(...): this runs for every operation
        if not isinstance(array, _NUMPY):
            break
    else:
        return np
    try:
        from array_api_compat import array_namespace
    except ImportError as error:  # pragma: no cover - a dependency of the package
        raise ImportError("the reference needs array-api-compat for arrays that are not "
                          "NumPy's: pip install array-api-compat") from error
    return array_namespace(*(a for a in arrays if not isinstance(a, (int, float))))


def named(name: str) -> ModuleType:
    """The array API namespace called ``name`` (one of :data:`NAMESPACES`).

    Raises ``ValueError`` naming the allowed values for any other name, and
    ``ImportError`` with the reason where the library is not installed."""
    if name not in NAMESPACES:
        raise ValueError(f"reference_namespace: invalid value {name!r}; allowed: "
                         f"{', '.join(NAMESPACES)}")
    if name == "numpy":
        return np
    if name == "array_api_strict":
        import array_api_strict

        return array_api_strict
    import importlib

    library = importlib.import_module(name)  # ImportError says which one is missing
    from array_api_compat import array_namespace

    return array_namespace(library.asarray([0.0]))


def to_namespace(value: Any, xp: ModuleType) -> Any:
    """``value`` (a NumPy array, or a mapping or sequence of them) as arrays of ``xp``
    (on its default device: for CuPy, the current GPU). NumPy's stay as they are."""
    if xp is np:
        return value
    if isinstance(value, Mapping):
        return {name: to_namespace(v, xp) for name, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_namespace(v, xp) for v in value)
    # a writable host copy: torch warns on read-only NumPy memory it would share
    return xp.asarray(np.array(value, copy=True))


def to_numpy(value: Any) -> Any:
    """``value`` (an array of any namespace, or a mapping of them) as NumPy arrays on the
    host: NumPy's as they are, CuPy's copied from the device, others through DLPack."""
    if isinstance(value, Mapping):
        return {name: to_numpy(v) for name, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic, int, float)):
        return np.asarray(value)
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        return value.get()  # CuPy refuses the implicit conversion of np.asarray
    if hasattr(value, "detach"):  # a torch tensor, possibly on a GPU
        return value.detach().cpu().numpy()
    return np.from_dlpack(value)


def _per_entry(function, values: np.ndarray) -> np.ndarray:
    """``function`` (``math.erf``, ``math.erfc``) of every entry, in float64, in
    ``values``' shape. NumPy has neither, and the C library's (within an ulp) is called
    once per entry: through a list of floats, which is twice as fast as
    ``np.frompyfunc`` and its object arrays."""
    values = np.asarray(values, dtype=np.float64)
    return np.fromiter(map(function, values.ravel().tolist()), np.float64,
                       values.size).reshape(values.shape)


def _special(x: Any, name: str) -> Any:
    """The function ``name`` (``erf``, ``erfc``) of every entry of the float64 array
    ``x``, in ``x``'s namespace: the C library's for NumPy, ``cupyx.scipy.special``'s
    for CuPy, the tensor's own method for torch; elsewhere computed on the host and
    moved back."""
    xp = namespace(x)
    if xp is np:
        return _per_entry(getattr(math, name), x)
    module = type(x).__module__
    if module.startswith("cupy"):
        import cupyx.scipy.special

        return getattr(cupyx.scipy.special, name)(x)
    if module.startswith("torch"):
        return getattr(x, name)()  # the tensor's own method: the reference never imports torch
    return xp.asarray(_per_entry(getattr(math, name), np.from_dlpack(x)))


def erf(x: Any) -> Any:
    """The error function ``erf(x) = 2/sqrt(pi) int_0^x e^(-t^2) dt`` of every entry of
    the float64 array ``x``, in ``x``'s namespace (see :func:`_special`)."""
    return _special(x, "erf")


def erfc(x: Any) -> Any:
    """The complementary error function ``erfc(x) = 1 - erf(x)``, computed as itself:
    accurate to an ulp where ``erf(x)`` is within rounding of 1 (``erfc(9) = 4e-37``,
    where ``1 - erf(9)`` is 0)."""
    return _special(x, "erfc")
