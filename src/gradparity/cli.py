"""The ``gradparity`` command line.

Exit codes: 0 every check agrees, 1 a disagreement was found, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gradparity import cli_check
from gradparity.adapters import FRAMEWORKS, PrecisionError, get_adapter
from gradparity.case import DTYPES
from gradparity.data import DATASETS
from gradparity.matrix import default_cases, xor_case
from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.report import render, write_report
from gradparity.runner import CaseOutcome, run_case, sweep_seeds, validate_frameworks

EXAMPLES = """\
examples:
  gradparity run                         # default matrix -> reports/REPORT.md
  gradparity run --out /tmp/parity      # -> /tmp/parity/REPORT.md
  gradparity run --frameworks numpy,torch
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
    commands = parser.add_subparsers(dest="command", metavar="{run,list,check,mutants}")
    run = commands.add_parser(
        "run", help="run the built-in matrix and write REPORT.md",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--out", type=Path, default=Path("reports"),
                     help="directory for REPORT.md (default: reports)")
    run.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                     help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    run.add_argument("--quiet", action="store_true", help="print only the verdict")
    run.add_argument("--seeds", type=int, default=0, metavar="K",
                     help="also run every case over seeds 0..K-1 and report the distribution "
                     "of observed/allowed and the failure rate (default: no sweep)")
    commands.add_parser("list", help="list registered components and framework availability")
    cli_check.add_parsers(commands)
    return parser


def _list() -> int:
    print("activations: " + ", ".join(ACTIVATIONS))
    print("losses:      " + ", ".join(LOSSES))
    print("optimizers:  " + ", ".join(OPTIMIZERS))
    print("datasets:    " + ", ".join(DATASETS))
    print("dtypes:      " + ", ".join(DTYPES))
    print("frameworks:")
    for name in FRAMEWORKS:
        availability = get_adapter(name).availability()
        state = availability.version if availability.available else (
            f"unavailable ({availability.reason})"
        )
        print(f"  {name:6} {state}")
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        frameworks = validate_frameworks([f.strip() for f in args.frameworks.split(",") if f])
    except ValueError as error:
        print(f"gradparity run: {error}", file=sys.stderr)
        return 2
    if not frameworks:
        print("gradparity run: --frameworks: no framework given", file=sys.stderr)
        return 2
    if args.seeds < 0:
        print(f"gradparity run: --seeds: invalid value {args.seeds}; allowed: an integer >= 0",
              file=sys.stderr)
        return 2
    cases = default_cases()
    xor_cases = [xor_case("float64"), xor_case("float32")]
    outcomes: list[CaseOutcome] = []
    started = time.perf_counter()
    total = len(cases) + len(xor_cases)
    for index, case in enumerate([*cases, *xor_cases], start=1):
        try:
            outcome = run_case(case, frameworks)
        except PrecisionError as error:
            print(f"gradparity run: {error}", file=sys.stderr)
            return 1
        outcomes.append(outcome)
        if not args.quiet:
            status = "ok  " if outcome.passed else "FAIL"
            print(f"[{index:3}/{total}] {status} {case.id}", flush=True)
    sweeps = []
    if args.seeds > 0:
        for index, case in enumerate(cases, start=1):
            ratios, failures = sweep_seeds(case, args.seeds, frameworks)
            sweeps.append((case.id, ratios, failures))
            if not args.quiet:
                print(f"[sweep {index:3}/{len(cases)}] {failures}/{args.seeds} failed "
                      f"{case.id}", flush=True)
    command = "gradparity run" + ("" if args.out == Path("reports") else f" --out {args.out}")
    if frameworks != tuple(FRAMEWORKS):
        command += f" --frameworks {','.join(frameworks)}"
    if args.seeds:
        command += f" --seeds {args.seeds}"
    text = render(outcomes[: len(cases)], outcomes[len(cases):], frameworks, command, sweeps)
    path = write_report(text, args.out)
    failed = [o.case.id for o in outcomes if not o.passed]
    verdict = f"{len(failed)} of {total} cases DISAGREE" if failed else f"all {total} cases agree"
    print(f"{verdict}; report: {path} ({time.perf_counter() - started:.1f} s)")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradparity`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
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
