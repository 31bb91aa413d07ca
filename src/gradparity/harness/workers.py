"""Running cases in workers, results merged in the original order.

Every case is independent (its own weights, data and framework sessions), so
``gradparity run --workers N`` hands cases to N workers (local processes or a Dask
cluster, :mod:`gradparity.harness.executors`) and collects the outcomes in case order:
the report and results files do not depend on N or on the executor (tested). Each
worker pays the framework imports and its own JAX compilations once (or reads them
from the persistent compilation cache, :mod:`gradparity.adapters.compile_cache`).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gradparity.adapters import FRAMEWORKS, get_adapter
from gradparity.harness.executors import check_workers, ordered_map
from gradparity.harness.memory import freeze_survivors
from gradparity.harness.outcome import CaseOutcome, CaseTimeout
from gradparity.harness.porting import PortingRow, port
from gradparity.harness.runner import run_case, short_traceback
from gradparity.spec.case import Case
from gradparity.spec.case_files import load_cases


def run_isolated(case: Case, frameworks: Sequence[str] = tuple(FRAMEWORKS), *,
                 time_limit: float | None = None, **options) -> CaseOutcome:
    """:func:`run_case`, but an exception or a case running past ``time_limit`` seconds
    becomes an error of this case (``errors["case"]``) instead of ending the run.

    The time limit uses ``SIGALRM``, so it applies only in the main thread of a
    POSIX process; elsewhere the case runs without one.
    """
    use_alarm = (time_limit is not None and hasattr(signal, "setitimer")
                 and threading.current_thread() is threading.main_thread())

    def expire(signum, frame):
        raise CaseTimeout(f"case {case.id} exceeded the per-case time limit of "
                          f"{time_limit:g} s")

    previous = signal.signal(signal.SIGALRM, expire) if use_alarm else None
    if use_alarm:
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        return run_case(case, frameworks, **options)
    except Exception as error:  # CaseTimeout included
        message = str(error) if isinstance(error, CaseTimeout) else short_traceback(error)
        return CaseOutcome(case, {}, errors={"case": message})
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def sweep_seeds(case: Case, seeds: int, frameworks: Sequence[str] = tuple(FRAMEWORKS),
                device: str = "cpu"):
    """Run ``case`` over seeds ``0..seeds-1``: the largest observed/allowed per run."""
    outcomes = [run_case(replace(case, seed=seed), frameworks, explain=False, device=device)
                for seed in range(seeds)]
    ratios = np.array([max((d.headroom for d in o.checks), default=0.0) for o in outcomes])
    failures = sum(not o.passed for o in outcomes)
    return ratios, failures


def run_outcome(arguments: tuple) -> Any:
    """Worker entry point: one isolated case (:func:`run_isolated`), as much of its
    outcome as a report reads (:meth:`~gradparity.harness.outcome.CaseOutcome.for_report`),
    in this process and in a worker alike. The garbage of the cases before is collected
    and what survives is frozen first (:func:`~gradparity.harness.memory.freeze_survivors`)."""
    case, frameworks, time_limit, tolerances, device = arguments
    for name in frameworks:  # imported first: their objects are the bulk of what is frozen
        if name in FRAMEWORKS:
            get_adapter(name)
    freeze_survivors()
    return run_isolated(case, frameworks, time_limit=time_limit, tolerances=tolerances,
                        device=device).for_report()


def sweep_outcome(arguments: tuple) -> Any:
    """Worker entry point: one case over seeds (:func:`sweep_seeds`)."""
    case, seeds, frameworks, *device = arguments
    return sweep_seeds(case, seeds, frameworks, *device)


def porting_row(case: Case) -> PortingRow | None:
    """Worker entry point: one row of the library-defaults porting table
    (``porting.port``), or None where torch or JAX is not installed."""
    if not all(get_adapter(name).availability().available for name in ("torch", "jax")):
        return None
    return port(case)


def _run_item(item: tuple[str, Any]) -> Any:
    kind, arguments = item
    return run_outcome(arguments) if kind == "case" else porting_row(arguments)


def run_cases(cases: Iterable, frameworks: Sequence[str], *, workers: int = 1,
              time_limit: float | None = None, tolerances: str = "full",
              device: str = "cpu", executor: str = "local",
              scheduler: str | None = None, porting: Sequence[Case] = (),
              started: Callable[[], object] | None = None) -> Iterator:
    """Every case's outcome for its report (:func:`run_outcome`), in case order, over
    ``workers`` workers of ``executor`` (``started``: see
    :func:`gradparity.harness.executors.ordered_map`; ``tolerances``, ``device``: see
    :func:`gradparity.harness.runner.run_case`); then, for each of ``porting``, its row
    of the porting table (:func:`porting_row`). The porting cases go to the same workers
    after the cases, so that no core waits while one process computes them alone."""
    items = [("case", (case, tuple(frameworks), time_limit, tolerances, device))
             for case in cases]
    items += [("porting", case) for case in porting]
    return ordered_map(_run_item, items, workers, executor, scheduler, started)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gradparity.harness.workers CASES.toml [N]``: time the case runs with one worker
    and with N (default 2), and print the speed-up (report writing not included)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        print("usage: python -m gradparity.harness.workers CASES.toml [WORKERS]", file=sys.stderr)
        return 2
    cases = load_cases(args[0])
    workers = check_workers(int(args[1]) if len(args) > 1 else 2)
    seconds = {}
    for count in (1, workers):
        started = time.perf_counter()
        outcomes = list(run_cases(cases, tuple(FRAMEWORKS), workers=count))
        seconds[count] = time.perf_counter() - started
        print(f"{count} worker(s): {len(outcomes)} cases in {seconds[count]:.1f} s")
    print(f"speed-up with {workers} workers: {seconds[1] / seconds[workers]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
