"""Framework adapters behind one interface (see :mod:`gradparity.adapters.base`).

Adapters are imported lazily: a framework that is not installed yields an
:class:`UnavailableAdapter` carrying the reason, and everything else still works.
"""

from __future__ import annotations

import functools
import importlib

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
"""Where the framework adapters compute (``gpu`` is another name for ``cuda``). The
NumPy reference, the oracles and the tolerance model always run on the CPU."""


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


__all__ = [
    "DEVICES",
    "FRAMEWORKS",
    "Adapter",
    "Availability",
    "PrecisionError",
    "RunResult",
    "UnavailableAdapter",
    "check_device",
    "get_adapter",
]
