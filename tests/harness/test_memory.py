"""Freed memory reused: large temporaries stop costing a page fault per page."""

from __future__ import annotations

import platform
import subprocess
import sys

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
    # glibc by default maps each such array afresh, and its pages fault in again every
    # time (fewer than 12,288 per array where NumPy's huge pages take some of them)
    default = _page_faults("default")
    assert default >= 10 * 100
    # reused from the heap: a handful of faults for all ten
    assert _page_faults("reuse") < default / 100
