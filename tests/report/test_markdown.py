"""The fast pipe tables are byte-identical to tabulate's (DataFrame.to_markdown)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradparity.report.markdown import markdown_table


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
