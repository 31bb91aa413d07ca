"""Writing outputs safely: every file is written to a temporary name and renamed.

A run killed half-way through a write leaves the previous file intact, never a
partial one (tested by SIGKILL-ing a writer).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_report(text: str, out_dir: Path, name: str = "REPORT.md") -> Path:
    """Write ``out_dir/name`` atomically: a failed write leaves no partial file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; use the usual mode
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
