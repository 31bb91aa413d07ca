"""JAX compiles the gradient program once per architecture and dtype and the update
program once per optimizer structure and dtype, not once per case."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest

from gradparity.harness.runner import run_case
from gradparity.spec.case import Case
from tests.conftest import require


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


def _update_cases() -> list[Case]:
    """Four optimizer structures; within each only injected values (lr, eps, momentum,
    weight decay) change, over two dtypes and two seeds."""
    settings = [("sgd", {"lr": lr}) for lr in (0.1, 0.05, 0.01)]
    settings += [("sgd", {"lr": lr, "momentum": m}) for lr, m in ((0.1, 0.5), (0.05, 0.9))]
    settings += [("adam", {"lr": lr, "weight_decay": wd}) for lr in (0.01, 0.001)
                 for wd in (0.01, 0.1)]
    settings += [("adam", {"lr": 0.01, "weight_decay": 0.01, "eps": 1e-6})]
    settings += [("adamw", {"lr": lr, "weight_decay": wd}) for lr in (0.01, 0.001)
                 for wd in (0.0, 0.1)]
    return [Case((3, 5, 2), "tanh", dtype=dtype, optimizer=name, hyperparameters=hp, seed=seed,
                 steps=2)
            for (name, hp), dtype, seed in product(settings, ("float32", "float64"), range(2))]


def test_update_compilations_equal_optimizer_structures_times_dtypes() -> None:
    require("jax")
    from gradparity.adapters import jax_adapter

    jax_adapter._compiled.cache_clear()
    before = jax_adapter.COMPILE_STATS.update_programs
    cases = _update_cases()
    for case in cases:
        assert run_case(case, ("numpy", "jax"), explain=False,
                        finite_differences=False).passed
    compiled = jax_adapter.COMPILE_STATS.update_programs - before
    assert len(cases) == 56
    assert compiled == 4 * 2  # structures x dtypes, not 56
    assert len({jax_adapter.program_keys(c)[1] for c in cases}) == compiled


MIXED = [
    Case((4, 6, 3), "relu", loss=loss, dtype=dtype, seed=seed,
         optimizer="sgd", hyperparameters={"lr": lr}, options=options, steps=2)
    for dtype, seed, lr in product(("float32", "float64"), range(2), (0.1, 0.05))
    for loss, options in (("softmax_cross_entropy", {}),
                          ("softmax_cross_entropy", {"dropout": 0.5}),
                          ("softmax_cross_entropy_smoothed", {"label_smoothing": 0.2}))
] + [Case((4, 6, 3), "leaky_relu", loss="softmax_cross_entropy", seed=seed,
          options={"negative_slope": slope}, steps=2)
     for seed, slope in product(range(2), (0.2, 0.3))]


def test_compilations_equal_the_distinct_program_keys() -> None:
    """Options that change the math or the input structure compile; values do not."""
    require("jax")
    from gradparity.adapters import jax_adapter

    jax_adapter._compiled.cache_clear()
    before = (jax_adapter.COMPILE_STATS.gradient_programs,
              jax_adapter.COMPILE_STATS.update_programs)
    for case in MIXED:
        assert run_case(case, ("numpy", "jax"), explain=False,
                        finite_differences=False).passed
    gradient = jax_adapter.COMPILE_STATS.gradient_programs - before[0]
    update = jax_adapter.COMPILE_STATS.update_programs - before[1]
    keys = [jax_adapter.program_keys(c) for c in MIXED]
    # 2 dtypes x (plain, dropout, smoothed) + 2 leaky slopes (float64): 8 of 28 cases
    assert gradient == len({k[0] for k in keys}) == 8
    assert update == len({k[1] for k in keys}) == 2  # sgd: float32, float64


INJECTION_CASES = [
    Case((4, 8, 3), "tanh", loss="softmax_cross_entropy", dtype=dtype, optimizer=name,
         hyperparameters=hp, options=options, steps=4)
    for dtype in ("float32", "float64")
    for name, hp, options in [
        ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}, {}),
        ("sgd", {"lr": 0.05, "clip_value": 0.01}, {}),
        ("sgd", {"lr": 0.05, "clip_norm": 0.05, "clip_norm_eps": 0.0}, {}),
        ("adam", {"lr": 0.01, "weight_decay": 0.1}, {}),
        ("adamw", {"lr": 0.01, "weight_decay": 0.3}, {}),
        ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.5},
         {"lr_in_momentum": True}),
        ("adagrad", {"lr": 0.1, "initial_accumulator_value": 0.1, "eps_in_sqrt": True}, {}),
        ("adam", {"lr": 0.01}, {"schedule": "cosine"}),
    ]
]


@pytest.mark.parametrize("case", INJECTION_CASES, ids=lambda c: c.id)
def test_injected_hyperparameters_give_the_numbers_of_constants(case: Case) -> None:
    """The adapter's shared update (values in optax state) against the same optax
    optimizer built with every hyperparameter a constant: bitwise equal."""
    require("jax")
    import jax
    import optax

    from gradparity.adapters import base, get_adapter
    from gradparity.adapters.jax_optax import _schedule, injected_values, optax_transformation
    from gradparity.spec.data import make_problem

    adapter, problem = get_adapter("jax"), make_problem(case)
    injected = adapter.run(case, problem)
    values = injected_values(case)
    hp = {**case.hparams, **{k: v for k, v in values.items() if k != "learning_rate"}}
    lr = values["learning_rate"]
    if lr is None:
        lr = _schedule(case.hparams["lr"], case.all_options, case.steps)
    constant = optax_transformation(case.optimizer, hp, lr)
    # white box: the same session, its update swapped for the all-constants one
    session = adapter.start(case, problem)
    session._opt_state = constant.init(session._params)

    def apply(params, grads, state):
        updates, state = constant.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    session._apply = jax.jit(apply)
    reference = base.run_session("jax", case, session)
    for mine, theirs in zip(injected.trajectory, reference.trajectory, strict=True):
        for name in theirs:
            np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    for mine, theirs in zip(injected.states, reference.states, strict=True):
        assert mine.keys() == theirs.keys()
        for slot in theirs:
            np.testing.assert_array_equal(mine[slot], theirs[slot], err_msg=slot)
