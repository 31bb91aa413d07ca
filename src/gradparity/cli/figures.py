"""``gradparity figures``: write (or check) the figures the documentation quotes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradparity.cli.common import usage_error
from gradparity.report.figures import GENERATED, stale_example, stale_figures, write_figures

EXAMPLE_RESULTS = Path("docs/example-report/results.json")


def add_parser(commands: argparse._SubParsersAction) -> None:
    figures = commands.add_parser(
        "figures", help="write the docs' generated figures (--check: fail if stale)")
    figures.add_argument("--results", type=Path, default=EXAMPLE_RESULTS,
                         help=f"the example run's results.json (default: {EXAMPLE_RESULTS})")
    figures.add_argument("--out", type=Path, default=GENERATED,
                         help=f"where the snippets go (default: {GENERATED})")
    figures.add_argument("--check", action="store_true",
                         help="write nothing; exit 1 if a snippet differs from what it "
                         "would be")
    figures.add_argument("--against", type=Path, metavar="FRESH_RESULTS",
                         help="with --check: also exit 1 if a fresh run's results.json "
                         "differs in structure from --results (a stale example report)")


def run(args: argparse.Namespace) -> int:
    if not args.results.exists():
        return usage_error("figures", f"--results: {args.results}: file not found; allowed: "
                           "a results.json written by gradparity run")
    if args.against is not None and not args.check:
        return usage_error("figures", "--against: only with --check")
    if not args.check:
        for path in write_figures(args.results, args.out):
            print(f"wrote {path}")
        return 0
    problems = stale_figures(args.results, args.out)
    if args.against is not None:
        problems += stale_example(args.results, args.against)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"figures up to date ({args.out})")
    return 1 if problems else 0
