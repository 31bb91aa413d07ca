"""Zero false alarms: the textbook passes every default check case over 20 seeds."""

from __future__ import annotations

import pytest

from gradparity.plugin import load_plugin

SEEDS = 20


@pytest.mark.slow
def test_no_false_alarm_over_twenty_seeds_per_default_case(verifier) -> None:
    from dataclasses import replace

    from gradparity.matrix import check_cases

    cases = [replace(case, seed=seed) for case in check_cases() for seed in range(SEEDS)]
    report = verifier.verify(load_plugin("gradparity.textbook:gradients"), cases)
    failures = [(c.case.id, str(c.worst.message()) if c.worst else c.message)
                for c in report.failures()]
    assert not failures, failures[:5]
    assert len(report.checked) == len(cases) == 42 * SEEDS
