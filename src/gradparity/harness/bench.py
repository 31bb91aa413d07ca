"""``python -m gradparity.harness.bench`` (``nox -s bench``): what verification costs, measured.

A benchmark, not a test: it prints tables and ratios and asserts nothing.

* **Per implementation** over the default matrix: time per case and cases per
  second of the bare framework work (``Adapter.run``: the forward, backward and
  optimizer steps, nothing of the harness), JAX compilations (distinct compiled
  programs) and their time, and the process's peak memory.
* **Harness overhead ratio** = wall time of ``run_case`` over the matrix / the
  time spent inside the computations whose results it compares (see
  ``_FrameworkClock``: the implementations' runs, and in the full run also the
  float64 oracle, the teacher-forced reruns and the finite-difference forward
  passes). Four rows: the pairwise comparison alone (``explain=False``, no finite
  differences) and the full run, each with ``tolerances="full"`` and
  ``"screened"``; the denominator of each row is broken down by computation.
* **Scaling**: time against the number of cases over a fixed set of
  architectures, and against model size (width, batch).
* **Size scan** (:mod:`gradparity.harness.size_scan`): per model size, the bare
  framework time, the harness time, their ratio and the peak memory; two sizes by
  default, the whole grid with ``--scan`` (``--device cuda`` on a GPU).
* **Stages** (``--stages CASES.toml``, :mod:`gradparity.harness.stages`): where one
  case's time and memory go.
* **Anchors**: verifying one MLP's gradient with gradparity versus
  ``torch.autograd.gradcheck`` (float64) and ``jax.test_util.check_grads``,
  on a new shape and on a repeated one.

The last line is ``overhead ratio: X.XX``: the pairwise comparison with screened
tolerances, whose denominator is only the three implementations' own runs.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from itertools import product
from pathlib import Path

import numpy as np

from gradparity.adapters import DEVICES, base, check_device, get_adapter
from gradparity.compare import ridders
from gradparity.compare.derivation import clear_caches, derived_cases
from gradparity.harness import runner
from gradparity.harness.audit import environment
from gradparity.harness.memory import freeze_survivors, peak_mib, reuse_freed_memory
from gradparity.harness.oracle import oracle_timing
from gradparity.harness.runner import run_case
from gradparity.harness.size_scan import FULL_BATCHES, FULL_WIDTHS, QUICK_SIZES, STEPS, size_scan
from gradparity.harness.stages import stage_table, timed_stages
from gradparity.reference.namespace import NAMESPACES
from gradparity.spec.case import Case
from gradparity.spec.case_files import load_cases
from gradparity.spec.data import make_problem
from gradparity.spec.matrix import default_cases


class _FrameworkClock:
    """Times the computations whose results a run compares, while active.

    * every ``Adapter.run`` (the three implementations, and the float64 oracle: the
      NumPy reference rerun in float64);
    * every teacher-forced rerun (``run_teacher_forced``: a framework's steps from
      the reference's parameters);
    * every forward pass of the finite-difference oracle
      (``compare.ridders.forward``: the loss at ``p +- h``).

    Everything else is harness: data generation, the tolerance model, the
    comparisons, the kink bookkeeping of the finite differences, the diagnosis.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._patched = [(base.Adapter, "run", lambda adapter, *a: adapter.name),
                         (runner, "run_teacher_forced",
                          lambda adapter, *a: f"{adapter.name} (teacher-forced)"),
                         (ridders, "forward", lambda *a: "finite differences")]
        self._originals = [getattr(owner, name) for owner, name, _ in self._patched]

    def __enter__(self) -> _FrameworkClock:
        clock = self

        def timed(original, label):
            def wrapper(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    key = label(*args)
                    clock.seconds[key] += time.perf_counter() - started
                    clock.calls[key] += 1
            return wrapper

        for (owner, name, label), original in zip(self._patched, self._originals, strict=True):
            setattr(owner, name, timed(original, label))
        return self

    def __exit__(self, *exc) -> None:
        for (owner, name, _), original in zip(self._patched, self._originals, strict=True):
            setattr(owner, name, original)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def _jax_compilations(cases: Sequence[Case]) -> str:
    """Programs compiled so far against the distinct program keys of ``cases``."""
    try:
        from gradparity.adapters import jax_adapter
    except ImportError:
        return "JAX: not installed"
    stats = jax_adapter.COMPILE_STATS
    runnable = [c for c in cases if jax_adapter.unsupported_reason(c) is None]
    keys = [jax_adapter.program_keys(c) for c in runnable]
    return (f"JAX: {stats.gradient_programs} gradient programs compiled for "
            f"{len({k[0] for k in keys})} distinct architectures x dtypes; "
            f"{stats.update_programs} update programs for {len({k[1] for k in keys})} "
            f"distinct optimizer structures x dtypes ({len(runnable)} cases); "
            f"{stats.seconds:.1f} s tracing and compiling (first calls)")



def per_implementation(cases: Sequence[Case]) -> list[str]:
    lines = ["| implementation | cases | time per case (ms) | cases/s |", "|---|---|---|---|"]
    for name in ("numpy", "torch", "jax"):
        adapter = get_adapter(name)
        if not adapter.availability().available:
            lines.append(f"| {name} | unavailable | | |")
            continue
        runnable = [c for c in cases if adapter.unsupported_reason(c) is None]
        problems = [make_problem(c) for c in runnable]
        started = time.perf_counter()
        for case, problem in zip(runnable, problems, strict=True):
            adapter.run(case, problem)
        seconds = time.perf_counter() - started
        lines.append(f"| {name} | {len(runnable)} | {1000 * seconds / len(runnable):.2f} | "
                     f"{len(runnable) / seconds:.0f} |")
    lines += ["", _jax_compilations(cases), "", f"peak memory {peak_mib():.0f} MiB"]
    return lines


def overhead(cases: Sequence[Case], **options) -> tuple[float, float, float]:
    """(wall seconds, compared-computation seconds, ratio) of ``run_case`` over ``cases``."""
    wall, clock = _timed_run(cases, **options)
    return wall, clock.total, wall / clock.total


def _timed_run(cases: Sequence[Case], **options) -> tuple[float, _FrameworkClock]:
    """The tolerance model's caches are emptied first: deriving it is harness work that
    every run does once per case. Each case starts as in a run, with the garbage before
    it collected and the survivors frozen (timed with the cases)."""
    clear_caches()
    with _FrameworkClock() as clock:
        started = time.perf_counter()
        for case in cases:
            freeze_survivors()  # between cases, as every run does (workers.run_outcome)
            run_case(case, **options)
        wall = time.perf_counter() - started
    return wall, clock


def _headline_parts(cases: Sequence[Case]) -> str:
    """The headline row's harness time by part, and the ratio with each part free: how far
    1.2 is from what the run must still do."""
    seconds: dict[str, float] = defaultdict(float)
    with timed_stages(seconds, defaultdict(float)):
        wall, clock = _timed_run(cases, tolerances="screened", explain=False,
                                 finite_differences=False)
    model, comparisons = seconds["tolerance model"], seconds["comparisons"]
    return (f"headline row again: harness time {wall - clock.total:.2f} s, of which the full "
            f"tolerance model {model:.2f} s and the comparisons with their floors "
            f"{comparisons:.2f} s; the ratio {wall / clock.total:.2f}, "
            f"{(wall - comparisons) / clock.total:.2f} were the comparisons free, "
            f"{(wall - comparisons - model) / clock.total:.2f} were the model free too")


def scaling_cases(count: int) -> list[Case]:
    """``count`` cases over a fixed set of four architectures, seeds varying."""
    architectures = [(3, 8, 2), (4, 16, 16, 3), (8, 32, 4), (4, 16, 16, 16, 3)]
    return [Case(architectures[i % 4], "tanh", loss="softmax_cross_entropy",
                 dtype=("float32", "float64")[i // 4 % 2], seed=i) for i in range(count)]


def anchors(width: int = 16, repeats: int = 20) -> list[str]:
    """gradparity against gradcheck and check_grads on the same MLP, float64."""
    lines = ["| verification of one MLP gradient (float64) | new shape (ms) | repeated (ms) |",
             "|---|---|---|"]
    case = Case((4, width, width, 3), "tanh", loss="softmax_cross_entropy", steps=0)

    def gradparity_torch(seed: int) -> None:
        run_case(replace(case, seed=seed), ("numpy", "torch"), explain=False,
                 finite_differences=False)

    def gradparity_all(seed: int) -> None:
        run_case(replace(case, seed=seed), ("numpy", "torch", "jax"), explain=False,
                 finite_differences=False)

    # gradcheck verifies one framework's gradient against an oracle: the like-for-like
    # gradparity check is torch against the NumPy reference
    timings: dict[str, tuple[float, float]] = {}
    timings["gradparity: torch vs the NumPy reference"] = _new_and_repeated(
        gradparity_torch, repeats)
    timings["gradparity: numpy + torch + jax, every pair"] = _new_and_repeated(
        gradparity_all, repeats)
    try:
        import torch

        def gradcheck_once(seed: int) -> None:
            generator = torch.Generator().manual_seed(seed)
            x = torch.randn(8, 4, dtype=torch.float64, generator=generator)
            y = torch.randint(0, 3, (8,), generator=generator)
            weights = [torch.randn(shape, dtype=torch.float64, requires_grad=True,
                                   generator=generator)
                       for shape in ((width, 4), (width,), (width, width), (width,), (3, width),
                                     (3,))]

            def loss(*w):
                a = torch.tanh(torch.nn.functional.linear(x, w[0], w[1]))
                a = torch.tanh(torch.nn.functional.linear(a, w[2], w[3]))
                return torch.nn.functional.cross_entropy(
                    torch.nn.functional.linear(a, w[4], w[5]), y)

            torch.autograd.gradcheck(loss, weights)

        timings["torch.autograd.gradcheck"] = _new_and_repeated(gradcheck_once, repeats)
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp
        from jax.test_util import check_grads

        def check_grads_once(seed: int) -> None:
            jax.config.update("jax_enable_x64", True)
            rng = np.random.default_rng(seed)
            x = jnp.asarray(rng.standard_normal((8, 4)))
            weights = [jnp.asarray(rng.standard_normal(s)) for s in
                       ((4, width), (width,), (width, width), (width,), (width, 3), (3,))]

            def loss(w):
                a = jnp.tanh(x @ w[0] + w[1])
                a = jnp.tanh(a @ w[2] + w[3])
                return jnp.mean(jax.nn.logsumexp(a @ w[4] + w[5], axis=1))

            check_grads(loss, (weights,), order=1, modes=("rev",))

        timings["jax.test_util.check_grads"] = _new_and_repeated(check_grads_once, repeats)
    except ImportError:
        pass
    for name, (new, repeated) in timings.items():
        lines.append(f"| {name} | {1000 * new:.1f} | {1000 * repeated:.2f} |")
    if "torch.autograd.gradcheck" in timings:
        gradcheck = timings["torch.autograd.gradcheck"][1]
        like = gradcheck / timings["gradparity: torch vs the NumPy reference"][1]
        every = gradcheck / timings["gradparity: numpy + torch + jax, every pair"][1]
        lines += ["", f"repeated shape: torch vs the reference is {like:.1f}x faster than "
                  f"gradcheck (target: >= 20x); all three frameworks {every:.1f}x"]
    return lines


def _new_and_repeated(function, repeats: int) -> tuple[float, float]:
    """Seconds of ``function(0)`` and the mean of ``function(1..repeats)``, each of the
    anchors alike with the garbage collector off, as ``timeit`` times: one full
    collection of this process's heap (every earlier table's objects) took 0.22 s and
    made one of 20 repeats a hundred times slower than the others."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        started = time.perf_counter()
        function(0)
        new = time.perf_counter() - started
        started = time.perf_counter()
        for seed in range(1, repeats + 1):
            function(seed)
        return new, (time.perf_counter() - started) / repeats
    finally:
        if enabled:
            gc.enable()


def model_size(widths: Sequence[int], batches: Sequence[int]) -> list[str]:
    lines = ["| width | batch | numpy (ms) | torch (ms) | jax (ms) |", "|---|---|---|---|---|"]
    for width in widths:
        for batch in batches:
            case = Case((64, width, width, 10), "tanh", loss="softmax_cross_entropy",
                        batch_size=batch, steps=2)
            problem = make_problem(case)
            cells = []
            for name in ("numpy", "torch", "jax"):
                adapter = get_adapter(name)
                if not adapter.availability().available:
                    cells.append("n/a")
                    continue
                adapter.run(case, problem)  # warm (compiles)
                started = time.perf_counter()
                adapter.run(case, problem)
                cells.append(f"{1000 * (time.perf_counter() - started):.1f}")
            lines.append(f"| {width} | {batch} | " + " | ".join(cells) + " |")
    return lines


def _namespaces(text: str) -> list[str]:
    names = text.split(",")
    unknown = [name for name in names if name not in NAMESPACES]
    if unknown:
        raise argparse.ArgumentTypeError(f"invalid value {unknown[0]!r}; allowed: "
                                         f"{', '.join(NAMESPACES)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradparity.harness.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true",
                        help="the full scaling table (up to 10,000 cases, width 2048, batch "
                        "1024); without it 100 and 1,000 cases, width and batch up to 512")
    parser.add_argument("--scan", action="store_true",
                        help="only the size scan, over widths "
                        f"{', '.join(map(str, FULL_WIDTHS))} and batches "
                        f"{', '.join(map(str, FULL_BATCHES))}")
    parser.add_argument("--device", choices=list(DEVICES), default="cpu",
                        help="where torch and JAX compute in the size scan (default: cpu)")
    parser.add_argument("--stages", type=Path, metavar="CASES.toml",
                        help="only the stage-by-stage time and memory of each case in this "
                        "file (e.g. examples/mnist_sized.toml)")
    parser.add_argument("--oracle", type=Path, metavar="CASES.toml",
                        help="only the float64 oracle and the tolerance model of each case "
                        "in this file, with NumPy and (where CuPy sees a GPU) with CuPy, or "
                        "with --namespaces")
    parser.add_argument("--namespaces", metavar="A,B", type=_namespaces,
                        help="with --oracle: these array namespaces (of "
                        f"{', '.join(NAMESPACES)}; NumPy first, the others are set beside it)")
    args = parser.parse_args(argv)
    device = check_device(args.device)
    reuse_freed_memory()  # as the command line does
    if args.oracle is not None:
        print("\n".join(oracle_timing(load_cases(args.oracle), args.namespaces)), flush=True)
        return 0
    if args.stages is not None:
        for case in load_cases(args.stages):
            print("\n".join(stage_table(case)), "\n", flush=True)
        return 0
    print("# gradparity benchmark\n")
    print(" | ".join(f"{k} {v}" for k, v in environment().items()), "\n")
    scan_title = (f"## Size scan on {device}: (784, width, width, 10), tanh, softmax "
                  f"cross-entropy, float32, Adam, {STEPS} steps; one process per size\n")
    if args.scan:
        print(scan_title)
        for line in size_scan(product(FULL_WIDTHS, FULL_BATCHES), device):
            print(line, flush=True)
        return 0
    cases = default_cases()
    print(f"## Per implementation: the default matrix ({len(cases)} cases), bare framework "
          "work\n")
    print("\n".join(per_implementation(cases)), "\n")
    print("## Scaling with the number of cases (pairwise, screened tolerances, 4 "
          "architectures)\n")
    print("| cases | wall (s) | cases/s | overhead ratio |\n|---|---|---|---|")
    for count in (100, 1000, 10000) if args.full else (100, 1000):
        wall, _, ratio = overhead(scaling_cases(count), explain=False, finite_differences=False,
                                  tolerances="screened")
        print(f"| {count} | {wall:.1f} | {count / wall:.0f} | {ratio:.2f} |")
    print("\n## Scaling with model size (one case, 2 steps, warm)\n")
    sizes = ((128, 512, 2048), (32, 256, 1024)) if args.full else ((128, 512), (32, 256))
    print("\n".join(model_size(*sizes)), "\n")
    print(scan_title)
    for line in size_scan(QUICK_SIZES, device):
        print(line, flush=True)
    print()
    print("## Anchors\n")
    print("\n".join(anchors()), "\n")
    print("## Harness overhead on the default matrix\n")
    print("| run | tolerances | wall (s) | compared computations (s) | of which | ratio |\n"
          "|---|---|---|---|---|---|")
    headline, screened_note = 0.0, ""
    for label, options in (("pairwise", {"explain": False, "finite_differences": False}),
                           ("full: oracles, finite differences, diagnosis", {})):
        for tolerances in ("full", "screened"):
            wall, clock = _timed_run(cases, tolerances=tolerances, **options)
            parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in
                              sorted(clock.seconds.items(), key=lambda item: -item[1]))
            print(f"| {label} | {tolerances} | {wall:.1f} | {clock.total:.1f} | {parts} | "
                  f"{wall / clock.total:.2f} |")
            if label == "pairwise" and tolerances == "screened":
                headline = wall / clock.total
                screened_note = (f"screened pairwise run: the full tolerance model was derived "
                                 f"for {derived_cases()} of {len(cases)} cases")
    print(f"\n{screened_note}")
    print(f"\n{_headline_parts(cases)}")
    print(f"\noverhead ratio: {headline:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
