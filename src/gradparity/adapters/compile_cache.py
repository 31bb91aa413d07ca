"""JAX's persistent compilation cache: compiled programs kept on disk between runs.

Every new process traces and compiles its JAX programs again (about half of a cold
default run on 2 cores); with the cache, XLA's compilation is read back from disk
instead, so a second run of the same matrix, and every worker process after the first,
skips it (``nox -s bench`` measures both). Tracing is not cached by JAX.

The directory is, in order: ``gradparity run --compile-cache DIR``, the environment
variable ``GRADPARITY_COMPILE_CACHE``, or ``$XDG_CACHE_HOME/gradparity/jax``
(``~/.cache/gradparity/jax``). ``--no-compile-cache`` turns it off;
``gradparity cache --clear`` empties it. Every program is cached, however fast it
compiled (JAX's defaults keep only those that took over a second).

JAX treats the cache as trusted code: do not point it at a directory others can write.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENVIRONMENT = "GRADPARITY_COMPILE_CACHE"
"""The environment variable that sets the cache directory."""

JAX_SETTINGS = {
    "jax_compilation_cache_dir": None,  # the directory, filled in by enable()
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": -1,
}
"""JAX's configuration for the cache; worker processes read the same from the
environment (``JAX_COMPILATION_CACHE_DIR`` ...), set by :func:`enable`."""

ENTRY_SUFFIXES = ("-cache", "-atime")
"""How JAX names the files of a cache entry (the only files ``clear`` removes)."""


def default_directory() -> Path:
    """``GRADPARITY_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/gradparity/jax``."""
    if os.environ.get(ENVIRONMENT):
        return Path(os.environ[ENVIRONMENT]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gradparity" / "jax"


def enable(directory: Path) -> Path:
    """Cache JAX's compiled programs in ``directory`` (created if missing), in this
    process and in every worker process it starts afterwards."""
    directory = Path(directory).expanduser().resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--compile-cache: cannot use {directory} ({error.strerror}); "
                         "allowed: a directory this user can create and write") from error
    settings = {**JAX_SETTINGS, "jax_compilation_cache_dir": str(directory)}
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)
    if "jax" in sys.modules:  # already imported: its configuration read the environment
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    return directory


def entries(directory: Path) -> list[Path]:
    """The cache's files in ``directory`` (none if it does not exist)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.name.endswith(ENTRY_SUFFIXES))


def clear(directory: Path) -> tuple[int, int]:
    """Remove the cache's entries from ``directory``; (files removed, bytes freed).
    Other files are left alone."""
    removed = freed = 0
    for path in entries(directory):
        freed += path.stat().st_size
        path.unlink()
        removed += 1
    return removed, freed
