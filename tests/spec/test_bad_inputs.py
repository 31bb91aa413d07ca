"""Bad input anywhere a user can type something: each error names the field, the bad value
and what is allowed (case-field errors live in test_case.py; these are the others)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradparity.cli.main import main
from gradparity.spec.case import Case
from gradparity.spec.case_files import ConfigError, load_cases
from gradparity.spec.data import problem_from_arrays
from gradparity.spec.matrix import select_cases
from tests.conftest import require

CLASSIFIER = Case((4, 8, 3), "tanh", loss="softmax_cross_entropy")
REGRESSOR = Case((4, 8, 2), "tanh")
BINARY = Case((4, 8, 2), "tanh", loss="binary_cross_entropy_with_logits")
SOFT = Case((4, 8, 3), "tanh", loss="softmax_cross_entropy_soft")
X = np.random.default_rng(0).standard_normal((8, 4))

DATA = [
    ("label-outside", CLASSIFIER, X, np.array([0, 1, 2, 3, 0, 1, 2, 0]),
     "y: label 3 at index 3 is outside the class range; allowed: 0..2 (3 outputs)"),
    ("negative-label", CLASSIFIER, X, np.array([0, -1, 2, 1, 0, 1, 2, 0]),
     "y: label -1 at index 1 is outside the class range; allowed: 0..2"),
    ("float-labels", CLASSIFIER, X, np.zeros(8),
     "y: invalid dtype float64; allowed: integer class labels for loss "
     "'softmax_cross_entropy' (y holds whole numbers stored as floats: pass y.astype(int))"),
    ("fractional-labels", CLASSIFIER, X, np.full(8, 0.5),
     "allowed: integer class labels for loss 'softmax_cross_entropy'\n"),
    ("one-hot-labels", CLASSIFIER, X, np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]],
     "y: invalid dtype float64; allowed: integer class labels for loss "
     "'softmax_cross_entropy' (y holds one-hot rows: pass y.argmax(axis=-1), or use the loss "
     "'softmax_cross_entropy_soft' for rows of probabilities)"),
    ("labels-wrong-shape", CLASSIFIER, X, np.zeros((8, 3), dtype=int),
     "y: invalid shape (8, 3); allowed: (8,) labels"),
    ("targets-wrong-shape", REGRESSOR, X, np.zeros((8, 3)),
     "y: invalid shape (8, 3); allowed: 8 rows of 2 targets for loss 'mse'"),
    ("batch-mismatch", REGRESSOR, X[:5], np.zeros((8, 2)),
     "x: invalid shape (5, 4); allowed: batch_size 8 x batches 1 = 8 rows of 4 inputs"),
    ("inputs-wrong-width", REGRESSOR, np.zeros((8, 3)), np.zeros((8, 2)),
     "x: invalid shape (8, 3); allowed:"),
    ("nan-in-x", REGRESSOR, np.where(np.eye(8, 4) > 0, np.nan, X), np.zeros((8, 2)),
     "x: 4 non-finite values (first at (0, 0)); allowed: finite numbers"),
    ("inf-in-y", REGRESSOR, X, np.full((8, 2), np.inf),
     "y: 16 non-finite values (first at (0, 0)); allowed: finite numbers"),
    ("text-x", REGRESSOR, "not an array", np.zeros((8, 2)),
     "x: not a numeric array (str); allowed:"),
    ("binary-not-01", BINARY, X, np.full((8, 2), 0.5),
     "y: invalid values for loss 'binary_cross_entropy_with_logits'; allowed: 0 or 1"),
    ("probabilities-not-summing", SOFT, X, np.full((8, 3), 0.5),
     "allowed: non-negative rows that sum to 1"),
]


@pytest.mark.parametrize(("case", "x", "y", "message"), [d[1:] for d in DATA],
                         ids=[d[0] for d in DATA])
def test_bad_user_data_is_refused_with_the_reason(case, x, y, message) -> None:
    with pytest.raises(ValueError) as error:
        problem_from_arrays(case, x, y)
    assert message in str(error.value) + "\n"  # "\n" in a message: nothing follows


def test_bad_user_weights_are_refused_with_the_reason() -> None:
    y = np.zeros((8, 2))
    with pytest.raises(ValueError, match=r"params: keys \['W1'\]; allowed: exactly W1, b1, W2, "
                                         r"b2 \(missing \['W2', 'b1', 'b2'\], unknown \[\]\)"):
        problem_from_arrays(REGRESSOR, X, y, params={"W1": np.zeros((4, 8))})
    good = problem_from_arrays(REGRESSOR, X, y).params
    with pytest.raises(ValueError, match=r"params\['W1'\]: invalid shape \(8, 4\); allowed: "
                                         r"shape \(4, 8\)"):
        problem_from_arrays(REGRESSOR, X, y, params={**good, "W1": np.zeros((8, 4))})


def test_valid_user_data_runs_and_is_rounded_once_to_the_case_dtype() -> None:
    from gradparity.harness.runner import run_case

    case = Case((4, 8, 3), "tanh", loss="softmax_cross_entropy", dtype="float32")
    problem = problem_from_arrays(case, X, np.array([0, 1, 2, 0, 1, 2, 0, 1]))
    assert problem.x.dtype == np.float32 and problem.y.dtype == np.int64
    np.testing.assert_array_equal(problem.x, X.astype(np.float32))
    outcome = run_case(case, ("numpy",), problem=problem)
    assert outcome.passed
    from gradparity.reference import forward

    expected = forward(problem.params, problem.x, problem.y, case.activations, case.loss).loss
    assert outcome.results["numpy"].loss == float(expected)  # the user's data was used


def test_enormous_sizes_are_refused_up_front_with_the_estimate() -> None:
    with pytest.raises(ValueError, match=r"Case.layer_sizes: invalid value \(100000, 100000, "
                                         r"10\); allowed: a case that fits in 8 GiB; this one "
                                         r"needs about 10283.0 GiB"):
        Case((100000, 100000, 10))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe[[case]]\n", "not UTF-8 text (byte 0: b'\\xff'); allowed: a UTF-8 TOML"),
        (b"[[case]\nlayer_sizes = [", "not valid TOML"),
        (b"[defaults]\nlayer_sizes = [3, 4, 2]\n", "no [[case]] table; add at least one"),
        (b"[[case]]\nlayer_sizes = [3, 4, 2]\noptions = { warmup = 2 }\n",
         "options: Case.options: invalid value 'warmup'; allowed: negative_slope"),
        (b"[[case]]\nlayer_sizes = [3, 4, 2]\nhyperparameters = { lr = \"fast\" }\n",
         "hyperparameters['lr']: invalid value 'fast'; allowed: a finite real number"),
    ],
    ids=["non-utf8", "bad-toml", "empty-matrix", "unknown-option", "non-numeric-lr"],
)
def test_bad_case_files_name_file_and_problem(tmp_path: Path, content: bytes,
                                              message: str) -> None:
    path = tmp_path / "cases.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_cases(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_an_unreadable_case_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory; allowed: a TOML case file"):
        load_cases(tmp_path)
    with pytest.raises(ConfigError, match="file not found"):
        load_cases(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--seeds", "-1"], "--seeds: invalid value -1; allowed: an integer >= 0"),
        (["run", "--case-timeout", "-5"],
         "--case-timeout: invalid value -5.0; allowed: a number of seconds >= 0"),
        (["run", "--frameworks", "numpy,mxnet"],
         "frameworks: invalid value 'mxnet'; allowed: numpy, torch, jax"),
        (["check", "no_such_module_anywhere:gradients"], "no_such_module_anywhere"),
    ],
    ids=["negative-seeds", "negative-timeout", "unknown-framework", "missing-plugin"],
)
def test_bad_cli_flags_exit_2_with_the_reason(argv, message, capsys, tmp_path) -> None:
    code = main([*argv, *(["--out", str(tmp_path)] if argv[0] == "run" else [])])
    assert code == 2
    assert message in capsys.readouterr().err


def test_an_empty_selection_names_the_filter() -> None:
    with pytest.raises(ValueError, match="no case id is 'no-such-case-id'"):
        select_cases(case="no-such-case-id")
    with pytest.raises(ValueError, match=r"dtype: invalid value 'float16'; allowed: float32, "
                                         r"float64"):
        select_cases(dtype="float16")


def test_user_data_gets_tolerances_derived_from_that_data() -> None:
    """The tolerance model is evaluated on the arrays the case ran on, not on the
    generated ones (conditioning and step sizes depend on the data)."""
    require("torch")
    from gradparity.compare.derivation import derive, floors
    from gradparity.harness.runner import run_case

    case = Case((4, 8, 3), "tanh", loss="softmax_cross_entropy", dtype="float32", steps=3)
    rng = np.random.default_rng(7)
    x = 30.0 * rng.standard_normal((8, 4))  # far from the generated data's scale
    problem = problem_from_arrays(case, x, np.array([0, 1, 2, 0, 1, 2, 0, 1]))
    mine, generated = derive(case, problem), derive(case)
    assert mine.kappa != generated.kappa  # the data matters to the model
    assert floors(case, problem).kappa == mine.kappa
    outcome = run_case(case, ("numpy", "torch"), problem=problem, explain=False,
                       finite_differences=False)
    for check in outcome.differences:
        if check.quantity in ("gradient", "params@1"):
            sides = (check.framework, check.baseline)
            assert check.tolerance == mine.normwise(check.quantity, check.parameter, sides)


def test_every_problem_of_a_case_is_reported_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "typos.toml"
    path.write_text('[[case]]\nlayer_sizes = [4, 8, 3]\nhidden_activation = "tahn"\n'
                    'loss = "softmax_crossentropy"\noptimizer = "adma"\n'
                    'dtype = ["float32", "float64"]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_cases(path)
    problems = error.value.problems
    assert len(problems) == 3  # once each, not once per dtype
    assert problems[0].startswith(f"{path}:3: case[0].hidden_activation:")
    assert problems[0].endswith("(did you mean 'tanh'?)")
    assert problems[1].startswith(f"{path}:4: case[0].loss:")
    assert problems[1].endswith("(did you mean 'softmax_cross_entropy'?)")
    assert problems[2].endswith("(did you mean 'adam'?)")
