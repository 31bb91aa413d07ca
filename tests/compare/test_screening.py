"""Cheaper bookkeeping must not change a single verdict.

Three shortcuts keep the harness cheap next to the frameworks (``nox -s bench``):
the batched comparisons of :mod:`gradparity.compare.batched`, the tolerance model's
floors, and screening (``tolerances="screened"``). Each is held here against the
slow path it replaces: ``compare_arrays`` one array at a time, the derived model,
and ``tolerances="full"``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gradparity.compare import batched
from gradparity.compare.batched import compare_many, worst_steps
from gradparity.compare.derivation import clear_caches, derive, floors
from gradparity.compare.metrics import compare_arrays
from gradparity.harness.runner import compare_pair, run_case
from gradparity.spec.case import Case
from gradparity.spec.matrix import default_cases
from tests.conftest import require

COMMON = {"case_id": "c", "dtype": "float64", "framework": "mine", "baseline_name": "theirs"}


def _same(left, right) -> bool:
    """Field-by-field equality of two rows, NaN equal to NaN."""
    for a, b in zip(dataclasses.astuple(left), dataclasses.astuple(right), strict=True):
        both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        if not (both_nan or a == b):
            return False
    return True


def _items(rng: np.random.Generator) -> list[tuple]:
    matrix = rng.standard_normal((4, 5))
    with_zeros = np.where(rng.random((3, 3)) < 0.4, 0.0, rng.standard_normal((3, 3)))
    tied = np.ones(6)
    return [
        (matrix + 1e-12 * rng.standard_normal((4, 5)), matrix, "gradient", "W1", 1e-10),
        (np.float64(2.0), np.float64(2.0 + 1e-15), "loss", "loss", 1e-14),  # 0-d
        (with_zeros + (with_zeros == 0) * 1e-300, with_zeros, "gradient", "b1", 1e-12),
        (with_zeros, with_zeros, "delta", "W2", 1e-12),  # identical, zeros included
        (tied + np.array([0, 1e-9, 0, 1e-9, 0, 0]), tied, "losses", "loss", 1e-12),  # tie
        (np.zeros(3), np.zeros(3), "gradient", "b2", 1e-12),  # 0/0
        (np.ones(3), np.zeros(3), "gradient", "b3", 1e-12),  # x/0
        (rng.standard_normal(7).astype(np.float32), rng.standard_normal(7), "params@1", "b1",
         1e-6),
    ]


@pytest.mark.parametrize("seed", range(5))
def test_compare_many_gives_the_rows_of_compare_arrays(seed: int) -> None:
    items = _items(np.random.default_rng(seed))
    batched = compare_many(items, **COMMON)
    for row, (value, base, quantity, parameter, tolerance) in zip(batched, items, strict=True):
        one = compare_arrays(value, base, quantity=quantity, parameter=parameter,
                             tolerance=tolerance, **COMMON)
        assert _same(row, one), (row, one)


@pytest.mark.parametrize("odd", ["missing", "shape", "empty", "nan", "inf"],
                         ids=lambda odd: odd)
def test_compare_many_explains_what_it_cannot_batch(odd: str) -> None:
    items = _items(np.random.default_rng(0))
    value = {"missing": None, "shape": np.zeros((5, 4)), "empty": np.zeros((0, 5)),
             "nan": np.full((4, 5), np.nan), "inf": np.full((4, 5), np.inf)}[odd]
    base = np.zeros((0, 5)) if odd == "empty" else items[0][1]
    items[0] = (value, base, *items[0][2:])
    batched = compare_many(items, **COMMON)
    for row, (value, base, quantity, parameter, tolerance) in zip(batched, items, strict=True):
        assert _same(row, compare_arrays(value, base, quantity=quantity, parameter=parameter,
                                         tolerance=tolerance, **COMMON))
    if odd != "empty":
        assert not batched[0].passed and batched[0].note
    assert batched[1].passed  # the other rows are still judged on their own numbers


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "array-by-array"])
@pytest.mark.parametrize("seed", range(5))
def test_worst_steps_finds_the_step_a_step_by_step_search_finds(seed: int, stacked: bool,
                                                               monkeypatch) -> None:
    if not stacked:  # the path of large networks, forced on small arrays
        monkeypatch.setattr(batched, "STACKED_ELEMENTS", 0)
    rng = np.random.default_rng(seed)
    shapes = {"W1": (3, 4), "b1": (4,), "W2": (4, 2), "b2": (2,)}
    theirs = [{n: rng.standard_normal(s) for n, s in shapes.items()} for _ in range(6)]
    mine = [{n: v * (1 + 1e-12 * rng.standard_normal(v.shape)) for n, v in step.items()}
            for step in theirs]
    names = tuple(shapes)
    allowed = rng.uniform(1e-13, 1e-11, size=(6, len(names)))

    def compare(value, base, quantity, parameter):
        step = int(quantity.split("@")[1])
        return compare_arrays(value, base, quantity=quantity, parameter=parameter,
                              tolerance=allowed[step - 1, names.index(parameter)], **COMMON)

    found = worst_steps(mine, theirs, names, lambda prefix, n, count: allowed, "params", compare)
    for name, step, row in found:
        assert row is None  # regular values: measured at once, compared later
        per_step = [compare(m[name], t[name], f"params@{s}", name)
                    for s, (m, t) in enumerate(zip(mine, theirs, strict=True), start=1)]
        expected = max(range(6), key=lambda i: per_step[i].headroom) + 1
        assert step == expected, name
    mine[2]["W2"] = None  # irregular: every step compared, the missing one explained
    found = dict((name, (step, row)) for name, step, row in
                 worst_steps(mine, theirs, names, lambda *a: allowed, "params", compare))
    step, row = found["W2"]
    assert step == 3 and "missing" in row.note
    mine[2]["W2"] = theirs[2]["W2"].copy()
    mine[4]["b1"] = np.where(np.arange(4) == 1, np.inf, theirs[4]["b1"])
    theirs[4]["b1"] = np.where(np.arange(4) == 1, np.inf, theirs[4]["b1"])
    # an Inf on both sides (Inf - Inf, no warning): every step compared, the step named
    found = dict((name, (step, row)) for name, step, row in
                 worst_steps(mine, theirs, names, lambda *a: allowed, "params", compare))
    step, row = found["b1"]
    assert step == 5 and row.worst_index == (1,) and not row.passed


def test_a_step_that_is_not_determined_is_never_the_worst_step() -> None:
    """Step 3 differs by 50% where its tolerance is 2 (rounding noise, not judged); step 2
    differs by 1e-12 against 1e-11: step 2 is the worst judged step, and it passes."""
    theirs = [{"W1": np.full((2, 2), 1.0 + s)} for s in range(4)]
    mine = [{"W1": v["W1"].copy()} for v in theirs]
    mine[1]["W1"][0, 0] += 2e-12 * theirs[1]["W1"][0, 0]
    mine[2]["W1"][1, 1] *= 1.5
    allowed = np.array([[1e-11], [1e-11], [2.0], [1e-11]])

    def compare(value, base, quantity, parameter):
        step = int(quantity.split("@")[1])
        return compare_arrays(value, base, quantity=quantity, parameter=parameter,
                              tolerance=allowed[step - 1, 0], **COMMON)

    ((name, step, row),) = worst_steps(mine, theirs, ("W1",), lambda *a: allowed, "params",
                                       compare)
    assert (name, step, row) == ("W1", 2, None)
    assert compare(mine[1]["W1"], theirs[1]["W1"], "params@2", "W1").passed
    undetermined = compare(mine[2]["W1"], theirs[2]["W1"], "params@3", "W1")
    assert undetermined.passed and not undetermined.determined
    # with a tolerance below its own size, step 3 is judged, and it is the worst by far
    allowed[2, 0] = 0.9
    ((_, step, _),) = worst_steps(mine, theirs, ("W1",), lambda *a: allowed, "params", compare)
    assert step == 3


def _every_check(case: Case, outcome) -> list[tuple[str, str]]:
    """Every (quantity, parameter) a pair of this case is judged on, every step."""
    reference = outcome.results["numpy"]
    checks = [("loss", "loss"), ("losses", "loss")]
    checks += [("gradient", name) for name in reference.gradients]
    checks += [("delta", name) for name in reference.deltas[0]]
    for step in range(1, case.steps + 1):
        checks += [(f"params@{step}", name) for name in reference.trajectory[0]]
        checks += [(f"state@{step}", slot) for slot in reference.states[0]]
    return checks


FLOOR_CASES = [c for c in default_cases() if c.optimizer != "sgd" or c.dtype == "float32"][::3]


@pytest.mark.parametrize("case", FLOOR_CASES, ids=lambda c: c.id)
def test_floors_never_exceed_the_derived_model(case: Case) -> None:
    outcome = run_case(case, ("numpy",), explain=False, finite_differences=False)
    low, full = floors(case), derive(case)
    assert low.floor and not full.floor
    for sides in [("torch", "numpy"), ("jax", "numpy")]:
        for quantity, parameter in _every_check(case, outcome):
            floor = low.normwise(quantity, parameter, sides)
            derived = full.normwise(quantity, parameter, sides)
            assert floor <= derived, (quantity, parameter, sides, floor, derived)
            if quantity in ("loss", "gradient", "delta"):  # no trajectory term: exact
                assert floor == derived, (quantity, parameter)


WORST_STEP = ("trajectory", "state")


@pytest.mark.parametrize("stride", [pytest.param(1, marks=pytest.mark.slow), 5],
                         ids=["every-case", "every-5th-case"])
def test_screened_verdicts_equal_full_verdicts_on_the_default_matrix(stride: int) -> None:
    require("torch")
    require("jax")
    derived_pairs = 0
    for case in default_cases()[::stride]:
        clear_caches()
        screened = run_case(case, explain=False, finite_differences=False,
                            tolerances="screened")
        full = run_case(case, explain=False, finite_differences=False)
        assert [d.passed for d in screened.checks] == [d.passed for d in full.checks]
        # the same rows; a worst-step row (trajectory, state) may pick another step, as
        # "worst" is relative to the tolerance each step is judged by
        assert [(d.framework, d.baseline, d.quantity, d.parameter) for d in screened.checks] == [
            (d.framework, d.baseline, d.quantity, d.parameter) for d in full.checks]
        assert [d.normwise for d in screened.checks if d.quantity not in WORST_STEP] == [
            d.normwise for d in full.checks if d.quantity not in WORST_STEP]
        low = floors(case)
        for a, b in zip(screened.checks, full.checks, strict=True):
            if a.quantity in WORST_STEP:
                continue
            assert a.tolerance <= b.tolerance
            if a.quantity.startswith("params@"):
                floor = low.normwise(a.quantity, a.parameter, (a.framework, a.baseline))
                derived_pairs += a.tolerance > floor
    assert derived_pairs > 0  # some pair exceeded a floor and was judged by the full model


def test_a_screened_failure_is_judged_by_the_full_model() -> None:
    """A wrong implementation fails the same checks, with the derived tolerances."""
    case = Case((4, 16, 16, 3), "tanh", loss="softmax_cross_entropy", optimizer="adam",
                hyperparameters={"lr": 0.01})
    outcome = run_case(case, ("numpy",), explain=False, finite_differences=False)
    reference = outcome.results["numpy"]
    wrong = [{n: v * (1 + 1e-9) if n == "W2" else v for n, v in step.items()}
             for step in reference.trajectory]
    broken = dataclasses.replace(reference, framework="broken", trajectory=tuple(wrong))
    screened = compare_pair(broken, reference, case, tolerances="screened")
    full = compare_pair(broken, reference, case)
    assert [d.passed for d in screened] == [d.passed for d in full]
    assert [d.tolerance for d in screened] == [d.tolerance for d in full]
    assert {(d.quantity, d.parameter) for d in screened if not d.passed} >= {
        ("trajectory", "W2")}
    right = compare_pair(dataclasses.replace(reference, framework="same"), reference, case,
                         tolerances="screened")
    low = floors(case)
    assert all(d.passed for d in right)
    assert [d.tolerance for d in right if d.quantity == "params@1"] == [
        low.normwise("params@1", d.parameter) for d in right if d.quantity == "params@1"]


def test_a_bad_tolerance_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerances: invalid value 'fast'; allowed: full, "
                                         "screened"):
        run_case(Case((3, 4, 2)), ("numpy",), tolerances="fast")


def test_a_missing_state_slot_fails_in_its_place() -> None:
    """State rows come in slot order; a slot one side lacks is a failed row there."""
    case = Case((3, 4, 2), "tanh", optimizer="adam", hyperparameters={"lr": 0.01}, steps=2)
    reference = run_case(case, ("numpy",), explain=False,
                         finite_differences=False).results["numpy"]
    lacking = tuple({k: v for k, v in state.items() if k != "first_moment/W2"}
                    for state in reference.states)
    broken = dataclasses.replace(reference, framework="broken", states=lacking)
    rows = [d for d in compare_pair(broken, reference, case) if d.quantity == "state"]
    assert [d.parameter for d in rows] == sorted(reference.states[0])
    missing = [d for d in rows if not d.passed]
    assert [d.parameter for d in missing] == ["first_moment/W2"]
    assert "exists in numpy but not in broken" in missing[0].note
