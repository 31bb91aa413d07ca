"""The ``gradparity`` command line.

Exit codes: 0 every check agrees, 1 a disagreement was found, 2 usage or input error
(``diff``: 1 when a case stopped passing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gradparity.cli import cache, check, diff, figures, listing, mutants, run
from gradparity.harness.memory import no_collection_at_exit, reuse_freed_memory

COMMANDS = {"run": run, "diff": diff, "list": listing, "check": check, "mutants": mutants,
            "figures": figures, "cache": cache}
"""Every command and the module that implements it (``add_parser`` and ``run``), in the
order ``gradparity --help`` lists them."""

EXAMPLES = """\
examples:
  gradparity run                         # default matrix -> reports/REPORT.md (+ JSON, CSV, PNG)
  gradparity run --out /tmp/parity      # -> /tmp/parity/REPORT.md
  gradparity run --config examples/cases.toml --frameworks numpy,torch
  gradparity diff old/results.json new/results.json
  gradparity list                        # registered activations, losses, frameworks
  gradparity check my_mlp.py:gradients   # check your own backprop (see check --help)
  gradparity mutants                     # the mutation catalogue's kill matrix
  gradparity figures --check             # are the docs' figures up to date?
  gradparity cache --clear               # empty JAX's persistent compilation cache
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradparity",
        description="Check textbook NumPy backprop against PyTorch autograd and JAX grad.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command",
                                     metavar="{" + ",".join(COMMANDS) + "}")
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradparity`` console script."""
    args = _parser().parse_args(argv)
    reuse_freed_memory()  # large temporaries without a page fault per page
    no_collection_at_exit()
    if args.command in COMMANDS:
        try:
            return COMMANDS[args.command].run(args)
        except BrokenPipeError:  # the output was piped into head: nothing left to say
            sys.stderr.close()
            return 0
    _parser().print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
