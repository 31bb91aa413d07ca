"""The float64 oracle: the NumPy reference in float64 from a case's rounded inputs, each
implementation's own error measured against it.

Where torch and JAX run on a GPU it runs there too: the same textbook lines of
:mod:`gradparity.reference`, computing with CuPy (the array API namespace of its arrays,
:mod:`gradparity.reference.namespace`), its results brought back as NumPy arrays. The
tolerance model's trajectories, which start from the oracle's run, go with it
(:func:`gradparity.compare.derivation.derive`'s ``namespace``).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from gradparity.adapters import RunResult, check_device
from gradparity.adapters.numpy_adapter import NumpyAdapter
from gradparity.compare.derivation import derive
from gradparity.compare.metrics import ORACLE, largest_difference_and_scale
from gradparity.reference.namespace import named
from gradparity.spec.case import Case
from gradparity.spec.data import Problem, make_problem


@functools.cache
def cupy_device_count() -> int:
    """How many CUDA devices CuPy sees (0 without CuPy, a driver or a device)."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device: CuPy raises its own CUDA errors
        return 0


def oracle_namespace(case: Case, device: str = "cpu", requested: str | None = None) -> str:
    """The array namespace the float64 oracle of ``case`` computes with.

    ``requested`` (one of :data:`~gradparity.reference.namespace.NAMESPACES`) when given
    (checked here: ``ValueError`` naming the allowed values); otherwise ``"cupy"`` where
    the frameworks run on ``cuda``, the case is a dense MLP (the layer library is NumPy
    only) and CuPy sees a device, and ``"numpy"`` everywhere else."""
    if requested is not None:
        named(requested)
        return requested
    if check_device(device) == "cuda" and not case.is_sequence and cupy_device_count():
        return "cupy"
    return "numpy"


@functools.cache
def _adapter(namespace: str) -> NumpyAdapter:
    return NumpyAdapter(namespace=namespace)


def float64_oracle(case: Case, problem: Problem, namespace: str = "numpy") -> RunResult:
    """The NumPy reference in float64 from the (already rounded) inputs of ``problem``,
    computed with the array namespace ``namespace`` (see :func:`oracle_namespace`)."""
    result = _adapter(namespace).run(replace(case, dtype="float64"), problem.as_float64())
    return replace(result, framework=ORACLE, case_id=case.id)


def _relative(found: np.ndarray, expected: np.ndarray) -> float:
    difference, scale = largest_difference_and_scale(found, expected)
    return difference / max(scale, np.finfo(float).tiny)


def oracle_timing(cases: Sequence[Case], namespaces: Sequence[str] | None = None
                  ) -> list[str]:
    """A Markdown table: per case and namespace (by default NumPy, and CuPy where it sees
    a GPU), the float64 oracle warm (the better of two runs after a first) and the
    tolerance model derived from it (one run: its trajectories in the namespace, its
    one-pass terms on NumPy), each with its speed-up over NumPy, and the oracle's largest
    relative difference from NumPy's parameters after the last step (rounding: the
    libraries' own kernels)."""
    note = []
    if namespaces is None:
        namespaces = ["numpy"] + (["cupy"] if cupy_device_count() else [])
        note = [] if "cupy" in namespaces else ["", "(no CuPy row: CuPy is missing or sees "
                                                    "no GPU)"]
    lines = ["| case | namespace | oracle, warm (s) | speed-up | tolerance model (s) | "
             "speed-up | oracle's largest relative difference from NumPy |",
             "|---|---|---|---|---|---|---|"]
    for case in cases:
        problem = make_problem(case)
        oracle, model, last = {}, {}, {}
        for namespace in namespaces:
            float64_oracle(case, problem, namespace)  # first run: imports, kernels, caches
            times = []
            for _ in range(2):
                started = time.perf_counter()
                result = float64_oracle(case, problem, namespace)
                times.append(time.perf_counter() - started)
            oracle[namespace], last[namespace] = min(times), result.parameters_after(case.steps)
            started = time.perf_counter()
            derive(case, problem, clean=result, namespace=namespace)
            model[namespace] = time.perf_counter() - started
        for namespace in namespaces:
            worst = max(_relative(last[namespace][n], value) for n, value in
                        last["numpy"].items()) if "numpy" in last else math.nan
            lines.append(f"| {case.id} | {namespace} | {oracle[namespace]:.3f} | "
                         f"{oracle.get('numpy', math.nan) / oracle[namespace]:.1f}x | "
                         f"{model[namespace]:.2f} | "
                         f"{model.get('numpy', math.nan) / model[namespace]:.1f}x | "
                         f"{worst:.1e} |")
    return lines + note
