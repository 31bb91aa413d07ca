"""``gradparity check``: verify your own backprop against the reference, both frameworks and
finite differences."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradparity.adapters import FRAMEWORKS
from gradparity.check.plugin import PluginError, UserCodeError, load_plugin
from gradparity.check.shrink import shrink, write_reproduction
from gradparity.check.summary import failure_details, verdict_line
from gradparity.check.verifier import CaseCheck, Verifier
from gradparity.cli.common import usage_error
from gradparity.harness.runner import FINITE_DIFFERENCES, validate_frameworks
from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.report.check_report import render_check
from gradparity.report.files import write_report
from gradparity.spec.case import DTYPES, Case
from gradparity.spec.matrix import select_cases

CHECK_EXAMPLES = """\
the contract:
  def gradients(params, x, y, case) -> (loss, grads)       # required
  def step(params, grads, state, case) -> (params, state)  # optional; state is None at first

examples:
  gradparity check my_mlp.py:gradients
  gradparity check mypackage.backprop:gradients --loss mse --dtype float64
  gradparity check my_mlp.py:gradients --case xor --report check.md --shrink repro/
  gradparity check gradparity.check.textbook:gradients          # the reference itself passes
  gradparity check gradparity.check.mutants:mse_missing_mean     # a known bug, diagnosed

exit codes: 0 every checked case agrees; 1 a disagreement (or nothing checked);
2 usage error or a plug-in that cannot be loaded.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "check", help="check your own gradients()/step() against numpy, torch, jax and "
        "finite differences", epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("plugin", help="path/to/file.py:gradients or package.module:gradients")
    check.add_argument("--step", help="the update function (default: 'step' beside gradients)")
    check.add_argument("--no-step", action="store_true", help="check gradients only")
    check.add_argument("--activation", help=f"hidden activation: {', '.join(ACTIVATIONS)}")
    check.add_argument("--loss", help=f"one of {', '.join(LOSSES)}")
    check.add_argument("--dtype", help=f"one of {', '.join(DTYPES)}")
    check.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZERS)}")
    check.add_argument("--case", help="only cases whose id contains this text")
    check.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                       help="baselines besides finite differences (default: all)")
    check.add_argument("--seeds", type=int, default=1, help="run every case with seeds 0..N-1")
    check.add_argument("--report", type=Path, help="also write a Markdown report here")
    check.add_argument("--shrink", type=Path, metavar="DIR",
                       help="shrink each failing case and write a reproduction into DIR")
    check.add_argument("--quiet", action="store_true", help="print only the verdict")


def _selected_cases(args: argparse.Namespace) -> list[Case]:
    try:
        return select_cases(activation=args.activation, loss=args.loss, dtype=args.dtype,
                            optimizer=args.optimizer, case=args.case, seeds=args.seeds)
    except ValueError as error:
        raise ValueError(f"--{error}") from None


def run(args: argparse.Namespace) -> int:
    try:
        frameworks = validate_frameworks([f for f in args.frameworks.split(",") if f])
        cases = _selected_cases(args)
        plugin = load_plugin(args.plugin, args.step, find_step=not args.no_step)
    except (ValueError, PluginError) as error:
        return usage_error("check", str(error))
    except UserCodeError as error:
        print(f"gradparity check: {error}\n{error.details}", file=sys.stderr)
        return 2
    verifier = Verifier(frameworks=frameworks)
    baselines = [*dict.fromkeys(("numpy", *frameworks)), FINITE_DIFFERENCES]
    if not args.quiet:
        print(f"checking {plugin.name}" + (" with its step()" if plugin.step else "")
              + f" on {len(cases)} cases against {', '.join(baselines)}", flush=True)

    def progress(check: CaseCheck) -> None:
        if not args.quiet:
            print(f"  {check.status:14} {check.case.id}", flush=True)

    report = verifier.verify(plugin, cases, progress=progress)
    failures = report.failures()
    if not args.quiet:
        shown = failures[:5]
        for check in shown:
            print("\n".join(failure_details(check)))
        if len(failures) > len(shown):
            print(f"... and {len(failures) - len(shown)} more failing cases "
                  "(--report writes them all)")
    if args.shrink is not None and failures:
        for check in failures[:5]:
            smallest = shrink(plugin, check.case)
            _, script = write_reproduction(plugin, smallest, args.shrink)
            print(f"shrunk {check.case.id} -> {smallest.id}; reproduce: python {script}")
    if args.report is not None:
        command = "gradparity check " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["check"] \
            else f"gradparity check {args.plugin}"
        text = render_check(report, baselines, command)
        write_report(text, args.report.parent, name=args.report.name)
    print(verdict_line(report))
    return report.exit_code
