"""``gradparity check``: verify your own backprop against the reference, both frameworks and
finite differences: whole networks through ``gradients``/``step``, or layer objects one at
a time through ``forward``/``backward`` (``--layer``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradparity.adapters import FRAMEWORKS
from gradparity.check.plugin import PluginError, UserCodeError, load_plugin
from gradparity.check.shrink import shrink, write_reproduction
from gradparity.check.summary import failure_details, verdict_line
from gradparity.check.verifier import CaseCheck, Verifier
from gradparity.cli.check_cases import selected_cases
from gradparity.cli.check_layers import add_layer_arguments, run_layers
from gradparity.cli.common import usage_error
from gradparity.harness.runner import FINITE_DIFFERENCES, validate_frameworks
from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.report.check_report import render_check
from gradparity.report.files import write_report
from gradparity.spec.case import DTYPES

CHECK_EXAMPLES = """\
the contracts:
  def gradients(params, x, y, case) -> (loss, grads)       # required
  def step(params, grads, state, case) -> (params, state)  # optional; state is None at first
  def supports(case) -> bool                               # optional; asked first
  layer = Layer(params, settings); layer.forward(x); layer.backward(dy) -> dx  (--layer)

examples:
  gradparity check my_mlp.py:gradients
  gradparity check my_mlp.py:gradients --layers 784,100,10 --activation relu \\
      --loss softmax_cross_entropy --data mnist_batch.npz
  gradparity check my_mlp.py:gradients --config cases.toml --case '*float64*'
  gradparity check my_mlp.py:gradients --case '*xor*' --report check.md --shrink repro/
  gradparity check mylayers.py:Dense --layer dense --set features=10 --input-shape 784
  gradparity check gradparity.check.textbook:gradients          # the reference itself passes
  gradparity check gradparity.check.mutants:mse_missing_mean     # a known bug, diagnosed

exit codes: 0 every checked case agrees; 1 a disagreement (or nothing checked);
2 usage error or a plug-in that cannot be loaded.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "check", help="check your own gradients()/step() (or layer objects) against numpy, "
        "torch, jax and finite differences", epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("plugin", help="path/to/file.py:gradients or package.module:gradients "
                       "(with --layer: the layer's class or factory)")
    check.add_argument("--step", help="the update function (default: 'step' beside gradients)")
    check.add_argument("--no-step", action="store_true", help="check gradients only")
    which = check.add_argument_group("which cases (default: the built-in check matrix)")
    which.add_argument("--case", help="an exact case id or a glob ('*tanh_mse*'); "
                       "`gradparity list --cases` lists them")
    which.add_argument("--config", type=Path, help="the cases of a TOML case file")
    which.add_argument("--layers", help="build the network instead, e.g. 784,100,10 (with the "
                       "flags below; both dtypes unless --dtype)")
    which.add_argument("--activation", help=f"hidden activation: {', '.join(ACTIVATIONS)}")
    which.add_argument("--output-activation", help="the output layer's activation")
    which.add_argument("--loss", help=f"one of {', '.join(LOSSES)}")
    which.add_argument("--dtype", help=f"one of {', '.join(DTYPES)}")
    which.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZERS)}")
    which.add_argument("--lr", type=float, help="the learning rate (with --layers; default 0.1)")
    which.add_argument("--hp", action="append", metavar="NAME=VALUE",
                       help="an optimizer hyperparameter, e.g. momentum=0.9 (repeatable)")
    which.add_argument("--option", action="append", metavar="NAME=VALUE",
                       help="a case option, e.g. bias=false (repeatable)")
    which.add_argument("--batch-size", type=int, help="rows per batch (with --data: its rows)")
    which.add_argument("--steps", type=int, help="optimizer steps (default 10)")
    which.add_argument("--data", type=Path, help="your own x, y (and optionally W1, b1, ...) "
                       "in an .npz file: the tolerance model and the oracles use them too")
    which.add_argument("--seeds", type=int, default=1, help="run every case with seeds 0..N-1")
    add_layer_arguments(check)
    check.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                       help="baselines besides finite differences (default: all)")
    check.add_argument("--report", type=Path, help="also write a Markdown report here")
    check.add_argument("--shrink", type=Path, metavar="DIR",
                       help="shrink each failing case and write a reproduction into DIR")
    check.add_argument("--quiet", action="store_true", help="print only the verdict")


def run(args: argparse.Namespace) -> int:
    if args.layer is not None:
        return run_layers(args)
    try:
        frameworks = validate_frameworks([f for f in args.frameworks.split(",") if f])
        if args.seeds < 1:
            raise ValueError(f"--seeds: invalid value {args.seeds}; allowed: an integer >= 1")
        cases, problems = selected_cases(args)
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
              + f" on {len(cases)} cases against {', '.join(baselines)}"
              + (f" on the data in {args.data}" if args.data else ""), flush=True)

    def progress(check: CaseCheck) -> None:
        if not args.quiet:
            print(f"  {check.status:14} {check.case.id}", flush=True)
            for finding in check.findings if check.status == "pass" else ():
                print(f"    note: {finding}", flush=True)

    report = verifier.verify(plugin, cases, progress=progress, problems=problems)
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
            if check.case in problems:
                print(f"not shrunk: {check.case.id} runs on your data (--data)")
                continue
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
