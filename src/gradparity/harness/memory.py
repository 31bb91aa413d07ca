"""This process's memory, for the bench's tables."""

from __future__ import annotations

import resource


def resident_mib() -> float:
    """Resident memory now (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


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
