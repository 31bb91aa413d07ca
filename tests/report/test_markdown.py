"""The fast pipe tables are byte-identical to tabulate's (DataFrame.to_markdown)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradparity.report.markdown import markdown_rows, markdown_table


def _tabulate(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


FRAMES = {
    "short headers": pd.DataFrame({"a": ["x", "yy"], "bbbbbb": ["1", ""]}),
    "long cells": pd.DataFrame({"quantity": ["params@10", "gradient"],
                                "torch vs numpy": ["3.2 eps (0.01 of 256 eps)", "-"]}),
    "numbers as text": pd.DataFrame({"n": ["1", "10", "1e-300"], "x": ["-0.5", "nan", "inf"]}),
    "unicode": pd.DataFrame({"ratio": ["≤ 1", "\u00d72"], "note": ["µ", "\u2013"]}),
    "one column": pd.DataFrame({"setting": ["a"]}),
    # not all one-line strings: handed to tabulate
    "floats": pd.DataFrame({"a": [1.5, np.nan], "b": [3, 4]}),
    "empty": pd.DataFrame({"a": []}),
    "multiline": pd.DataFrame({"a": ["x\ny"]}),
}


@pytest.mark.parametrize("name", FRAMES, ids=str)
def test_tables_equal_tabulate(name: str) -> None:
    assert markdown_table(FRAMES[name]) == _tabulate(FRAMES[name])


@pytest.mark.parametrize("seed", range(20))
def test_random_tables_equal_tabulate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    alphabet = list("abcXYZ019 .-+|*_()=")
    columns = ["".join(rng.choice(alphabet, rng.integers(1, 12))) for _ in range(4)]
    columns = [f"{c}{i}" for i, c in enumerate(columns)]
    frame = pd.DataFrame([["".join(rng.choice(alphabet, rng.integers(0, 15))) for _ in columns]
                          for _ in range(rng.integers(1, 6))], columns=columns)
    assert markdown_table(frame) == _tabulate(frame)


@pytest.mark.parametrize("name", FRAMES, ids=str)
def test_tables_from_rows_equal_tabulate(name: str) -> None:
    frame = FRAMES[name]
    rows = frame.to_numpy(dtype=object).tolist()
    assert markdown_rows(list(frame.columns), rows) == _tabulate(frame)


def test_the_parameter_table_is_the_table_of_its_rows_as_dicts() -> None:
    """Pairs that only some quantities have (the finite differences: gradients only)
    come where a table of the rows as dicts puts them, and "-" fills the gaps."""
    from gradparity.compare.metrics import ORACLE
    from gradparity.harness.runner import run_case
    from gradparity.report.document import _eps_cell, parameter_rows
    from gradparity.spec.case import Case
    from tests.conftest import require

    require("torch")
    outcome = run_case(Case((4, 8, 3), "tanh", dtype="float32", steps=2), ("numpy", "torch"))
    old = {}
    worst = {}
    for d in outcome.checks:
        key = (d.quantity, d.parameter)
        old.setdefault(key, {"quantity": key[0], "parameter": key[1]})[d.pair] = _eps_cell(d)
        worst[key] = max(worst.get(key, 0.0), d.max_abs)
    for key, row in old.items():
        row["max abs diff (any pair)"] = f"{worst[key]:.2e}"
    expected = markdown_table(pd.DataFrame(list(old.values())).fillna("-"))
    columns, rows = parameter_rows(outcome)
    assert columns.index("max abs diff (any pair)") < columns.index(
        f"{ORACLE} vs finite differences")
    assert markdown_rows(columns, rows) == expected
