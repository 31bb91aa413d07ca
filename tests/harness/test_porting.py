"""Library-defaults mode: each library's defaults, and every difference explained or flagged."""

from __future__ import annotations

import pytest

from gradparity.adapters.conventions import BY_NAME
from gradparity.harness.porting import (
    LIBRARY_DEFAULTS,
    differing_conventions,
    library_case,
    port,
    porting_cases,
)
from gradparity.report.sections import porting_table
from gradparity.spec.case import Case
from tests.conftest import require

BASE = dict(layer_sizes=(4, 16, 16, 3), loss="softmax_cross_entropy", dtype="float64")


def test_every_library_default_names_a_catalogue_convention() -> None:
    for default in LIBRARY_DEFAULTS:
        assert default.convention in BY_NAME, default.convention
    covered = {name for case in porting_cases() for name in differing_conventions(case)}
    assert covered == {d.convention for d in LIBRARY_DEFAULTS}


def test_library_cases_carry_each_librarys_documented_defaults() -> None:
    gelu = Case(hidden_activation="gelu", **BASE)
    assert library_case(gelu, "torch").hidden_activation == ("gelu", "gelu")
    assert library_case(gelu, "jax").hidden_activation == ("gelu_tanh", "gelu_tanh")
    adagrad = Case(hidden_activation="tanh", optimizer="adagrad", hyperparameters={"lr": 0.1},
                   **BASE)
    jax_hp = library_case(adagrad, "jax").hparams
    assert (jax_hp["eps"], jax_hp["initial_accumulator_value"], jax_hp["eps_in_sqrt"]) == (
        1e-7, 0.1, True)
    torch_hp = library_case(adagrad, "torch").hparams
    assert (torch_hp["eps"], torch_hp["initial_accumulator_value"], torch_hp["eps_in_sqrt"]) == (
        1e-10, 0.0, False)
    with pytest.raises(ValueError, match=r"framework: invalid value 'mxnet'; allowed: torch, jax"):
        library_case(adagrad, "mxnet")


def test_a_control_agrees_and_a_default_difference_is_measured_and_explained() -> None:
    require("torch")
    require("jax")
    control = port(Case(hidden_activation="tanh", **BASE))
    assert control.verdict == "agree" and not control.conventions
    rmsprop = port(Case(hidden_activation="tanh", optimizer="rmsprop",
                        hyperparameters={"lr": 0.01}, **BASE))
    assert rmsprop.verdict == "explained"
    assert rmsprop.conventions == ("rmsprop_eps_placement_and_decay",)
    assert rmsprop.after_first > 1e-3  # visibly different after one step, not rounding
    assert rmsprop.gradient < 1e-14  # the gradients at the shared start agree
    table = porting_table([control, rmsprop])
    assert "`rmsprop_eps_placement_and_decay`" in table and "explained" in table


def test_a_difference_without_a_convention_is_unexplained(monkeypatch) -> None:
    require("torch")
    require("jax")
    import jax.numpy as jnp

    from gradparity.adapters import jax_adapter

    monkeypatch.setitem(jax_adapter.ACTIVATIONS, "tanh",
                        lambda z, o: jnp.tanh(z) * (1 + 1e-6))
    jax_adapter._compiled.cache_clear()
    try:
        row = port(Case(hidden_activation="tanh", **BASE))
    finally:
        jax_adapter._compiled.cache_clear()
    assert row.verdict == "unexplained: no catalogued convention differs"


def test_a_difference_the_reference_cannot_reproduce_is_unexplained(monkeypatch) -> None:
    require("torch")
    require("jax")
    import optax

    from gradparity.adapters import jax_adapter

    # optax's AdamW with its decay silently dropped: the catalogued default (1e-4) no
    # longer explains the gap to torch
    monkeypatch.setitem(jax_adapter.OPTIMIZERS, "adamw", lambda hp, lr: optax.adam(
        learning_rate=lr, b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"]))
    jax_adapter._compiled.cache_clear()
    try:
        row = port(Case(hidden_activation="tanh", optimizer="adamw",
                        hyperparameters={"lr": 0.01}, **BASE))
    finally:
        jax_adapter._compiled.cache_clear()
    assert row.conventions == ("adamw_default_weight_decay",)
    assert row.verdict == ("unexplained: the reference in the jax convention does not "
                           "reproduce it")
