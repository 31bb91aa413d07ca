"""Assertions over users' backprop: :func:`assert_backprop` raises unless every case agrees.

Plain Python (no pytest needed): the pytest fixture ``gradparity_check``
(:mod:`gradparity.check.pytest_plugin`) is this function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradparity.check.summary import failure_details, verdict_line
from gradparity.check.verifier import CheckReport, verify


class BackpropMismatch(AssertionError):
    """Raised by :func:`assert_backprop`; ``report`` is the full CheckReport."""

    def __init__(self, report: CheckReport) -> None:
        self.report = report
        lines = [verdict_line(report)]
        for check in report.failures()[:5]:
            lines += failure_details(check)
        super().__init__("\n".join(lines))


def assert_backprop(
    gradients: Callable[..., Any] | str, step: Callable[..., Any] | None = None, **options: Any
) -> CheckReport:
    """Run :func:`gradparity.check.verifier.verify` and raise :class:`BackpropMismatch`
    unless it passes; return the report."""
    __tracebackhide__ = True
    report = verify(gradients, step, **options)
    if not report.passed:
        raise BackpropMismatch(report)
    return report
