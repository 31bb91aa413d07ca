"""Running cases in worker processes, results merged in the original order.

Every case is independent (its own weights, data and framework sessions), so
``gradparity run --workers N`` hands cases to N processes and collects the
outcomes in case order: the report and results files do not depend on N
(tested). Workers are *spawned*, not forked: a forked JAX or PyTorch runtime
with live threads is not safe. Each worker pays the framework imports and its
own JAX compilations once.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from gradparity.adapters import FRAMEWORKS
from gradparity.harness.runner import run_isolated, sweep_seeds
from gradparity.spec.case_files import load_cases

T = TypeVar("T")
R = TypeVar("R")


def available_workers() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def check_workers(value: Any) -> int:
    """A worker count, or ``ValueError`` naming the flag and what is allowed."""
    limit = 4 * available_workers()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"--workers: invalid value {value!r}; allowed: an integer in "
                         f"[1, {limit}] (this machine has {available_workers()} cores)")
    return value


def ordered_map(function: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``map(function, items)`` over ``workers`` processes, yielding in item order.

    ``function`` must be a module-level function (it is sent to the workers by
    reference). With one worker nothing is spawned.
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(function, items)
        return
    context = multiprocessing.get_context("spawn")
    # a few chunks per worker: large enough to amortise the transfer, small enough
    # that one slow chunk does not leave the other workers idle
    chunksize = max(1, len(items) // (4 * workers))
    saved = {name: os.environ.get(name) for name in SINGLE_THREADED}
    os.environ.update(SINGLE_THREADED)  # read by the spawned interpreters at start-up
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                 initializer=_one_thread_each) as pool:
            yield from pool.map(function, items, chunksize=chunksize)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# N workers on N cores: one thread each, or BLAS, torch and XLA thread pools fight over
# the cores (measured: two workers were slower than one before this)
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1"}


def _one_thread_each() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def run_outcome(arguments: tuple) -> Any:
    """Worker entry point: one isolated case (``runner.run_isolated``)."""
    case, frameworks, time_limit, tolerances, device = arguments
    return run_isolated(case, frameworks, time_limit=time_limit, tolerances=tolerances,
                        device=device)


def sweep_outcome(arguments: tuple) -> Any:
    """Worker entry point: one case over seeds (``runner.sweep_seeds``)."""
    case, seeds, frameworks, *device = arguments
    return sweep_seeds(case, seeds, frameworks, *device)


def run_cases(cases: Iterable, frameworks: Sequence[str], *, workers: int = 1,
              time_limit: float | None = None, tolerances: str = "full",
              device: str = "cpu") -> Iterator:
    """Every case's outcome, in case order, over ``workers`` processes (``tolerances``,
    ``device``: see :func:`gradparity.harness.runner.run_case`)."""
    items = [(case, tuple(frameworks), time_limit, tolerances, device) for case in cases]
    return ordered_map(run_outcome, items, workers)


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
