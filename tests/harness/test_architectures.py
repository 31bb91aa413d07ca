"""Cases beyond the MLP: sequences of layers in the case spec, their data, their runs in
every framework, running statistics compared after every step, the library defaults of
normalisation layers, and the diagnosis's localisation by layer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gradparity.adapters import get_adapter
from gradparity.compare.tolerances import FLOAT64_AGREEMENT_TARGET
from gradparity.harness.porting import library_case, port
from gradparity.harness.runner import compare_pair, run_case
from gradparity.spec.architectures import ARCHITECTURES
from gradparity.spec.case import Case
from gradparity.spec.case_files import load_cases
from gradparity.spec.data import make_problem, problem_from_arrays
from gradparity.spec.matrix import architecture_cases, default_cases
from tests.conftest import require

FLOAT64_CASES = [case for case in architecture_cases() if case.dtype == "float64"]


def _normwise(mine: np.ndarray, theirs: np.ndarray) -> float:
    scale = float(np.abs(theirs).max())
    return float(np.abs(mine - theirs).max()) / scale if scale else float(np.abs(mine).max())


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("case", FLOAT64_CASES, ids=str)
def test_float64_agrees_to_1e_12(case: Case, framework: str) -> None:
    """Gradients, every step's parameters and optimizer state, and the running statistics
    agree with the reference to FLOAT64_AGREEMENT_TARGET normwise."""
    require(framework)
    adapter = get_adapter(framework)
    reason = adapter.unsupported_reason(case)
    if reason is not None:
        pytest.skip(f"not expressible in {framework}: {reason}")
    problem = make_problem(case)
    mine, reference = adapter.run(case, problem), get_adapter("numpy").run(case, problem)
    pairs = [(mine.gradients, reference.gradients),
             *zip(mine.trajectory, reference.trajectory, strict=True),
             *zip(mine.states, reference.states, strict=True)]
    for ours, theirs in pairs:
        assert set(ours) == set(theirs)
        for name, value in theirs.items():
            assert _normwise(ours[name], value) <= FLOAT64_AGREEMENT_TARGET, (name, case.id)
    running = [name for name in reference.states[-1] if name.startswith("running/")]
    assert bool(running) == ("bn" in case.id)


def test_running_statistics_are_compared_after_every_step() -> None:
    """A BatchNorm whose momentum differs in one implementation is caught on its running
    statistics (the gradients and parameters agree: training mode uses batch statistics)."""
    require("torch")
    case = Case(architecture="cnn-bn", loss="softmax_cross_entropy", dtype="float64", steps=3)
    problem = make_problem(case)
    other = library_case(case, "jax")  # momentum 0.01, the biased variance
    torch_case = replace(other, layers=[{**spec, "running_var_unbiased": True,
                                         "variance": "centered"}
                                        if spec["type"] == "batch_norm" else spec
                                        for spec in other.layer_specs])
    torch_result = get_adapter("torch").run(torch_case, problem)
    reference = get_adapter("numpy").run(case, problem)
    checks = compare_pair(torch_result, reference, case)
    failing = {(d.quantity, d.parameter) for d in checks if not d.passed}
    assert failing and all(quantity == "state" for quantity, _ in failing)
    assert {parameter for _, parameter in failing} == {
        "running/bn1.running_mean", "running/bn1.running_var",
        "running/bn2.running_mean", "running/bn2.running_var"}


def test_every_architecture_is_in_the_default_matrix_in_both_dtypes_and_optimizers() -> None:
    ids = {case.id for case in default_cases()}
    for name in ARCHITECTURES:
        for suffix in ("float32_sgd", "float64_sgd", "float32_adam_lr0.01",
                       "float64_adam_lr0.01"):
            assert f"{name}_softmax-ce_{suffix}" in ids


def test_a_case_file_describes_layers(tmp_path: Path) -> None:
    path = tmp_path / "cases.toml"
    path.write_text('[[case]]\ninput_shape = [3, 8, 8]\n'
                    'layers = [{ type = "conv2d", channels = 4, padding = 1 }, '
                    '{ type = "relu" }, { type = "flatten" }, { type = "dense", features = 3 }]\n'
                    'loss = "softmax_cross_entropy"\n\n'
                    '[[case]]\narchitecture = "transformer"\nloss = "softmax_cross_entropy"\n')
    conv, transformer = load_cases(path)
    assert conv.id == "conv4p1-relu-flatten-dense3_in3x8x8_softmax-ce_float64_sgd"
    assert conv.network().stack.names == ["conv1", "relu1", "flatten1", "dense1"]
    assert transformer.id == "transformer_softmax-ce_float64_sgd"
    assert transformer.dataset == "tokens"
    for case in (conv, transformer):
        assert Case.from_dict(case.to_dict()) == case


@pytest.mark.parametrize(("fields", "message"), [
    ({"layers": [{"type": "conv3d"}], "input_shape": (3, 8, 8)},
     "Case.layers[0].type: invalid value 'conv3d'; allowed: dense, flatten, conv2d"),
    ({"layers": [{"type": "conv2d"}], "input_shape": (3, 8, 8)},
     "Case.layers[0]: layer 'conv2d': setting 'channels' is required"),
    ({"layers": [{"type": "dense", "features": 3}], "input_shape": ()},
     "Case.input_shape: invalid value (); allowed: the per-example input"),
    ({"layers": [{"type": "dense", "features": 3}], "input_shape": (4,),
      "layer_sizes": (4, 3)}, "Case.layer_sizes: invalid value (4, 3); allowed: () with layers"),
    ({"architecture": "cnn", "layers": [{"type": "dense", "features": 3}]},
     "Case.layers: invalid value"),
    ({"architecture": "cnm"}, "allowed: cnn, cnn-bn, mlp-bn, resmlp-ln, transformer (did you "
     "mean 'cnn'?)"),
    ({"architecture": "cnn", "options": {"dropout": 0.2}},
     "a dense MLP given by layer_sizes"),
])
def test_bad_layers_are_refused_naming_the_field(fields, message) -> None:
    with pytest.raises(ValueError) as error:
        Case(**{"loss": "softmax_cross_entropy", **fields})
    assert message in str(error.value)


def test_token_data_predict_the_next_token() -> None:
    case = Case(architecture="transformer", loss="softmax_cross_entropy")
    problem = make_problem(case)
    assert problem.x.dtype == problem.y.dtype == np.int64
    assert problem.x.shape == problem.y.shape == (case.batch_size, 5)
    np.testing.assert_array_equal(problem.x[:, 1:], problem.y[:, :-1])  # shifted by one
    assert problem.x.min() >= 0 and problem.x.max() < 7


def test_user_token_data_is_validated() -> None:
    case = Case(architecture="transformer", loss="softmax_cross_entropy")
    x = np.zeros((8, 5), dtype=int)
    with pytest.raises(ValueError, match=r"x: token id 7 at index \(0, 0\) is outside the range; "
                                         r"allowed: 0..6"):
        problem_from_arrays(case, np.full((8, 5), 7), x)
    with pytest.raises(ValueError, match=r"x: invalid dtype float64; allowed: integer token"):
        problem_from_arrays(case, x.astype(float), x)
    with pytest.raises(ValueError, match=r"y: invalid shape \(8,\); allowed: \(8, 5\) labels"):
        problem_from_arrays(case, x, np.zeros(8, dtype=int))
    assert problem_from_arrays(case, x, x).x.dtype == np.int64


def test_batch_norm_library_defaults_are_measured_and_explained() -> None:
    require("torch")
    require("jax")
    row = port(Case(architecture="mlp-bn", loss="softmax_cross_entropy", dtype="float64"))
    assert row.conventions == ("batch_norm_momentum", "batch_norm_running_variance",
                               "norm_variance_form")
    assert row.verdict == "explained"
    assert row.gradient < 1e-14 and row.after_last < 1e-14  # training uses batch statistics
    assert row.state > 0.1  # the running statistics are far apart after 10 steps


def test_the_diagnosis_localises_a_sequence_network_by_layer() -> None:
    require("torch")
    require("jax")
    from gradparity.check.layer_bugs import BY_KIND
    from gradparity.check.textbook import Textbook
    from gradparity.check.verifier import Verifier

    buggy = Textbook([BY_KIND["batch_norm_without_mean_terms"]])
    from gradparity.check.plugin import Plugin

    case = Case(architecture="mlp-bn", loss="softmax_cross_entropy", dtype="float64")
    report = Verifier().verify(Plugin("buggy", buggy.gradients, None, "buggy"), [case])
    findings = {f.parameter: f for f in report.failures()[0].findings}
    assert "dense1.W" in findings and "dense2.W" not in findings
    assert findings["dense1.W"].kind == "batch_norm_without_mean_terms"
    summary = findings["layers"].message
    assert ("the highest layer with a wrong gradient is dense1 (layer 1 of 4): the error "
            "enters the backward pass there, or in the input gradient dL/dx of the layer above "
            "it (bn1)") in summary
    assert "right above it: bn1.gamma, bn1.beta, dense2.W, dense2.b" in summary


LAYERS_TANH = [{"type": "dense", "features": 8},
               {"type": "residual", "layers": [{"type": "dense", "features": 8},
                                               {"type": "tanh"}]},
               {"type": "dense", "features": 3}]


def test_a_float32_case_of_layers_runs_its_float64_oracle() -> None:
    """The float64 rerun rebuilds the case with ``dataclasses.replace``, which passes its
    frozen layers back in: they were refused as not being tables, so every float32 case
    given by ``layers`` stopped at its oracle."""
    require("torch")
    case = Case(layers=LAYERS_TANH, input_shape=(16,), loss="softmax_cross_entropy",
                dtype="float32")
    wide = replace(case, dtype="float64")
    assert wide == Case(layers=LAYERS_TANH, input_shape=(16,), loss="softmax_cross_entropy",
                        dtype="float64")
    assert replace(wide, dtype="float32") == case
    outcome = run_case(case, ("numpy", "torch"), explain=False)
    assert not outcome.errors and outcome.passed
    assert [d.pair for d in outcome.oracle_differences if d.quantity == "gradient"
            ] == ["float64 oracle vs finite differences"]
