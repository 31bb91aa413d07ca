"""Zero false alarms: the textbook passes every default check case over 20 seeds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gradparity.check.plugin import load_plugin

SEEDS = 20

RATIO_BOUND = 0.5
"""The calibration bound, MLPs and networks of layers alike: the largest observed/allowed
ratio over every check (measured 0.350 for MLPs, 0.346 for networks of layers)."""


@pytest.mark.slow
def test_no_false_alarm_over_twenty_seeds_per_default_case(verifier) -> None:

    from gradparity.spec.matrix import check_cases

    cases = [replace(case, seed=seed) for case in check_cases() for seed in range(SEEDS)]
    report = verifier.verify(load_plugin("gradparity.check.textbook:gradients"), cases)
    failures = [(c.case.id, str(c.worst.message()) if c.worst else c.message)
                for c in report.failures()]
    assert not failures, failures[:5]
    # the plug-in contract carries no dropout mask: those cases are "not handled"
    with_masks = [c for c in cases if c.option("dropout")]
    assert len(report.checked) == len(cases) - len(with_masks)


@pytest.mark.slow
def test_derived_tolerances_hold_over_twenty_seeds() -> None:
    """The calibration claimed in gradparity.compare.tolerances: every default case, 20 seeds."""
    from gradparity.compare.metrics import machine_epsilon
    from gradparity.harness.runner import run_case
    from gradparity.spec.matrix import check_cases

    worst_ratio, worst_slack, failures, worst, checks, loose = 0.0, 0.0, [], [], 0, 0
    undetermined = []
    loosest = None
    sequence_ratio = 0.0
    for case in check_cases():
        for seed in range(SEEDS):
            outcome = run_case(replace(case, seed=seed), explain=False,
                               finite_differences=False)
            failures += [d.message() for d in outcome.checks if not d.passed]
            undetermined += [d.message() for d in outcome.checks if not d.determined]
            worst = sorted([*worst, *outcome.checks], key=lambda d: -d.headroom)[:5]
            for d in outcome.checks:
                if case.is_sequence:
                    sequence_ratio = max(sequence_ratio, d.headroom)
                else:
                    worst_ratio = max(worst_ratio, d.headroom)
                allowed = d.tolerance / machine_epsilon(d.dtype)
                slack = allowed / max(d.normwise_eps, 1.0)
                if slack > worst_slack:
                    worst_slack, loosest = slack, d
                checks += 1
                loose += slack >= 1000
    print(f"largest observed/allowed {worst_ratio:.3f}, largest allowed/observed "
          f"{worst_slack:.0f}, {loose} of {checks} checks allow >= 1000x what they observe")
    for d in sorted(worst, key=lambda d: -d.headroom)[:5]:
        print("closest:", d.message())
    print("loosest:", loosest.message() if loosest else "none")
    assert not failures, failures[:5]
    # the rule for rounding noise (compare.metrics.NOT_DETERMINED) must leave the
    # calibration whole: every check of the default matrix is judged, over every seed
    assert not undetermined, undetermined[:5]
    print(f"networks of layers: largest observed/allowed {sequence_ratio:.3f}")
    assert sequence_ratio < RATIO_BOUND
    assert worst_ratio < RATIO_BOUND
    # tolerances that could hide a bug: rare (RMSprop/Adam entries where g / sqrt(v)
    # amplifies a cancelling gradient), and each is flagged in the report
    # measured: 799 of 317,080; 582 before networks of layers summed their gradient terms'
    # absolute values (stop 31: 217 more, allowing 1,000 to 3,500 eps where about 1 eps
    # is observed, in exchange for the false alarms of the wider layer sweep; docs: Tolerances)
    assert loose < 0.003 * checks
