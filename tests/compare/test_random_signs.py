"""Blocked random-sign perturbations against the textbook whole-array expressions: the
same draws, the same bits, and the generator left in the same place."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.compare import random_signs
from gradparity.reference.blocks import BLOCK_ENTRIES

SHAPES = [(), (0, 4), (7,), (301, 257), (3, BLOCK_ENTRIES)]  # 0-d, empty, one block, several


def _values(shape, dtype="float64", layout="C"):
    rng = np.random.default_rng(11)
    values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, shape)).astype(dtype)
    if values.size:
        values.reshape(-1)[0] = 0.0
    return values.T if layout == "F" else values


def _signs(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["C", "F"])
def test_scaled_is_the_textbook_product(shape, dtype, layout):
    values = _values(shape, dtype, layout)
    mine_rng, textbook_rng = np.random.default_rng(5), np.random.default_rng(5)
    mine = random_signs.scaled(values, 1e-7, mine_rng)
    textbook = values * (1 + 1e-7 * _signs(textbook_rng, values.shape))
    assert mine.dtype == textbook.dtype == np.float64 and mine.shape == textbook.shape
    np.testing.assert_array_equal(mine, textbook, strict=True)
    assert mine_rng.random() == textbook_rng.random()  # the same draws were taken


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["C", "F"])
def test_moved_is_the_textbook_sum(shape, layout):
    values = _values(shape, layout=layout)
    amounts = np.abs(_values(shape, layout=layout)) * 1e-3
    amounts.reshape(-1)[-1:] = np.inf  # an infinite amount keeps its sign either way
    mine_rng, textbook_rng = np.random.default_rng(9), np.random.default_rng(9)
    mine = random_signs.moved(values, amounts, mine_rng)
    textbook = values + amounts * _signs(textbook_rng, values.shape)
    np.testing.assert_array_equal(mine, textbook, strict=True)
    assert mine_rng.random() == textbook_rng.random()


def test_both_signs_occur_at_their_sizes():
    values = np.ones(1000)
    moved = random_signs.moved(values, np.full(1000, 0.25), np.random.default_rng(0))
    assert set(np.unique(moved)) == {0.75, 1.25}
    scaled = random_signs.scaled(values, 0.5, np.random.default_rng(0))
    assert set(np.unique(scaled)) == {0.5, 1.5}
    # the same draws pick the same signs in both
    np.testing.assert_array_equal(moved < 1, scaled < 1)
