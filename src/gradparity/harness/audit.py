"""Where a run happened: versions, platform and the numeric settings that change results.

Every report and results file carries this audit, so that two runs' numbers are only
compared in the same environment, and a non-IEEE float32 mode (TF32, reduced matmul
precision) is flagged instead of passing for a disagreement.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import threading
from importlib import metadata
from typing import Any

import numpy as np

from gradparity.harness.oracle import cupy_device_count


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, str]:
    """Versions and platform that the numbers depend on."""
    env = {
        "gradparity": _version("gradparity"),
        "Python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "NumPy": np.__version__,
    }
    for distribution in ("torch", "jax", "jaxlib", "optax", "pandas"):
        env[distribution] = _version(distribution)
    return env


AUDITED_FRAMEWORKS = ("torch", "jax")
"""The modules :func:`numeric_audit` imports to read their settings."""


def import_in_background() -> threading.Thread:
    """Import :data:`AUDITED_FRAMEWORKS` in a daemon thread, and return it.

    For a run whose cases go to worker processes: this process only needs torch and JAX
    for the audit written after the last case, when every other core is idle. Imported
    while the workers run, they cost that tail nothing (about 2 s of the 520-case example
    on 2 workers). A framework that is not installed is left to the audit to report.

    Call it once the workers are spawned (``ordered_map``'s ``started``): torch reads
    OMP_NUM_THREADS when it is imported, and the environment the workers are spawned
    in says one thread."""

    def load() -> None:
        for name in AUDITED_FRAMEWORKS:
            try:
                importlib.import_module(name)
            except ImportError:
                pass

    thread = threading.Thread(target=load, name="gradparity-audit-imports", daemon=True)
    thread.start()
    return thread


def _where(device: str) -> str:
    """Where each part of a run computes."""
    if device == "cpu":
        return ("cpu (torch, jax); the NumPy reference, the oracles and the tolerance model "
                "on the CPU")
    oracle = ("CuPy on the GPU" if cupy_device_count()
              else "NumPy on the CPU (CuPy is missing or sees no GPU)")
    return (f"{device} (torch, jax); the float64 oracle and the tolerance model's "
            f"trajectories of dense MLPs with {oracle}; the NumPy reference's own run, the "
            "finite differences, the model's one-pass terms and the comparisons on the CPU")


def numeric_audit(device: str = "cpu") -> dict[str, Any]:
    """The settings that change results, and any non-IEEE float32 mode that is active
    (``device``: where torch and JAX computed, :data:`gradparity.adapters.DEVICES`)."""
    settings: dict[str, Any] = {
        "device": _where(device),
        "dtype policy": "each case runs in its own dtype; inputs are rounded once from float64",
        "BLAS (numpy)": _numpy_blas(),
        "threads (os.cpu_count)": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        # the same text whatever --workers is, so outputs stay identical across N
        "threads per case": "torch: one intra-op thread, in this process and in worker "
                            "processes alike (gradparity.adapters.one_torch_thread); worker "
                            "processes: OMP, MKL and OpenBLAS threads 1",
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "unset"),
        "processor": platform.processor() or platform.machine(),
    }
    non_ieee: list[str] = []
    try:
        import torch

        matmul = torch.get_float32_matmul_precision()
        settings.update({
            "torch float32 matmul precision": matmul,
            "torch.backends.cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "torch deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
            "torch devices": "cpu" + (f", cuda x{torch.cuda.device_count()}"
                                      if torch.cuda.is_available() else ""),
        })
        if matmul != "highest":
            non_ieee.append(f"torch float32 matmul precision is {matmul!r} (TF32/bf16 allowed)")
        if torch.backends.cuda.matmul.allow_tf32:
            non_ieee.append("torch.backends.cuda.matmul.allow_tf32 is True")
    except ImportError:
        settings["torch"] = "not installed"
    try:
        import jax

        precision = jax.config.jax_default_matmul_precision
        settings.update({
            # a policy, not the flag's state at the end of the run (which would depend on
            # the last case and on --workers)
            "jax_enable_x64": "set per case: on for float64 cases, off for float32 cases",
            "jax default matmul precision": str(precision),
            "jax devices": ", ".join(str(d) for d in jax.devices()),
        })
        if device != "cpu":
            settings["jax matmul precision in device sessions"] = (
                "highest: set by gradparity (XLA's GPU default may compute float32 dots "
                "in TF32)")
    except ImportError:
        settings["jax"] = "not installed"
    return {"versions": environment(), "settings": settings, "non_ieee_float32": non_ieee}


def _numpy_blas() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # the layout of show_config differs between NumPy builds
        return "unknown"
