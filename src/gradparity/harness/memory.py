"""This process's memory: how much it holds, for the bench's tables, and how freed
memory is reused."""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import gc
import resource
from typing import Any

HEAP_UP_TO_BYTES = 1 << 30
"""Blocks up to this size come from the reusable heap (see :func:`reuse_freed_memory`)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def _libc(name: str, argtypes: list) -> Any:
    """The C library's function ``name`` returning an int, or None where it has none."""
    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c")), name)
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


def reuse_freed_memory() -> bool:
    """Let glibc's malloc hand freed blocks of up to ``HEAP_UP_TO_BYTES`` to the next
    allocation instead of returning them to the system; True where that was set.

    A float64 array of a 2048 x 2048 weight is 32 MiB, just over glibc's largest
    automatic mmap threshold, so by default every temporary of that size is a fresh
    mmap whose pages the kernel zeroes and faults in one by one, and an unmap when it
    is freed. On the MNIST-sized case the run's system time went from 14.6 s to 7-9 s
    with it (docs/speed.md). What the heap keeps counts in the resident memory until
    :func:`release_freed_memory` hands it back, which the runner does after its largest
    transients. Nothing happens on other C libraries."""
    mallopt = _libc("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    # trimming the heap's top at most when 2 GiB lie free there
    return bool(mallopt(_M_MMAP_THRESHOLD, HEAP_UP_TO_BYTES)
                and mallopt(_M_TRIM_THRESHOLD, 2 * HEAP_UP_TO_BYTES - 1))


def freeze_survivors() -> None:
    """Collect the cyclic garbage now, then move every object that survives into the
    collector's permanent generation (``gc.freeze``), where no later collection walks it.

    Importing torch and JAX leaves some 260,000 objects the cyclic garbage collector
    tracks (400,000 once a case has run), and every full collection walks all of them
    again: the default matrix in one process ran 10 full collections, 1.2 s of its 23 s
    (docs/speed.md has the command). Called between cases (by
    :func:`gradparity.harness.workers.run_outcome`, after the frameworks are imported),
    a collection walks only what the cases since allocated. A frozen object is still
    freed when nothing refers to it; only a reference cycle among frozen objects that
    becomes garbage later stays until the process ends (the outcomes a run keeps for its
    report, the frameworks' caches: objects that live that long anyway)."""
    gc.collect()
    gc.freeze()


def no_collection_at_exit() -> None:
    """Freeze every object when the interpreter exits, before its last full collection
    (``gc.freeze`` as the last exit handler): that collection walks every object torch
    and JAX left behind to free memory the operating system takes back anyway (``python
    -c "import torch, jax"`` took 1.52-1.69 s, and 1.27-1.30 s with ``atexit.register(
    gc.freeze)``, docs/speed.md). Exit
    handlers registered later run before it; modules are still torn down and files
    flushed as usual. Registered once per process."""
    global _EXIT_FREEZE_REGISTERED
    if not _EXIT_FREEZE_REGISTERED:
        atexit.register(gc.freeze)
        _EXIT_FREEZE_REGISTERED = True


_EXIT_FREEZE_REGISTERED = False


def resident_mib() -> float:
    """Resident memory now (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


RELEASE_AFTER_BYTES = 8 << 20
"""A float64 copy of the parameters at least this large (a million parameters) makes the
runner's transients worth handing back (:func:`release_freed_memory`)."""


def release_freed_memory(parameter_bytes: int) -> bool:
    """Hand the pages of freed heap blocks back to the system (glibc's ``malloc_trim``)
    after a stage whose temporaries are gone, so that the next stage's arrays start from
    what is really held and the process's peak stays lower; True where done.

    A trim walks the whole heap (milliseconds), which only pays after large transients:
    nothing is done unless ``parameter_bytes`` (a float64 copy of the case's
    parameters) is at least ``RELEASE_AFTER_BYTES``."""
    if parameter_bytes < RELEASE_AFTER_BYTES:
        return False
    trim = _libc("malloc_trim", [ctypes.c_size_t])
    return trim is not None and bool(trim(0))


def peak_mib() -> float:
    """Peak resident memory. Linux's VmHWM belongs to this program alone; ``ru_maxrss``
    (the fallback elsewhere) also counts the parent's memory that a spawned process was
    forked with before it loaded Python, so a large parent shows in every child."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
