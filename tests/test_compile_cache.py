"""JAX compiles the gradient program once per architecture and dtype, not once per case."""

from __future__ import annotations

from itertools import product

from conftest import require
from gradparity.case import Case
from gradparity.runner import run_case


def test_gradient_compilations_equal_architectures_times_dtypes() -> None:
    require("jax")
    from gradparity.adapters import jax_adapter

    jax_adapter._compiled.cache_clear()
    before = jax_adapter.COMPILE_STATS.gradient_programs
    architectures = [(3, 5, 2), (4, 7, 7, 3)]
    optimizers = [("sgd", {"lr": 0.1}), ("adam", {"lr": 0.01}),
                  ("sgd", {"lr": 0.05, "momentum": 0.9}), ("rmsprop", {"lr": 0.01})]
    cases = [Case(sizes, "tanh", dtype=dtype, optimizer=name, hyperparameters=hp, seed=seed,
                  steps=2)
             for sizes, dtype, (name, hp), seed in product(architectures,
                                                          ("float32", "float64"), optimizers,
                                                          range(3))]
    for case in cases:
        assert run_case(case, ("numpy", "jax"), explain=False,
                        finite_differences=False).passed
    compiled = jax_adapter.COMPILE_STATS.gradient_programs - before
    assert len(cases) == 48
    assert compiled == len(architectures) * 2  # 4, not 48
