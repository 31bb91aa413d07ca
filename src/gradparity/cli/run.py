"""``gradparity run``: the matrix (or a case file), its report and results files."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gradparity.adapters import (
    DEVICES,
    FRAMEWORKS,
    PrecisionError,
    check_frameworks_on_device,
    compile_cache,
)
from gradparity.cli.common import usage_error
from gradparity.compare.tolerances import TOLERANCE_MODES
from gradparity.harness.audit import import_in_background
from gradparity.harness.executors import (
    AUTO,
    CASES_PER_AUTO_WORKER,
    EXECUTORS,
    check_executor,
    check_workers,
    ordered_map,
    resolve_workers,
)
from gradparity.harness.porting import PortingRow, porting_cases
from gradparity.harness.runner import CaseOutcome, validate_frameworks
from gradparity.harness.workers import run_cases, sweep_outcome
from gradparity.report.outputs import write_outputs
from gradparity.report.records import CaseRecord, case_record
from gradparity.spec.case_files import ConfigError, load_cases
from gradparity.spec.matrix import default_cases, filter_cases, xor_case

RUN_EXAMPLES = """\
examples:
  gradparity run                          # default matrix -> reports/REPORT.md, results.json,
                                          #   checks.csv and PNG plots
  gradparity run --out /tmp/parity --frameworks numpy,torch --filter float64
  gradparity run --config examples/cases.toml
  gradparity run --seeds 20               # plus a 20-seed sweep per case
  gradparity run --workers 2              # 2 local worker processes
  gradparity run --executor dask --workers 2   # a 2-worker Dask LocalCluster
  gradparity run --scheduler tcp://host:8786   # an existing Dask cluster

