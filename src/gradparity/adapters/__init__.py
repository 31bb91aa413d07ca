"""Stage 3, the adapters: each framework behind one interface (:mod:`~gradparity.adapters.base`).

The NumPy reference, PyTorch (autograd + ``torch.optim``) and JAX (``jax.grad`` +
optax) each run a case through their own machinery and hand back results in the
reference's layout. :mod:`~gradparity.adapters.conventions` is the catalogue of what
the frameworks define differently and how the adapters align it.

Adapters are imported lazily: a framework that is not installed yields an
:class:`UnavailableAdapter` carrying the reason, and everything else still works.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Iterable, Iterator

from gradparity.adapters.base import (
    Adapter,
    Availability,
    PrecisionError,
    RunResult,
    UnavailableAdapter,
)

FRAMEWORKS: dict[str, str] = {
    "numpy": "gradparity.adapters.numpy_adapter",
    "torch": "gradparity.adapters.torch_adapter",
    "jax": "gradparity.adapters.jax_adapter",
}
"""The registry of frameworks, in report order; the reference comes first."""


DEVICES: dict[str, str] = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}
"""Where the framework adapters compute (``gpu`` is another name for ``cuda``). On
``cuda`` the float64 oracle and the tolerance model's trajectories of a dense MLP compute
with CuPy where it can (:func:`gradparity.harness.oracle.oracle_namespace`); the NumPy
reference's own run, the finite differences and the comparisons run on the CPU."""


def check_device(device: str) -> str:
    """The canonical device name, or ``ValueError`` naming the allowed values."""
    if not isinstance(device, str) or device not in DEVICES:
        raise ValueError(f"device: invalid value {device!r}; allowed: {', '.join(DEVICES)}")
    return DEVICES[device]


@functools.cache
def get_adapter(name: str, device: str = "cpu") -> Adapter:
    """The adapter for ``name`` computing on ``device``; an :class:`UnavailableAdapter`
    if its framework is missing."""
    if name not in FRAMEWORKS:
        raise ValueError(f"framework: invalid value {name!r}; allowed: {', '.join(FRAMEWORKS)}")
    device = check_device(device)
    try:
        module = importlib.import_module(FRAMEWORKS[name])
    except ImportError as error:
        return UnavailableAdapter(name, f"{name} is not installed ({error})")
    except Exception as error:  # a broken install: report it, keep the other frameworks
        return UnavailableAdapter(name, f"{name} failed to import: "
                                  f"{type(error).__name__}: {error}")
    return module.ADAPTER if device == "cpu" else module.ADAPTER.on_device(device)


def check_frameworks_on_device(frameworks, device: str) -> None:
    """``ValueError`` unless some framework other than the CPU-only reference can run
    on ``device`` (each one that cannot is named, with its reason)."""
    if check_device(device) == "cpu":
        return
    reasons = {name: get_adapter(name, device).availability() for name in frameworks
               if name != "numpy"}
    if not any(a.available for a in reasons.values()):
        why = "; ".join(f"{name}: {a.reason}" for name, a in reasons.items()) or (
            "only the NumPy reference was requested, and it runs on the CPU")
        raise ValueError(f"--device {device}: no framework can run there ({why})")


@contextlib.contextmanager
def one_torch_thread(frameworks: Iterable[str] = ("torch",)) -> Iterator[None]:
    """torch computes with one intra-op thread inside the block (where ``frameworks``
    names torch and it is installed); its thread count is restored after.

    torch splits a reduction (a convolution's weight gradient, a norm's statistics)
    over its intra-op threads, and a sum taken in another order differs in its last
    bits. Worker processes run one thread per core, so without this a case run in this
    process and the same case run by a worker would not write the same numbers: with it,
    outputs do not depend on ``--workers``. Setting the count costs microseconds."""
    torch = None
    if "torch" in frameworks and get_adapter("torch").availability().available:
        torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else 1
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


__all__ = [
    "DEVICES",
    "FRAMEWORKS",
    "Adapter",
    "Availability",
    "PrecisionError",
    "RunResult",
    "UnavailableAdapter",
    "check_device",
    "check_frameworks_on_device",
    "get_adapter",
    "one_torch_thread",
]
