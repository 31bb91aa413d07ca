"""Run one case on every requested framework and compare every pair."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

from gradparity.adapters import FRAMEWORKS, RunResult, get_adapter
from gradparity.case import Case
from gradparity.compare import Difference, compare_results
from gradparity.data import make_problem


@dataclass(frozen=True)
class CaseOutcome:
    """Results of one case: per framework, the skipped ones, and every pairwise check."""

    case: Case
    results: dict[str, RunResult]
    skipped: dict[str, str] = field(default_factory=dict)  # framework -> reason
    differences: tuple[Difference, ...] = ()

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.differences)

    def worst(self, framework: str, baseline: str) -> Difference | None:
        """The check of this pair with the largest observed/allowed ratio."""
        pair = [d for d in self.differences if (d.framework, d.baseline) == (framework, baseline)]
        return max(pair, key=lambda d: d.headroom) if pair else None


def validate_frameworks(frameworks: Sequence[str]) -> tuple[str, ...]:
    """Keep registry order; reject unknown names."""
    for name in frameworks:
        if name not in FRAMEWORKS:
            raise ValueError(
                f"frameworks: invalid value {name!r}; allowed: {', '.join(FRAMEWORKS)}"
            )
    return tuple(name for name in FRAMEWORKS if name in frameworks)


def framework_pairs(frameworks: Sequence[str]) -> list[tuple[str, str]]:
    """``(framework, baseline)`` pairs; the earlier framework in registry order is the baseline."""
    ordered = validate_frameworks(frameworks)
    return [(later, earlier) for earlier, later in combinations(ordered, 2)]


def run_case(case: Case, frameworks: Sequence[str] = tuple(FRAMEWORKS)) -> CaseOutcome:
    """Run ``case`` on each available framework and compare all pairs."""
    frameworks = validate_frameworks(frameworks)
    problem = make_problem(case)
    results: dict[str, RunResult] = {}
    skipped: dict[str, str] = {}
    for name in frameworks:
        adapter = get_adapter(name)
        availability = adapter.availability()
        if not availability.available:
            skipped[name] = availability.reason
            continue
        reason = adapter.unsupported_reason(case)
        if reason is not None:
            skipped[name] = f"not expressible in {name}: {reason}"
            continue
        results[name] = adapter.run(case, problem)
    differences: list[Difference] = []
    for framework, baseline in framework_pairs(list(results)):
        differences += compare_results(results[framework], results[baseline], case)
    return CaseOutcome(case, results, skipped, tuple(differences))
