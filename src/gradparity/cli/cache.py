"""``gradparity cache``: where JAX's persistent compilation cache is, how large, and
``--clear`` to empty it (:mod:`gradparity.adapters.compile_cache`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradparity.adapters import compile_cache


def add_parser(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser(
        "cache", help="show or clear JAX's persistent compilation cache",
        description="Show where JAX's compiled programs are cached between runs and how "
        "much they take; --clear removes them.")
    cache.add_argument("--dir", type=Path, metavar="DIR",
                       help="the cache directory (default: $GRADPARITY_COMPILE_CACHE or "
                       "~/.cache/gradparity/jax)")
    cache.add_argument("--clear", action="store_true", help="remove every cached program")


def run(args: argparse.Namespace) -> int:
    directory = args.dir or compile_cache.default_directory()
    if args.clear:
        removed, freed = compile_cache.clear(directory)
        print(f"{directory}: removed {removed} files ({freed / 2**20:.1f} MiB)")
        return 0
    files = compile_cache.entries(directory)
    size = sum(path.stat().st_size for path in files)
    programs = sum(path.name.endswith("-cache") for path in files)
    print(f"{directory}: {programs} compiled programs, {size / 2**20:.1f} MiB")
    return 0
