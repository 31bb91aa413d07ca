"""Where cases run: this process, local worker processes, or a Dask cluster.

Every executor maps a module-level function over independent items and yields the
results in item order, so a report never depends on where or how widely it ran:

* ``local`` (default): with one worker, this process; with N, a
  ``concurrent.futures.ProcessPoolExecutor`` of N *spawned* processes (a forked JAX or
  PyTorch runtime with live threads is not safe);
* ``dask``: a ``distributed`` cluster, the one at ``scheduler`` (``tcp://host:8786``)
  or a ``LocalCluster`` of N single-threaded worker processes started for the run.

Workers run one BLAS, torch and XLA thread each (``SINGLE_THREADED``): N workers on N
cores otherwise fight over the cores, and it keeps every worker's arithmetic the same
as every other's.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from gradparity.harness.memory import no_collection_at_exit, reuse_freed_memory

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "dask")
"""The values of ``gradparity run --executor``."""

SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "OPENBLAS_NUM_THREADS": "1"}
"""Read by a spawned interpreter at start-up: one BLAS thread per worker."""


QUIET_LOCAL_WORKERS = {"distributed.worker.profile.enabled": False,
                       "distributed.admin.tick.interval": "1s"}
"""Dask settings for the workers of a ``LocalCluster`` started for a run. By default a
Dask worker samples its task's stack every 10 ms (the dashboard's profile) and checks its
event loop every 20 ms; on a machine whose cores all run cases that costs the cases
themselves (520 cases on 2 cores: 44.5 s with them, 40.6 s without). A cluster the user
gives (``--scheduler``) keeps its own settings."""


def available_workers() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


AUTO = "auto"
"""``gradparity run --workers auto`` (the default): see :func:`auto_workers`."""

CASES_PER_AUTO_WORKER = 24
"""``--workers auto`` starts at most one worker per this many cases. A spawned worker
pays its own start-up (Python, NumPy, torch and JAX imported, about 2-3 s on 2 cores)
before its first case, about what 24 of the default matrix's cases cost: a run of fewer
cases is done sooner in this process."""


def auto_workers(cases: int, device: str = "cpu") -> int:
    """The worker count of ``--workers auto``: one per core this process may use, at most
    one per :data:`CASES_PER_AUTO_WORKER` cases, and one where torch and JAX compute on a
    GPU (every process would hold its own CUDA context, and JAX reserves most of the
    GPU's memory for the first process by default)."""
    if device != "cpu":
        return 1
    return max(1, min(available_workers(), cases // CASES_PER_AUTO_WORKER))


def check_workers(value: Any) -> int | str:
    """A worker count or ``"auto"``, or ``ValueError`` naming the flag and what is
    allowed; the command line's text is read as a number here."""
    limit = 4 * available_workers()
    if value == AUTO:
        return AUTO
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"--workers: invalid value {value!r}; allowed: {AUTO} or an integer "
                         f"in [1, {limit}] (this machine has {available_workers()} cores)")
    return value


def resolve_workers(value: Any, cases: int, device: str = "cpu") -> int:
    """The number of workers ``--workers value`` means for a run of ``cases`` cases."""
    checked = check_workers(value)
    return auto_workers(cases, device) if checked == AUTO else checked


def check_executor(executor: str, scheduler: str | None = None) -> str:
    """The executor a run uses (``dask`` when a scheduler is given), or ``ValueError``
    naming the flag; ``dask`` also needs the ``distributed`` package."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor: invalid value {executor!r}; allowed: "
                         f"{', '.join(EXECUTORS)}")
    if scheduler is not None:
        if executor == "local" and scheduler:
            executor = "dask"
        if not scheduler.startswith(("tcp://", "tls://", "inproc://", "ws://", "wss://")):
            raise ValueError(f"--scheduler: invalid value {scheduler!r}; allowed: a Dask "
                             "scheduler address such as tcp://host:8786")
    if executor == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError as error:
            raise ValueError("--executor: 'dask' needs the distributed package; install "
                             "it with pip install 'gradparity[dask]'") from error
    return executor


def prepare_worker() -> None:
    """Worker start-up: torch's own thread pool to one thread (the BLAS pools read
    ``SINGLE_THREADED`` from the environment), freed memory reused
    (:func:`~gradparity.harness.memory.reuse_freed_memory`), and no last collection at
    exit (:func:`~gradparity.harness.memory.no_collection_at_exit`)."""
    reuse_freed_memory()
    no_collection_at_exit()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@contextlib.contextmanager
def _single_threaded_environment() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in SINGLE_THREADED}
    os.environ.update(SINGLE_THREADED)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ordered_map(function: Callable[[T], R], items: Sequence[T], workers: int,
                executor: str = "local", scheduler: str | None = None,
                started: Callable[[], object] | None = None) -> Iterator[R]:
    """``map(function, items)`` on ``executor``, yielding in item order.

    ``function`` must be a module-level function (it is sent to the workers by
    reference). Locally, one worker means this process and nothing is spawned.
    ``started`` is called once the workers are running and this process's environment
    is its own again (not at all when nothing is spawned)."""
    if not items:  # nothing to map: no cluster or pool is started for it
        return
    if executor == "dask" or scheduler:
        yield from _dask_map(function, items, workers, scheduler, started)
        return
    if workers <= 1 or len(items) <= 1:
        yield from map(function, items)
        return
    context = multiprocessing.get_context("spawn")
    chunksize = _chunksize(len(items), workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=prepare_worker)
    finished = False
    try:
        # pool.map submits every chunk at once, and each submission spawns a worker
        # until there are ``workers``: they copy the single-threaded settings then, and
        # this process's own later imports (torch reads OMP_NUM_THREADS) do not
        with _single_threaded_environment():
            results = pool.map(function, items, chunksize=chunksize)
        if started is not None:
            started()
        yield from results
        finished = True
    finally:
        # after the last result the workers exit (their interpreters' teardown, about
        # 0.5 s with torch and JAX) while this process writes the report; the pool's
        # own thread joins them, and this process's exit waits for that thread
        pool.shutdown(wait=not finished, cancel_futures=not finished)


CHUNKS_PER_WORKER = 16
"""Cases are sent in about this many chunks per worker. A chunk costs one round trip
(microseconds locally, a scheduler message on Dask); what a worker may be left idle for
at the end is about half a chunk: with 4 chunks per worker, 520 cases on 2 workers
ended with one worker idle for seconds."""


def _chunksize(items: int, workers: int) -> int:
    """Chunks large enough to amortise the transfer, small enough that one slow chunk does
    not leave the other workers idle (:data:`CHUNKS_PER_WORKER`)."""
    return max(1, items // (CHUNKS_PER_WORKER * workers))


def _mapped(function: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    """One chunk of items on a Dask worker."""
    return [function(item) for item in chunk]


def _dask_map(function: Callable[[T], R], items: Sequence[T], workers: int,
              scheduler: str | None, started: Callable[[], object] | None) -> Iterator[R]:
    """The items on a Dask cluster: ``scheduler``'s, or a ``LocalCluster`` of ``workers``
    single-threaded processes that lives as long as the map."""
    import dask
    from distributed import Client, LocalCluster

    client = cluster = None
    finished = False
    try:
        if scheduler:
            client = Client(scheduler)
        else:
            # the workers are spawned here (their nannies also write Dask's
            # single-threaded settings into this process's environment: undone on exit);
            # memory_limit=0: no memory manager, which would pause or kill a worker past
            # a share of this machine's memory that the local pool does not impose, and
            # polls every 100 ms (520 cases on 2 cores: 31.9 -> 30.8 s); no dashboard,
            # and the scheduler's HTTP server (which it starts even so) on a free port:
            # on its default, 8787, a second run at the same time got a warning
            with _single_threaded_environment(), dask.config.set(QUIET_LOCAL_WORKERS):
                cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, memory_limit=0,
                    scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"})
            client = Client(cluster)
        client.run(prepare_worker)
        if started is not None:
            started()
        # chunks as in the local pool: one task per case costs the scheduler a round
        # trip each; pure=False: equal chunks (the same case twice) are still two tasks
        size = _chunksize(len(items), max(1, len(client.nthreads()) or workers))
        chunks = [items[start:start + size] for start in range(0, len(items), size)]
        futures = client.map(_mapped, [function] * len(chunks), chunks, pure=False)
        for future in futures:
            yield from future.result()
        finished = True
    finally:
        if client is not None:
            client.close()
        if cluster is not None and finished:
            # the local cluster closes (its workers' teardown, about 0.2 s) while this
            # process writes the report; its exit waits for the thread
            threading.Thread(target=cluster.close, name="gradparity-dask-close").start()
        elif cluster is not None:
            cluster.close()
