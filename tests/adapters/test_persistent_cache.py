"""JAX's persistent compilation cache: set by the user, filled by a first run, read back
(nothing compiled again) by a second process, emptied by ``gradparity cache --clear``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradparity.adapters import compile_cache
from gradparity.cli.main import main
from tests.conftest import require

PROBE = """
import sys
from pathlib import Path
import jax.monitoring
from gradparity.adapters import compile_cache
from gradparity.harness.runner import run_case
from gradparity.spec.case import Case

compile_cache.enable(Path(sys.argv[1]))
events = {"hits": 0, "misses": 0}
def count(event, **_):
    for kind in events:
        if event == f"/jax/compilation_cache/cache_{kind}":
            events[kind] += 1
jax.monitoring.register_event_listener(count)
outcome = run_case(Case((3, 5, 2), "tanh", dtype="float64", steps=2), ("numpy", "jax"))
assert outcome.passed
print(events["hits"], events["misses"])
"""


def _compilations(cache: Path) -> tuple[int, int]:
    """(programs read from the cache, programs compiled) by one case in a new process."""
    environment = dict(os.environ)
    for name in compile_cache.JAX_SETTINGS:  # nothing inherited from this process
        environment.pop(name.upper(), None)
    done = subprocess.run([sys.executable, "-c", PROBE, str(cache)], env=environment,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    hits, misses = done.stdout.split()
    return int(hits), int(misses)


def test_a_second_process_reads_every_program_back(tmp_path: Path) -> None:
    require("jax")
    hits, misses = _compilations(tmp_path)
    assert hits == 0 and misses > 0
    assert len([p for p in compile_cache.entries(tmp_path) if p.name.endswith("-cache")]) \
        == misses
    assert _compilations(tmp_path) == (misses, 0)  # every one read back, none compiled


def test_clear_removes_the_entries_and_nothing_else(tmp_path: Path, capsys) -> None:
    for name in ("jit_step-1a2b-cache", "jit_step-1a2b-atime", "notes.txt"):
        (tmp_path / name).write_bytes(b"x" * 10)
    assert main(["cache", "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path}: 1 compiled programs")
    assert main(["cache", "--dir", str(tmp_path), "--clear"]) == 0
    assert "removed 2 files" in capsys.readouterr().out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_the_directory_comes_from_the_environment_or_the_user_cache(monkeypatch,
                                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("GRADPARITY_COMPILE_CACHE", str(tmp_path / "mine"))
    assert compile_cache.default_directory() == tmp_path / "mine"
    monkeypatch.delenv("GRADPARITY_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.default_directory() == tmp_path / "xdg" / "gradparity" / "jax"


def test_an_unusable_directory_names_the_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match=r"--compile-cache: cannot use .*; allowed: a "
                       r"directory this user can create and write"):
        compile_cache.enable(blocker / "cache")
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ or \
        os.environ["JAX_COMPILATION_CACHE_DIR"] != str(blocker / "cache")
