"""gradparity check: the reference passes, every mutant is caught and diagnosed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradparity.check.layer_bugs import LayerBackwardBug
from gradparity.check.mutants import CATALOGUE, Mutant
from gradparity.check.plugin import load_plugin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("stride", [pytest.param(1, marks=pytest.mark.slow), 3],
                         ids=["every-case", "every-3rd-mlp"])
def test_the_textbook_passes_every_default_case(verifier, check_matrix, stride: int) -> None:
    # the fast suite takes every 3rd MLP case, the MLPs with dropout (the contract has no
    # masks: they are not handled) and every other case (architectures, XOR)
    mlp = [c for c in check_matrix if not c.is_sequence and c.dataset != "xor"]
    cases = [c for c in check_matrix
             if c not in mlp or c in mlp[::stride] or c.option("dropout")]
    report = verifier.verify(load_plugin("gradparity.check.textbook:gradients"), cases)
    assert report.exit_code == 0, [c.case.id for c in report.failures()]
    with_dropout = [c for c in cases if c.option("dropout")]
    assert with_dropout
    assert len(report.checked) == len(cases) - len(with_dropout)
    # the contract carries no dropout mask: those cases are skipped with the reason
    skipped = [c for c in report.cases if c.case.option("dropout")]
    assert {c.status for c in skipped} == {"not handled"}
    assert all("dropout mask" in c.message for c in skipped)
    # every baseline took part: numpy, torch, jax and finite differences
    baselines = {d.baseline for c in report.cases for d in c.differences}
    assert baselines == {"numpy", "torch", "jax", "finite differences"}


FAST_COMPOUND = ("xor_blog_three_mistakes", "missing_derivative_layers_1_and_2",
                 "flipped_kernel_and_pool_everywhere")
"""Compound mutants in the fast suite (the MLP, the layer and the XOR forms of the
combination search); the others take the same path and run in the slow session."""


def _mutant_param(mutant: Mutant):
    slow = mutant.compound and mutant.name not in FAST_COMPOUND
    return pytest.param(mutant, id=mutant.name, marks=[pytest.mark.slow] if slow else [])


def _where_it_acts(mutant: Mutant, cases: list) -> list:
    """The cases a mutant's backward bugs can act on: a layer bug only on networks of
    layers, the MLP's bugs (and update bugs) only on MLPs; elsewhere it is the reference
    and can only pass."""
    layer = [isinstance(bug, LayerBackwardBug) for bug in mutant.implementation.bugs]
    if layer and all(layer):
        return [c for c in cases if c.is_sequence]
    if not any(layer):
        return [c for c in cases if not c.is_sequence]
    return cases


@pytest.mark.parametrize("mutant", [_mutant_param(m) for m in CATALOGUE])
def test_every_mutant_is_caught_and_diagnosed(mutant: Mutant, verifier, check_matrix) -> None:
    report = verifier.verify(mutant.plugin(), _where_it_acts(mutant, check_matrix))
    assert report.exit_code == 1, f"{mutant.name} was not caught"
    findings = [f for c in report.failures() for f in c.findings]
    matching = [f for f in findings if mutant.expected_kind in f.kind.split("|")]
    seen = {str(f) for f in findings}
    assert matching, f"{mutant.name}: no {mutant.expected_kind} finding in {seen}"
    if mutant.compound:  # every bug of the set is named, in one finding
        assert any(all(name in str(f) for name in mutant.expected_names) for f in matching), (
            f"{mutant.name}: the diagnosis does not name all of {mutant.expected_names}: "
            f"{matching[0]}")
    else:
        assert any(name in str(f) for f in matching for name in mutant.expected_names), (
            f"{mutant.name}: the diagnosis does not name {mutant.expected_names}: "
            f"{matching[0]}")


def test_the_catalogue_has_compound_mutants() -> None:
    compound = [m for m in CATALOGUE if m.compound]
    assert len(compound) >= 8
    assert all(len(m.implementation.bugs) >= 2 for m in compound)


def test_catalogue_has_at_least_twenty_distinct_mutants() -> None:
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE) >= 20


LAYER_CASES = {
    "missing_first_layer_derivative": ({"W1", "b1"}, "only layer 1 is wrong"),
    "missing_second_layer_derivative": ({"W1", "b1", "W2", "b2"},
                                        "enters the backward pass at layer 2"),
}


@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_a_wrong_hidden_layer_is_localised(name: str, verifier) -> None:
    from gradparity.check.mutants import BY_NAME
    from gradparity.spec.case import Case

    wrong, localisation = LAYER_CASES[name]
    case = Case((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy")
    check = verifier.check_case(BY_NAME[name].plugin(), case)
    failed = {d.parameter for d in check.differences
              if not d.passed and d.quantity == "gradient" and d.baseline == "torch"}
    assert failed == wrong
    assert any(localisation in str(f) for f in check.findings), [str(f) for f in check.findings]


TUTORIAL = {
    "correct": None,
    "output_delta_without_derivative": "missing the sigmoid derivative of the output activation",
    "hidden_delta_without_derivative": "missing the sigmoid derivative of hidden layer 1",
    "mean_without_two_over_n": "2/n of the mean",
    "reinitialised_every_call": "ignores the params it is given",
}


@pytest.mark.parametrize("variant", sorted(TUTORIAL))
def test_tutorial_mistakes_are_flagged_separately(variant: str, verifier, check_matrix) -> None:
    plugin = load_plugin(f"{EXAMPLES / 'xor_tutorial.py'}:{variant}")
    report = verifier.verify(plugin, check_matrix)
    # the tutorial only implements the XOR network; everything else is "not handled"
    assert {c.case.dataset for c in report.checked} == {"xor"}
    expected = TUTORIAL[variant]
    if expected is None:
        assert report.exit_code == 0
        return
    assert report.exit_code == 1
    for check in report.checked:
        findings = " / ".join(str(f) for f in check.findings)
        assert expected in findings, findings
        # and not another tutorial mistake's diagnosis
        others = [t for v, t in TUTORIAL.items() if t and v != variant]
        assert not any(other in findings for other in others), findings


def test_the_tutorials_three_mistakes_at_once_are_named_together(verifier,
                                                                   check_matrix) -> None:
    plugin = load_plugin(f"{EXAMPLES / 'xor_tutorial.py'}:all_three_mistakes")
    report = verifier.verify(plugin, check_matrix)
    assert report.exit_code == 1 and len(report.checked) == 2
    for check in report.checked:
        compound = [f for f in check.findings if f.kind.startswith("compound")]
        assert compound and all(f.parameter in ("W1", "b1", "W2", "b2") for f in compound)
        for text in (TUTORIAL["output_delta_without_derivative"],
                     TUTORIAL["hidden_delta_without_derivative"],
                     TUTORIAL["mean_without_two_over_n"]):
            assert text in str(compound[0]), str(compound[0])


@pytest.mark.parametrize("returned, expected", [
    # a float32 value on the way: torch.tensor of a Python float, np.float32
    (lambda loss: np.float32(loss), "it is the float64 loss rounded to float32"),
    # a loss off by more than float32 rounding: a forward-pass or reduction mistake
    (lambda loss: loss * (1 + 1e-5), "check the forward pass / loss reduction"),
], ids=["rounded-to-float32", "another-loss"])
def test_a_wrong_loss_beside_right_gradients_says_what_it_looks_like(returned, expected,
                                                                     verifier) -> None:
    from gradparity.check.plugin import Plugin
    from gradparity.check.textbook import Textbook
    from gradparity.spec.case import Case

    textbook = Textbook()

    def gradients(params, x, y, case):
        loss, grads = textbook.gradients(params, x, y, case)
        return returned(loss), grads

    case = Case((4, 8, 3), "tanh", loss="softmax_cross_entropy", dtype="float64", steps=1)
    check = verifier.check_case(Plugin("loss", gradients, None), case)
    assert check.status == "fail"
    messages = [f.message for f in check.findings if f.kind == "loss"]
    assert len(messages) == 1 and expected in messages[0]
