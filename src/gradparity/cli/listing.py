"""``gradparity list``: the registries (activations, losses, layers, architectures,
optimizers, data sets, options, conventions) and which frameworks are available."""

from __future__ import annotations

import argparse

from gradparity.adapters import FRAMEWORKS, get_adapter
from gradparity.adapters.conventions import CONVENTIONS
from gradparity.cli.common import usage_error
from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.reference.layers import LAYERS
from gradparity.spec.architectures import ARCHITECTURES
from gradparity.spec.case import DTYPES
from gradparity.spec.datasets import DATASETS
from gradparity.spec.matrix import check_cases, filter_cases
from gradparity.spec.options import OPTIONS


def add_parser(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser(
        "list", help="list registered components and framework availability (--cases: the "
        "case ids)")
    listing.add_argument("--cases", action="store_true",
                         help="print the ids of the default check matrix (filters below)")
    listing.add_argument("--activation", help="only cases with this hidden activation")
    listing.add_argument("--loss", help="only cases with this loss")
    listing.add_argument("--dtype", help="only cases in this dtype")
    listing.add_argument("--optimizer", help="only cases with this optimizer")
    listing.add_argument("--case", help="an exact id or a glob, e.g. '*tanh*'")


def _cases(args: argparse.Namespace) -> int:
    try:
        cases = filter_cases(check_cases(), activation=args.activation, loss=args.loss,
                             dtype=args.dtype, optimizer=args.optimizer, case=args.case)
    except ValueError as error:
        return usage_error("list", f"--{error}")
    for case in cases:
        print(case.id)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.cases:
        return _cases(args)
    print("activations: " + ", ".join(ACTIVATIONS))
    print("losses:      " + ", ".join(LOSSES))
    print("layers:      " + ", ".join(LAYERS))
    print("architectures (for cases: architecture = NAME):")
    for name, (_, shape, description) in ARCHITECTURES.items():
        print(f"  {name:12} input {'x'.join(map(str, shape)):7} {description}")
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
