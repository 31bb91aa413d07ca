"""The bench's size scan: what checking one model costs next to running it, by size.

Each size is one MNIST-like case, ``(784, width, width, 10)``, tanh, softmax
cross-entropy, float32, Adam (lr 1e-3), ``STEPS`` steps, batch ``batch``; at width 2048
and batch 512 it is the MNIST-sized case of ``examples/mnist_sized.toml``. Per size, in
a fresh process (so each peak is its own):

* **bare**: torch's and JAX's own runs (``Adapter.run``: forward, backward, optimizer,
  results copied to NumPy), warm (JAX compiled once before);
* **harness**: ``run_case`` in full (reference, float64 oracle, tolerance model, finite
  differences, every comparison, the diagnosis), warm;
* **ratio** = harness / bare;
* **peak**: the process's peak resident memory, and how many times the bytes of the
  parameters x steps kept it is (above the process's size before the case ran).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from gradparity.adapters import get_adapter
from gradparity.harness.memory import peak_mib, resident_mib, reuse_freed_memory
from gradparity.harness.runner import run_case
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem

STEPS = 5
INPUTS, CLASSES = 784, 10
FULL_WIDTHS = (128, 256, 512, 1024, 2048)
FULL_BATCHES = (32, 128, 256, 512)
QUICK_SIZES = ((128, 32), (1024, 256))
"""The default bench's scan: a small size and the target size (width 1024, batch 256)."""


def scan_case(width: int, batch: int) -> Case:
    return Case((INPUTS, width, width, CLASSES), "tanh", loss="softmax_cross_entropy",
                dtype="float32", batch_size=batch, optimizer="adam",
                hyperparameters={"lr": 1e-3}, steps=STEPS)


def measure(arguments: tuple[int, int, str]) -> dict[str, float]:
    """One size (run in its own process): bare and harness seconds, peak memory."""
    width, batch, device = arguments
    reuse_freed_memory()  # as the command line does
    case = scan_case(width, batch)
    problem = make_problem(case)
    adapters = [get_adapter(name, device) for name in ("torch", "jax")]
    adapters = [adapter for adapter in adapters if adapter.availability().available]
    for adapter in adapters:
        adapter.run(case, problem)  # warm: JAX compiles here
    started = time.perf_counter()
    for adapter in adapters:
        adapter.run(case, problem)
    bare = time.perf_counter() - started
    before = resident_mib()
    started = time.perf_counter()
    outcome = run_case(case, device=device)
    harness = time.perf_counter() - started
    peak = peak_mib()
    parameters = sum(value.size for value in problem.params.values())
    kept = parameters * STEPS * problem.params["W1"].itemsize / 2**20
    return {"bare": bare, "harness": harness, "peak": peak, "before": before,
            "kept": kept, "parameters": parameters, "passed": float(outcome.passed)}


def size_scan(sizes: Iterable[tuple[int, int]], device: str = "cpu") -> Iterator[str]:
    """The scan's table, line by line as measured: one row per (width, batch), each in a
    new process."""
    yield ("| width | batch | parameters | bare torch + jax (s) | harness (s) | ratio | "
           "peak (MiB) | peak over parameters x steps | verdict |")
    yield "|---|---|---|---|---|---|---|---|---|"
    context = multiprocessing.get_context("spawn")
    for width, batch in sizes:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            row = pool.submit(measure, (width, batch, device)).result()
        multiple = (row["peak"] - row["before"]) / row["kept"]
        yield (f"| {width} | {batch} | {row['parameters']:,.0f} | {row['bare']:.2f} | "
               f"{row['harness']:.2f} | {row['harness'] / row['bare']:.1f} | "
               f"{row['peak']:.0f} | {multiple:.0f}x of {row['kept']:.0f} MiB | "
               f"{'agree' if row['passed'] else 'DISAGREE'} |")
