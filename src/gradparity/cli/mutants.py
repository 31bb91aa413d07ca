"""``gradparity mutants``: run the mutation catalogue, write the kill matrix."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradparity.check.mutants import CATALOGUE
from gradparity.check.verifier import Verifier
from gradparity.report.check_report import render_kill_matrix
from gradparity.report.files import write_report
from gradparity.spec.matrix import check_cases


def add_parser(commands: argparse._SubParsersAction) -> None:
    mutants = commands.add_parser("mutants", help="run the mutation catalogue: kill matrix")
    mutants.add_argument("--report", type=Path, default=Path("reports/MUTANTS.md"),
                         help="where to write the kill matrix (default: reports/MUTANTS.md)")


def run(args: argparse.Namespace) -> int:
    verifier = Verifier()
    cases = check_cases()
    results = []
    for mutant in CATALOGUE:
        report = verifier.verify(mutant.plugin(), cases)
        results.append((mutant, report))
        print(f"{'caught' if report.exit_code == 1 else 'MISSED':7} {mutant.name}", flush=True)
    text = render_kill_matrix(results, "gradparity mutants")
    write_report(text, args.report.parent, name=args.report.name)
    caught = sum(report.exit_code == 1 for _, report in results)
    print(f"detection rate: {caught}/{len(results)}; kill matrix: {args.report}")
    return 0 if caught == len(results) else 1
