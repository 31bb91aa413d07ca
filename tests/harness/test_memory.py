"""Freed memory reused: large temporaries stop costing a page fault per page; a case's
garbage collected and the survivors frozen before the next."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import weakref

import pytest

# Allocates and frees a 48 MiB array ten times (each one written, so its pages are
# touched) and prints the minor page faults that took.
_FAULTS = """
import resource, sys
import numpy as np
from gradparity.harness.memory import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
np.ones(6 << 20)  # the first one faults in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(6 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt's thresholds are glibc's")
def test_large_temporaries_reuse_freed_memory():
    # glibc by default maps each such array afresh, and a fresh mapping faults in again
    # (at least once; up to 12,288 times where NumPy's huge pages take none of it)
    default = _page_faults("default")
    assert default >= 10
    # reused from the heap: a handful of faults for all ten
    assert _page_faults("reuse") < default / 10


_RELEASED = """
import sys
import numpy as np
from gradparity.harness.memory import release_freed_memory, resident_mib, reuse_freed_memory
assert reuse_freed_memory()
assert not release_freed_memory(1 << 20)  # a small case's transients: not worth a trim
arrays = [np.ones(6 << 20) for _ in range(4)]  # 192 MiB, kept by the heap once freed
del arrays
held = resident_mib()
if sys.argv[1] == "release":
    assert release_freed_memory(192 << 20)
print(held - resident_mib())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_freed_memory_goes_back_when_released():
    def returned(mode: str) -> float:
        done = subprocess.run([sys.executable, "-c", _RELEASED, mode], capture_output=True,
                              text=True, check=True)
        return float(done.stdout)

    assert returned("keep") < 16  # MiB: the heap keeps what was freed, for reuse
    assert returned("release") > 150  # most of the 192 MiB back to the system


class _Node:
    """A plain object the cyclic collector tracks."""


def test_a_case_starts_with_the_garbage_collected_and_the_survivors_frozen():
    from gradparity.harness.workers import run_outcome
    from gradparity.spec.case import Case

    survivor = _Node()
    cycle = _Node()
    cycle.itself = cycle  # garbage only a collection frees
    dropped = weakref.ref(cycle)
    del cycle
    try:
        outcome = run_outcome((Case((3, 4, 2), steps=1), ("numpy",), None, "full", "cpu"))
        assert outcome.passed
        assert dropped() is None  # collected, not frozen
        # frozen: in no generation, so no later collection walks it
        assert gc.get_freeze_count() > 0
        assert not any(tracked is survivor for tracked in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(tracked is survivor for tracked in gc.get_objects())


EXIT_PROBE = """
import atexit, gc
from gradparity.harness.memory import no_collection_at_exit
# exit handlers run last-registered first: this one runs after the freeze
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
before = atexit._ncallbacks()
no_collection_at_exit()
no_collection_at_exit()  # registered once
print("handlers added:", atexit._ncallbacks() - before)
"""


def test_the_objects_are_frozen_before_the_last_collection_at_exit():
    done = subprocess.run([sys.executable, "-c", EXIT_PROBE], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["handlers added: 1", "frozen at exit: True"]
