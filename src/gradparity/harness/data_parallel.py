"""Data-parallel gradients: two workers, each on half the batch, against one process.

* **PyTorch** ``DistributedDataParallel`` with the gloo backend over 2
  processes (``torch.multiprocessing``, spawned): each rank runs the torch
  adapter's own functions on its half of the batch and DDP all-reduces the
  gradients (averaging them).
* **JAX** over 2 host CPU devices (``XLA_FLAGS=--xla_force_host_platform_
  device_count=2``, set in a fresh interpreter because it must precede the
  JAX import): under ``jax.shard_map`` each device computes its half's loss,
  ``jax.lax.pmean`` averages the losses, and ``jax.grad`` through that
  all-reduces the gradients.

Averaging two half-batch gradients equals the full-batch gradient only for
losses whose reduction is a mean over the batch (``mean_over_batch`` losses);
a summed loss would come out halved, which is DDP's convention, not a bug, so
those cases are refused with that reason. Both results are compared with the
single-process NumPy reference like any other pair (``"torch-ddp"``,
``"jax-2dev"``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from gradparity import reference
from gradparity.compare.derivation import floors
from gradparity.compare.metrics import Difference, compare_arrays
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem

WORLD_SIZE = 2
SUMMED_LOSSES = ("mse_sum", "half_mse_sum", "softmax_cross_entropy_sum")


def unsupported_reason(case: Case) -> str | None:
    """Why a data-parallel gradient cannot equal the full-batch one for ``case``, or None."""
    if case.loss in SUMMED_LOSSES:
        return (f"loss {case.loss!r} sums over the batch; DDP and pmean average the two "
                "halves' gradients, which halves a summed gradient")
    if case.loss == "softmax_cross_entropy_weighted":
        return "the weighted mean divides by each half's own weight sum"
    if case.batch_size % WORLD_SIZE:
        return f"batch_size {case.batch_size} does not split into {WORLD_SIZE} equal halves"
    if case.option("dropout") or case.option("batches") != 1:
        return "only the plain full-batch gradient at the initial parameters is split"
    return None


def _case_json(case: Case) -> str:
    return json.dumps(case.to_dict())


def _run_worker(module: str, args: list[str], env: dict[str, str], timeout: float) -> None:
    """Run ``python -m <module> <args>`` in a fresh interpreter (``-m``, not ``-c``: spawned
    ranks re-import the main module)."""
    completed = subprocess.run([sys.executable, "-m", module, *args], env=env, text=True,
                               capture_output=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"data-parallel worker failed (exit {completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")


def torch_ddp_gradients(case: Case, timeout: float = 300) -> dict[str, np.ndarray]:
    """Gradients from DDP (gloo) over 2 spawned processes, reference layout."""
    with tempfile.TemporaryDirectory() as directory:
        init, out = Path(directory) / "init", Path(directory) / "grads.npz"
        _run_worker("gradparity.harness.ddp_worker", [_case_json(case), str(init), str(out)],
                    dict(os.environ), timeout)
        with np.load(out, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


def jax_two_device_gradients(case: Case, timeout: float = 300) -> dict[str, np.ndarray]:
    """Gradients from ``shard_map`` + ``pmean`` over 2 host CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={WORLD_SIZE}").strip()
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "grads.npz"
        _run_worker("gradparity.harness.shard_map_worker", [_case_json(case), str(out)], env,
                    timeout)
        with np.load(out, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


DATA_PARALLEL = {"torch-ddp": torch_ddp_gradients, "jax-2dev": jax_two_device_gradients}


def data_parallel_checks(case: Case, implementations=tuple(DATA_PARALLEL)) -> list[Difference]:
    """Each data-parallel gradient against the single-process NumPy reference."""
    reason = unsupported_reason(case)
    if reason is not None:
        raise ValueError(f"case {case.id}: not comparable data-parallel: {reason}")
    problem = make_problem(case)
    _, expected = reference.loss_and_gradients(problem.params, problem.x, problem.y,
                                               case.activations, case.loss, case.all_options)
    model = floors(case)  # gradient tolerances are exact in the floors
    differences = []
    for name in implementations:
        grads = DATA_PARALLEL[name](case)
        for parameter, value in expected.items():
            differences.append(compare_arrays(
                grads.get(parameter), value, case_id=case.id, dtype=case.dtype,
                framework=name, baseline_name="numpy", quantity="gradient",
                parameter=parameter, tolerance=model.normwise("gradient", parameter)))
    return differences
