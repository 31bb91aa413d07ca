"""``gradparity diff OLD.json NEW.json``: what changed between two runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradparity.cli.common import usage_error
from gradparity.report.diff import compare_runs, render_diff
from gradparity.report.files import write_report
from gradparity.report.results import load_results

DIFF_EXAMPLES = """\
examples:
  gradparity diff old/results.json new/results.json
  gradparity diff old/results.json new/results.json --factor 4 --out DIFF.md

exit codes: 0 no case stopped passing; 1 some case stopped passing; 2 bad input.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    diff = commands.add_parser(
        "diff", help="compare two results.json files (numerical drift between runs)",
        epilog=DIFF_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    diff.add_argument("--factor", type=float, default=10.0,
                      help="report checks whose error changed by more than this (default 10)")
    diff.add_argument("--out", type=Path, help="write the Markdown here instead of stdout")


def run(args: argparse.Namespace) -> int:
    try:
        old, new = load_results(args.old), load_results(args.new)
        result = compare_runs(old, new, args.factor)
    except ValueError as error:
        return usage_error("diff", str(error))
    text = render_diff(result, str(args.old), str(args.new))
    if args.out is not None:
        write_report(text, args.out.parent, name=args.out.name)
        print(f"{len(result['stopped_passing'])} cases stopped passing; diff: {args.out}")
    else:
        print(text, end="")
    return 1 if result["stopped_passing"] else 0
