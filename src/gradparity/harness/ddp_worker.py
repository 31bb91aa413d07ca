"""One data-parallel PyTorch run: ``python -m gradparity.harness.ddp_worker CASE_JSON INIT OUT``.

Spawns 2 ranks (gloo, a file rendezvous at INIT). Each rank runs the torch adapter's
own activations and loss on its half of the batch under ``DistributedDataParallel``,
which all-reduces (averages) the gradients in ``backward``; rank 0 writes them, in the
reference layout, to the ``.npz`` file OUT. Started by
:func:`gradparity.harness.data_parallel.torch_ddp_gradients`.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from gradparity.adapters import torch_adapter
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem

WORLD_SIZE = 2


class Network(torch.nn.Module):
    """The case's MLP with torch's (out, in) weights, as DDP wraps it."""

    def __init__(self, case: Case, params: dict[str, np.ndarray], dtype: torch.dtype) -> None:
        super().__init__()
        self.case = case
        for name, value in params.items():
            array = value.T if name.startswith("W") else value
            self.register_parameter(name, torch.nn.Parameter(
                torch.tensor(np.ascontiguousarray(array), dtype=dtype)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        options, a = self.case.all_options, x
        for layer, activation in enumerate(self.case.activations, start=1):
            a = F.linear(a, getattr(self, f"W{layer}"), getattr(self, f"b{layer}", None))
            a = torch_adapter.ACTIVATIONS[activation](a, options)
        return a


def rank_main(rank: int, case_json: str, init_file: str, out_file: str) -> None:
    """What each rank runs."""
    case = Case.from_dict(json.loads(case_json))
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    problem = make_problem(case)
    dtype = getattr(torch, case.dtype)
    model = DistributedDataParallel(Network(case, problem.params, dtype))
    half = case.batch_size // WORLD_SIZE
    rows = slice(rank * half, (rank + 1) * half)
    x = torch.tensor(problem.x[rows], dtype=dtype)
    y_array = problem.y[rows]
    y = torch.tensor(y_array, dtype=torch.int64 if y_array.dtype.kind == "i" else dtype)
    loss = torch_adapter.LOSSES[case.loss](model(x), y, case.all_options)
    loss.backward()  # DDP all-reduces (averages) the gradients here
    if rank == 0:
        grads = {}
        for name, parameter in model.module.named_parameters():
            gradient = parameter.grad.detach().numpy()
            grads[name] = np.array(gradient.T if name.startswith("W") else gradient)
        np.savez(out_file, **grads)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.start_processes(rank_main, args=tuple(sys.argv[1:4]), nprocs=WORLD_SIZE,
                       start_method="spawn")
