"""The ``gradparity`` command line.

Exit codes: 0 every check agrees, 1 a disagreement was found, 2 usage or input error
(``diff``: 1 when a case stopped passing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gradparity import cli_check, cli_run
from gradparity.adapters import FRAMEWORKS, get_adapter
from gradparity.case import DTYPES
from gradparity.data import DATASETS
from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS

EXAMPLES = """\
examples:
  gradparity run                         # default matrix -> reports/REPORT.md (+ JSON, CSV, PNG)
  gradparity run --out /tmp/parity      # -> /tmp/parity/REPORT.md
  gradparity run --config examples/cases.toml --frameworks numpy,torch
  gradparity diff old/results.json new/results.json
  gradparity list                        # registered activations, losses, frameworks
  gradparity check my_mlp.py:gradients   # check your own backprop (see check --help)
  gradparity mutants                     # the mutation catalogue's kill matrix
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradparity",
        description="Check textbook NumPy backprop against PyTorch autograd and JAX grad.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command",
                                     metavar="{run,list,check,diff,mutants}")
    cli_run.add_parsers(commands)
    commands.add_parser("list", help="list registered components and framework availability")
    cli_check.add_parsers(commands)
    return parser


def _list() -> int:
    print("activations: " + ", ".join(ACTIVATIONS))
    print("losses:      " + ", ".join(LOSSES))
    print("optimizers:  " + ", ".join(OPTIMIZERS))
    print("datasets:    " + ", ".join(DATASETS))
    print("dtypes:      " + ", ".join(DTYPES))
    from gradparity.conventions import CONVENTIONS

    print("conventions: " + ", ".join(c.name for c in CONVENTIONS))
    from gradparity.options import OPTIONS

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradparity`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cli_run.run(args)
    if args.command == "diff":
        return cli_run.diff(args)
    if args.command == "list":
        return _list()
    if args.command == "check":
        return cli_check.run_check(args)
    if args.command == "mutants":
        return cli_check.run_mutants(args)
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
