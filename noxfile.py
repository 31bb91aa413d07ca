"""Nox sessions: tests, slow, report, mutants, bench, gpu, lint. Every install goes through
constraints.txt."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")


def _install(session: nox.Session, extras: str) -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the pytest suite against numpy, torch and jax, without slow checks (args pass on)."""
    _install(session, "torch,jax,test")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    """Run the slow checks (20-seed sweeps) on 2 pytest-xdist workers (args replace -n 2)."""
    _install(session, "torch,jax,test")
    session.run("pytest", "-m", "slow", *(session.posargs or ["-n", "2"]))


@nox.session
def mutants(session: nox.Session) -> None:
    """Run the mutation catalogue and write reports/MUTANTS.md (args pass through)."""
    _install(session, "torch,jax")
    session.run("gradparity", "mutants", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Run the default matrix (and a 20-seed sweep) into reports/REPORT.md (args pass on)."""
    _install(session, "torch,jax")
    session.run("gradparity", "run", *(session.posargs or ["--seeds", "20"]))


GPU_PROBE = """
from gradparity.adapters import check_frameworks_on_device
try:
    check_frameworks_on_device(("torch", "jax"), "cuda")
    print("gpu: available")
except ValueError as error:
    print("gpu: unavailable:", error)
"""


@nox.session
def gpu(session: nox.Session) -> None:
    """Run the default matrix with torch and jax on CUDA into reports/gpu; skips without one."""
    _install(session, "torch,jax")
    probe = session.run("python", "-c", GPU_PROBE, silent=True) or ""
    if "gpu: available" not in probe:
        session.skip(probe.strip().removeprefix("gpu: unavailable: ") or "no CUDA device")
    session.run("gradparity", "run", "--device", "cuda",
                *(session.posargs or ["--out", "reports/gpu"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark the harness: times, compilations, overhead ratio, anchors (args pass on)."""
    _install(session, "torch,jax")
    session.run("python", "-m", "gradparity.harness.bench", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff, and the import contracts (ruff args pass on)."""
    session.install(*CONSTRAINTS, "ruff", "import-linter")
    session.install("--no-deps", "-e", ".")  # import-linter reads the installed package
    session.run("ruff", "check", *(session.posargs or ["src", "tests", "noxfile.py"]))
    session.run("lint-imports")
