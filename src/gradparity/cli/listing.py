"""``gradparity list``: the registries (activations, losses, optimizers, data sets, options,
conventions) and which frameworks are available."""

from __future__ import annotations

import argparse

from gradparity.adapters import FRAMEWORKS, get_adapter
from gradparity.adapters.conventions import CONVENTIONS
from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.spec.case import DTYPES
from gradparity.spec.datasets import DATASETS
from gradparity.spec.options import OPTIONS


def add_parser(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("list", help="list registered components and framework availability")


def run(args: argparse.Namespace) -> int:
    print("activations: " + ", ".join(ACTIVATIONS))
    print("losses:      " + ", ".join(LOSSES))
    print("optimizers:  " + ", ".join(OPTIMIZERS))
    print("datasets:    " + ", ".join(DATASETS))
    print("dtypes:      " + ", ".join(DTYPES))
    print("conventions: " + ", ".join(c.name for c in CONVENTIONS))
    print("options:")
    for option in OPTIONS.values():
        print(f"  {option.name:18} default {option.default!r:11} {option.allowed}")
    print("frameworks:")
    for name in FRAMEWORKS:
        availability = get_adapter(name).availability()
        state = availability.version if availability.available else (
            f"unavailable ({availability.reason})"
        )
        print(f"  {name:6} {state}")
    return 0
