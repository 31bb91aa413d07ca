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

from gradparity.case import Case
from gradparity.compare import Difference, compare_arrays
from gradparity.data import make_problem

WORLD_SIZE = 2
SUMMED_LOSSES = ("mse_sum", "half_mse_sum")


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


_TORCH_WORKER = r'''
import sys
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from gradparity.adapters import torch_adapter
from gradparity.case import Case
from gradparity.data import make_problem


class Network(torch.nn.Module):
    def __init__(self, case, params, dtype):
        super().__init__()
        self.case = case
        for name, value in params.items():
            array = value.T if name.startswith("W") else value
            self.register_parameter(name, torch.nn.Parameter(
                torch.tensor(np.ascontiguousarray(array), dtype=dtype)))

    def forward(self, x):
        options, a = self.case.all_options, x
        for layer, activation in enumerate(self.case.activations, start=1):
            a = F.linear(a, getattr(self, f"W{layer}"), getattr(self, f"b{layer}"))
            a = torch_adapter.ACTIVATIONS[activation](a, options)
        return a


def main(rank, case_json, init_file, out_file):
    case = Case.from_dict(__import__("json").loads(case_json))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=2)
    torch.set_num_threads(1)
    problem = make_problem(case)
    dtype = getattr(torch, case.dtype)
    model = DistributedDataParallel(Network(case, problem.params, dtype))
    half = case.batch_size // 2
    rows = slice(rank * half, (rank + 1) * half)
    x = torch.tensor(problem.x[rows], dtype=dtype)
    y_array = problem.y[rows]
    y = torch.tensor(y_array, dtype=torch.int64 if y_array.dtype.kind == "i" else dtype)
    loss = torch_adapter.LOSSES[case.loss](model(x), y, case.all_options)
    loss.backward()  # DDP all-reduces (averages) the gradients here
    if rank == 0:
        grads = {}
        for name, parameter in model.module.named_parameters():
            g = parameter.grad.detach().numpy()
            grads[name] = np.array(g.T if name.startswith("W") else g)
        np.savez(out_file, **grads)
    dist.destroy_process_group()


if __name__ == "__main__":
    import torch.multiprocessing as mp

    mp.start_processes(main, args=tuple(sys.argv[1:4]), nprocs=2, start_method="spawn")
'''

_JAX_WORKER = r'''
import json
import sys
import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from gradparity.adapters import jax_adapter
from gradparity.case import Case
from gradparity.data import make_problem

case = Case.from_dict(json.loads(sys.argv[1]))
jax.config.update("jax_enable_x64", case.dtype == "float64")
devices = jax.devices()
assert len(devices) == 2, devices
problem = make_problem(case)
loss_fn = jax_adapter._make_loss(case.activations, case.loss, case.all_options)
half = case.batch_size // 2


def local_loss(params, x, y):
    offsets = [jnp.zeros((x.shape[0], w), dtype=x.dtype) for w in case.layer_sizes[1:]]
    # each device's half-batch loss, averaged over the devices; differentiating through
    # it all-reduces the gradient (the replicated parameters' cotangents are summed)
    return jax.lax.pmean(loss_fn(params, offsets, x, y, []), "data")


mesh = Mesh(np.array(devices), ("data",))
sharded_loss = jax.shard_map(local_loss, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                             out_specs=P())
params = {n: jnp.asarray(v) for n, v in problem.params.items()}
grads = jax.jit(jax.grad(sharded_loss))(params, jnp.asarray(problem.x), jnp.asarray(problem.y))
np.savez(sys.argv[2], **{n: np.asarray(g) for n, g in grads.items()})
'''


def _case_json(case: Case) -> str:
    return json.dumps(case.to_dict())


def _run_worker(script: str, args: list[str], env: dict[str, str], timeout: float) -> None:
    # a file, not ``python -c``: spawned ranks re-import the main module by path
    path = Path(args[-1]).with_name("worker.py")
    path.write_text(script, encoding="utf-8")
    completed = subprocess.run([sys.executable, str(path), *args], env=env, text=True,
                               capture_output=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"data-parallel worker failed (exit {completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")


def torch_ddp_gradients(case: Case, timeout: float = 300) -> dict[str, np.ndarray]:
    """Gradients from DDP (gloo) over 2 spawned processes, reference layout."""
    with tempfile.TemporaryDirectory() as directory:
        init, out = Path(directory) / "init", Path(directory) / "grads.npz"
        _run_worker(_TORCH_WORKER, [_case_json(case), str(init), str(out)],
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
        _run_worker(_JAX_WORKER, [_case_json(case), str(out)], env, timeout)
        with np.load(out, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}


DATA_PARALLEL = {"torch-ddp": torch_ddp_gradients, "jax-2dev": jax_two_device_gradients}


def data_parallel_checks(case: Case, implementations=tuple(DATA_PARALLEL)) -> list[Difference]:
    """Each data-parallel gradient against the single-process NumPy reference."""
    from gradparity import reference
    from gradparity.tolerances import floors

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
