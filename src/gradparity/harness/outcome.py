"""What running one case gives: :class:`CaseOutcome` (every check, the verdicts, the
localisation and trajectories) and the errors a run can end in."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gradparity.adapters import RunResult
from gradparity.compare.metrics import ORACLE, Difference
from gradparity.harness.explain import CONVENTION_PREFIX
from gradparity.spec.case import Case


class CaseTimeout(Exception):
    """A case ran past its time limit (``run_isolated``)."""


@dataclass(frozen=True)
class TrajectoryErrors:
    """Per-step normwise error (in eps) of one framework against the reference."""

    free_running: tuple[float, ...]
    teacher_forced: tuple[float, ...]

    @property
    def growth_per_step(self) -> float:
        """Geometric mean growth of the free-running error from step 1 to the last."""
        if len(self.free_running) < 2:
            return float("nan")
        # errors below one eps are a single rounding: count them as one eps
        first, last = max(self.free_running[0], 1.0), max(self.free_running[-1], 1.0)
        return float((last / first) ** (1 / (len(self.free_running) - 1)))


@dataclass(frozen=True)
class CaseOutcome:
    """Results of one case: per framework, the skipped ones, and every check."""

    case: Case
    results: dict[str, RunResult]
    skipped: dict[str, str] = field(default_factory=dict)  # framework -> reason
    differences: tuple[Difference, ...] = ()
    oracle_differences: tuple[Difference, ...] = ()  # each implementation vs the oracle
    verdicts: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    localisation: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    trajectories: dict[str, TrajectoryErrors] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # framework (or "case") -> traceback
    # the first pass with a value within rounding of a kink, where the full tolerance model
    # was derived and found one: from the next step on, checks allow the other branch
    kink_pass: int | None = None

    def for_report(self) -> CaseOutcome:
        """This outcome with every run reduced to its losses, which is all a report reads
        of the runs (the checks, verdicts and trajectory errors are kept whole).

        The arrays were checked where the case ran. Sent back from a worker whole, they
        were 111 MB of the 126 MB that the 520-case example's outcomes pickle to, and
        the main process unpickled them while the workers needed the cores."""
        return replace(self, results={
            name: replace(result, gradients={}, trajectory=(), deltas=(), states=())
            for name, result in self.results.items()})

    @property
    def checks(self) -> tuple[Difference, ...]:
        return self.differences + self.oracle_differences

    @property
    def compared(self) -> bool:
        """Whether anything was compared at all (a pair or an oracle)."""
        return bool(self.checks)

    @property
    def passed(self) -> bool:
        """Every check passed or is explained by a catalogued convention, at least one
        was made, and nothing raised. The oracle rows (float64 oracle, finite
        differences) count like every other check."""
        return self.compared and not self.errors and all(
            d.passed or self.explained(d) for d in self.checks)

    def explained(self, check: Difference) -> bool:
        """Whether a failing check is a catalogued convention's, not a disagreement."""
        verdict = self.verdicts.get((check.framework, check.baseline, check.quantity,
                                     check.parameter), "")
        return verdict.startswith(CONVENTION_PREFIX)

    def worst(self, framework: str, baseline: str) -> Difference | None:
        """The check of this pair with the largest observed/allowed ratio."""
        pair = [d for d in self.checks if (d.framework, d.baseline) == (framework, baseline)]
        return max(pair, key=lambda d: d.headroom) if pair else None

    def worst_against_oracle(self) -> Difference | None:
        """The implementation furthest from the oracle (float64 oracle or finite differences)."""
        candidates = [d for d in self.oracle_differences if d.baseline == ORACLE]
        return max(candidates, key=lambda d: d.normwise) if candidates else None
