"""Nox sessions. A newcomer runs two: ``tests`` and ``report``. Every install goes through
constraints.txt (constraints-gpu.txt for ``gpu``).

The sessions that run the harness share one environment, ``.nox/shared``: it is built on
first use and rebuilt only when constraints.txt or pyproject.toml change, so the second
session costs no install and the disk holds one copy of torch and JAX.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")
SHARED = Path(".nox/shared")
SHARED_EXTRAS = "torch,jax,test,docs,dask"
EXAMPLE = "docs/example-report"


def _shared(session: nox.Session) -> None:
    """Use the shared environment (built or rebuilt here when its inputs changed).

    Sessions then call its tools through ``_tool``: with ``venv_backend="none"`` nox looks a
    bare program name up on the PATH nox itself was started with, so a ``pytest`` installed
    elsewhere on the machine would run instead of the shared environment's.
    """
    stamp = hashlib.sha256(b"".join(Path(name).read_bytes() for name in (
        "constraints.txt", "pyproject.toml")) + SHARED_EXTRAS.encode()).hexdigest()
    marker = SHARED / "gradparity-install.stamp"
    scripts = SHARED / ("Scripts" if os.name == "nt" else "bin")
    if not (marker.exists() and marker.read_text(encoding="utf-8") == stamp):
        session.log(f"building the shared environment {SHARED}")
        session.run(sys.executable, "-m", "venv", "--clear", str(SHARED), external=True)
        # --no-compile: byte-compiling every installed file took half the install (torch
        # alone has thousands); Python compiles the modules it imports on first use
        session.run(str(scripts / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
                    *CONSTRAINTS, "-e", f".[{SHARED_EXTRAS}]", external=True)
        marker.write_text(stamp, encoding="utf-8")
    session.env["VIRTUAL_ENV"] = str(SHARED.resolve())
    session.env["PATH"] = os.pathsep.join([str(scripts.resolve()), os.environ.get("PATH", "")])


def _tool(name: str) -> str:
    """The absolute path of a program installed in the shared environment."""
    scripts = SHARED / ("Scripts" if os.name == "nt" else "bin")
    return str((scripts / name).resolve())


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the test suite (not the slow checks) on every core with pytest-xdist (args pass on)."""
    _shared(session)
    # worksteal: an idle worker takes queued tests from a busy one (no idle tail)
    session.run(_tool("pytest"), "-m", "not slow", "-n", "auto", "--dist", "worksteal",
                *session.posargs, external=True)


@nox.session(venv_backend="none")
def slow(session: nox.Session) -> None:
    """Run the slow checks: 20-seed sweeps, calibration, adversarial scenarios (args pass on)."""
    _shared(session)
    session.run(_tool("pytest"), "-m", "slow", "-n", "auto", "--dist", "worksteal",
                *session.posargs, external=True)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """Run the default matrix on 2 workers into reports/REPORT.md (args pass on)."""
    _shared(session)
    session.run(_tool("gradparity"), "run", "--workers", "2", *session.posargs, external=True)


@nox.session(venv_backend="none", default=False)
def sweep(session: nox.Session) -> None:
    """Run the default matrix over 20 seeds into reports/sweep (args pass on)."""
    _shared(session)
    session.run(_tool("gradparity"), "run", "--workers", "2", "--seeds", "20", "--out",
                "reports/sweep", *session.posargs, external=True)


@nox.session(venv_backend="none", default=False)
def example(session: nox.Session) -> None:
    """Regenerate the committed example report, its kill matrix and the docs' figures."""
    _shared(session)
    session.run(_tool("gradparity"), "run", "--workers", "2", "--out", EXAMPLE, external=True)
    session.run(_tool("gradparity"), "mutants", "--report", f"{EXAMPLE}/MUTANTS.md",
                external=True)
    session.run(_tool("gradparity"), "figures", "--results", f"{EXAMPLE}/results.json",
                external=True)


@nox.session(venv_backend="none", default=False)
def mutants(session: nox.Session) -> None:
    """Run the mutation catalogue and write reports/MUTANTS.md (args pass through)."""
    _shared(session)
    session.run(_tool("gradparity"), "mutants", *session.posargs, external=True)


@nox.session(venv_backend="none", default=False)
def bench(session: nox.Session) -> None:
    """Benchmark the harness: times, compilations, overhead ratio, size scan (args pass on)."""
    _shared(session)
    session.run(_tool("python"), "-m", "gradparity.harness.bench", *session.posargs,
                external=True)


@nox.session(venv_backend="none", default=False)
def docs(session: nox.Session) -> None:
    """Check the docs' figures against a fresh run and build the site with --strict."""
    _shared(session)
    fresh = ".nox/docs-run"
    session.run(_tool("gradparity"), "run", "--workers", "2", "--quiet", "--no-plots",
                "--out", fresh, external=True)
    session.run(_tool("gradparity"), "figures", "--results", f"{EXAMPLE}/results.json",
                "--check", "--against", f"{fresh}/results.json", external=True)
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's notice about its successor
    session.run(_tool("mkdocs"), "build", "--strict", "--site-dir", ".nox/site",
                *session.posargs, external=True)


GPU_PROBE = """
from gradparity.adapters import check_frameworks_on_device
try:
    check_frameworks_on_device(("torch", "jax"), "cuda")
    print("gpu: available")
except ValueError as error:
    print("gpu: unavailable:", error)
"""


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """Run the default matrix, the bench and the oracle on CUDA (constraints-gpu.txt)."""
    # a local CPU wheel of torch (find-links) must not stand in for the CUDA build
    session.env["PIP_FIND_LINKS"] = ""
    session.install("-c", "constraints-gpu.txt", "-e", ".[torch,jax]", "jax[cuda12]",
                    "cupy-cuda12x")  # CuPy: the float64 oracle on the GPU
    probe = session.run("python", "-c", GPU_PROBE, silent=True) or ""
    if "gpu: available" not in probe:
        session.skip(probe.strip().removeprefix("gpu: unavailable: ") or "no CUDA device")
    session.run("gradparity", "run", "--device", "cuda",
                *(session.posargs or ["--out", "reports/gpu"]))
    session.run("python", "-m", "gradparity.harness.bench", "--device", "cuda", "--scan")
    session.run("python", "-m", "gradparity.harness.bench", "--oracle",
                "examples/mnist_sized.toml")


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff, and the import contracts (ruff args pass on)."""
    session.install(*CONSTRAINTS, "ruff", "import-linter")
    session.install("--no-deps", "-e", ".")  # import-linter reads the installed package
    session.run("ruff", "check", *(session.posargs or ["src", "tests", "noxfile.py"]))
    session.run("lint-imports")
