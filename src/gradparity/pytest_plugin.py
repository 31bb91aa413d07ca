"""pytest integration, registered through the ``pytest11`` entry point.

In your own test suite::

    def test_my_backprop(gradparity_check):
        gradparity_check(my_module.gradients, my_module.step, loss="mse")

or without the fixture: ``from gradparity.pytest_plugin import assert_backprop``.
A failure raises ``AssertionError`` whose message names the case, the
parameter, the worst index, both values, the tolerance and the diagnosis.
Importing this module is cheap; the frameworks load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


class BackpropMismatch(AssertionError):
    """Raised by :func:`assert_backprop`; ``report`` is the full CheckReport."""

    def __init__(self, report: Any) -> None:
        from gradparity.check_report import failure_details, verdict_line

        self.report = report
        lines = [verdict_line(report)]
        for check in report.failures()[:5]:
            lines += failure_details(check)
        super().__init__("\n".join(lines))


def assert_backprop(
    gradients: Callable[..., Any] | str, step: Callable[..., Any] | None = None, **options: Any
) -> Any:
    """Run :func:`gradparity.check.verify` and raise :class:`BackpropMismatch` unless it passes."""
    __tracebackhide__ = True
    from gradparity.check import verify

    report = verify(gradients, step, **options)
    if not report.passed:
        raise BackpropMismatch(report)
    return report


@pytest.fixture
def gradparity_check() -> Callable[..., Any]:
    """``gradparity_check(gradients, step=None, **filters)``: assert your backprop is right."""
    return assert_backprop