exit codes: 0 every check agrees; 1 a disagreement; 2 usage or input error.
"""

def add_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run", help="run the built-in matrix (or a case file) and write the report",
        epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--out", type=Path, default=Path("reports"),
                     help="directory for REPORT.md, results.json, checks.csv, plots "
                     "(default: reports)")
    run.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                     help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    run.add_argument("--config", type=Path, help="a TOML case file instead of the built-in "
                     "matrix (see examples/cases.toml)")
    run.add_argument("--filter", help="only cases whose id contains this text")
    run.add_argument("--case", metavar="ID", help="only the case with this id, or the ids "
                     "matching this glob ('transformer*'); see gradparity list --cases")
    run.add_argument("--seeds", type=int, default=0, metavar="K",
                     help="also run every case over seeds 0..K-1 and report the distribution "
                     "of observed/allowed and the failure rate (default: no sweep)")
    run.add_argument("--case-timeout", type=float, default=600.0, metavar="SECONDS",
                     help="record a case that runs longer as an error and go on "
                     "(default 600; 0: no limit)")
    run.add_argument("--workers", default=AUTO, metavar="N",
                     help="run cases in N worker processes; results are merged in case "
                     "order, so the outputs do not depend on N. Default auto: one per "
                     f"core, at most one per {CASES_PER_AUTO_WORKER} cases, one with "
                     "--device cuda")
    run.add_argument("--tolerances", choices=TOLERANCE_MODES, default="full",
                     help="full: every check against its derived tolerance; screened: "
                     "against the tolerance model's floors first, deriving the full model "
                     "only for a pair that exceeds one (same verdicts, faster; a check that "
                     "passed its floor reports the floor as its tolerance). Default: full")
    run.add_argument("--device", choices=list(DEVICES), default="cpu",
                     help="where torch and jax compute (gpu is cuda); on cuda the float64 "
                     "oracle and the tolerance model's trajectories of a dense MLP compute "
                     "with CuPy where CuPy sees the GPU; the NumPy reference's run, the "
                     "finite differences and the comparisons stay on the CPU (default: cpu)")
    run.add_argument("--executor", choices=EXECUTORS, default="local",
                     help="local: this process, or --workers processes; dask: a Dask "
                     "LocalCluster of --workers processes, or the cluster at --scheduler "
                     "(needs gradparity[dask]). Results are the same on every executor")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run the cases on the Dask cluster at this address "
                     "(tcp://host:8786; implies --executor dask; its workers need "
                     "gradparity installed)")
    run.add_argument("--compile-cache", type=Path, metavar="DIR",
                     help="JAX's persistent compilation cache (default: "
                     "$GRADPARITY_COMPILE_CACHE or ~/.cache/gradparity/jax; clear it with "
                     "gradparity cache --clear)")
    run.add_argument("--no-compile-cache", action="store_true",
                     help="compile every JAX program afresh")
    run.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    run.add_argument("--quiet", action="store_true", help="print only the verdict")


class _Progress:
    """Progress with tqdm: one bar for the cases, another for the seed sweeps (they are
    counted separately); one line per case where stderr is not a terminal; nothing if
    quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started = time.perf_counter()
        self.bar = None

    def stage(self, what: str, total: int, unit: str = "case") -> None:
        """Start counting ``total`` items of a new stage (``cases``, ``seed sweeps``)."""
        self.close()
        self.what, self.total, self.done = what, total, 0
        if not self.quiet and self.tty and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=what, unit=f" {unit}",
                            file=sys.stderr, dynamic_ncols=True, leave=True)

    def update(self, label: str, ok: bool) -> None:
        self.done += 1
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{'ok' if ok else 'FAIL'} {label[:40]}", refresh=False)
            self.bar.update(1)
        else:
            print(f"[{self.what} {self.done:3}/{self.total}] {'ok  ' if ok else 'FAIL'} "
                  f"{label}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cases(args: argparse.Namespace):
    if args.config is not None:
        cases, xor_cases = load_cases(args.config), []
    else:
        cases, xor_cases = default_cases(), [xor_case("float64"), xor_case("float32")]
    if args.filter:
        cases = [c for c in cases if args.filter in c.id]
        xor_cases = [c for c in xor_cases if args.filter in c.id]
    if args.case:
        everything = filter_cases([*cases, *xor_cases], case=args.case)
        cases = [c for c in cases if c in everything]
        xor_cases = [c for c in xor_cases if c in everything]
    return cases, xor_cases


def run(args: argparse.Namespace) -> int:
    try:
        frameworks = validate_frameworks([f.strip() for f in args.frameworks.split(",") if f])
        if not frameworks:
            raise ValueError("--frameworks: no framework given")
        if args.seeds < 0:
            raise ValueError(f"--seeds: invalid value {args.seeds}; allowed: an integer >= 0")
        check_workers(args.workers)
        executor = check_executor(args.executor, args.scheduler)
        if args.no_compile_cache and args.compile_cache is not None:
            raise ValueError("--compile-cache: not allowed with --no-compile-cache")
        if not args.no_compile_cache:
            compile_cache.enable(args.compile_cache or compile_cache.default_directory())
        if not args.case_timeout >= 0:
            raise ValueError(f"--case-timeout: invalid value {args.case_timeout}; allowed: "
                             "a number of seconds >= 0 (0: no limit)")
        cases, xor_cases = _cases(args)
        check_frameworks_on_device(frameworks, args.device)
        workers = resolve_workers(args.workers, len(cases) + len(xor_cases), args.device)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    except ValueError as error:
        return usage_error("run", str(error))
    if not cases and not xor_cases:
        return usage_error("run", f"--filter: no case id contains {args.filter!r}")
    progress = _Progress(args.quiet)
    progress.stage("cases", len(cases) + len(xor_cases))
    outcomes: list[CaseOutcome] = []
    records: list[CaseRecord] = []
    porting: list[PortingRow] = []
    try:
        for result in run_cases([*cases, *xor_cases], frameworks, workers=workers,
                                time_limit=args.case_timeout or None,
                                tolerances=args.tolerances, device=args.device,
                                executor=executor, scheduler=args.scheduler,
                                porting=porting_cases() if _ports(args, frameworks) else (),
                                started=import_in_background):
            if isinstance(result, CaseOutcome):
                outcomes.append(result)
                # formatted now, while later cases run, not all at the end (docs/speed.md)
                records.append(case_record(result))
                progress.update(result.case.id, result.passed)
            elif result is not None:  # a porting row (None: torch or JAX is missing)
                porting.append(result)
        sweeps = []
        items = ([(case, args.seeds, tuple(frameworks), args.device) for case in cases]
                 if args.seeds else [])
        progress.stage(f"seed sweeps ({args.seeds} seeds each)", len(items), "sweep")
        swept = ordered_map(sweep_outcome, items, workers, executor, args.scheduler)
        for (case, *_), (ratios, failures) in zip(items, swept, strict=True):
            sweeps.append((case.id, ratios, failures))
            progress.update(case.id, failures == 0)
    except PrecisionError as error:
        print(f"gradparity run: {error}", file=sys.stderr)
        return 1
    finally:
        progress.close()
    command = _command(args, frameworks)
    write_outputs(outcomes, len(cases), frameworks, command, sweeps, args.out,
                  plots=not args.no_plots, porting=porting, device=args.device,
                  records=records)
    failed = [o.case.id for o in outcomes if not o.passed]
    failed += [f"porting {row.case.id}" for row in porting if row.verdict.startswith("unexp")]
    total = len(outcomes)
    errors = sum(len(o.errors) for o in outcomes)
    verdict = (f"{len(failed)} of {total} cases DISAGREE" if failed
               else f"all {total} case{'s' if total != 1 else ''} agree")
    if errors:
        verdict += f" ({errors} error{'s' if errors != 1 else ''})"
    if not any(o.compared for o in outcomes):
        verdict = "NOTHING WAS COMPARED"
    print(f"{verdict}; report: {args.out / 'REPORT.md'} "
          f"({time.perf_counter() - progress.started:.1f} s)")
    return 1 if failed else 0


def _ports(args: argparse.Namespace, frameworks) -> bool:
    """Whether the run writes the library-defaults porting table: the default matrix,
    with torch and JAX among the frameworks (the rows say nothing where either is not
    installed)."""
    return (args.config is None and not args.filter and not args.case
            and {"torch", "jax"} <= set(frameworks))


def _command(args: argparse.Namespace, frameworks) -> str:
    command = "gradparity run"
    if args.out != Path("reports"):
        command += f" --out {args.out}"
    if frameworks != tuple(FRAMEWORKS):
        command += f" --frameworks {','.join(frameworks)}"
    if args.config is not None:
        command += f" --config {args.config}"
    if args.filter:
        command += f" --filter {args.filter}"
    if args.case:
        command += f" --case '{args.case}'"
    if args.seeds:
        command += f" --seeds {args.seeds}"
    if args.tolerances != "full":
        command += f" --tolerances {args.tolerances}"
    if args.device != "cpu":
        command += f" --device {args.device}"
    return command
