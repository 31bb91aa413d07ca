"""pytest integration, registered through the ``pytest11`` entry point.

In your own test suite::

    def test_my_backprop(gradparity_check):
        gradparity_check(my_module.gradients, my_module.step, loss="mse")

or without the fixture: ``from gradparity import assert_backprop``.
A failure raises ``AssertionError`` whose message names the case, the
parameter, the worst index, both values, the tolerance and the diagnosis.
The frameworks load on first use, not when pytest loads this plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gradparity.check.assertions import BackpropMismatch, assert_backprop

__all__ = ["BackpropMismatch", "assert_backprop", "gradparity_check"]


@pytest.fixture
def gradparity_check() -> Callable[..., Any]:
    """``gradparity_check(gradients, step=None, **filters)``: assert your backprop is right."""
    return assert_backprop
