"""One entry of the conventions catalogue (:mod:`gradparity.adapters.conventions`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Convention:
    """Where PyTorch and JAX/Flax/optax define one thing differently: each side's value,
    the reference's, what it changes and how gradparity aligns the two (or why not)."""

    name: str
    torch: str
    jax: str
    reference: str
    effect: str
    alignment: str
