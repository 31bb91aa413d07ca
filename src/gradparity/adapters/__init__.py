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


@functools.cache
def get_adapter(name: str) -> Adapter:
    """The adapter for ``name``; an :class:`UnavailableAdapter` if its framework is missing."""
    if name not in FRAMEWORKS:
        raise ValueError(f"framework: invalid value {name!r}; allowed: {', '.join(FRAMEWORKS)}")
    try:
        module = importlib.import_module(FRAMEWORKS[name])
    except ImportError as error:
        return UnavailableAdapter(name, f"{name} is not installed ({error})")
    except Exception as error:  # a broken install: report it, keep the other frameworks
        return UnavailableAdapter(name, f"{name} failed to import: "
                                  f"{type(error).__name__}: {error}")
    return module.ADAPTER


__all__ = [
    "FRAMEWORKS",
    "Adapter",
    "Availability",
    "PrecisionError",
    "RunResult",
    "UnavailableAdapter",
    "get_adapter",
]
