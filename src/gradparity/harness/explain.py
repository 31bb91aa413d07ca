"""Linking a failure to the catalogued convention that causes it.

Some conventions (:mod:`gradparity.adapters.conventions`) only act at particular data:
the derivative of leaky_relu at a pre-activation of exactly 0, torch's softplus above
20. When a pair of implementations disagrees on a case where such a convention could
act, the reference is rerun with each side's setting. If each side then agrees with
the reference in its own setting, the whole difference is that convention's: the
failing checks get the verdict ``convention <name> at N entries`` (and count as
explained, not as a bug); otherwise nothing is claimed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradparity.adapters import RunResult
from gradparity.adapters.numpy_adapter import NumpyAdapter
from gradparity.compare.derivation import derive
from gradparity.compare.metrics import ORACLE, Difference
from gradparity.compare.pairwise import compare_results
from gradparity.spec.case import Case
from gradparity.spec.data import Problem

CONVENTION_PREFIX = "convention "
"""Every verdict this module gives starts with it (an explained check)."""


@dataclass(frozen=True)
class DataDependentConvention:
    """A catalogued convention that acts only at some data: ``settings`` holds each
    framework whose setting differs from the reference's (``reference``); ``where``
    says at which entries it acts."""

    name: str
    applies: Callable[[Case], bool]
    settings: Mapping[str, Any]
    reference: Any
    where: str


DATA_DEPENDENT: tuple[DataDependentConvention, ...] = (
    DataDependentConvention(
        "leaky_relu_derivative_at_zero", lambda case: case.uses_activation("leaky_relu"),
        {"torch": "slope"}, "one", "pre-activations exactly at the kink z == 0"),
    DataDependentConvention(
        "gelu_cdf_form", lambda case: case.uses_activation("gelu"),
        {"torch": "one_plus_erf"}, "erfc",
        "pre-activations in the lower tail, below about -4 in float32 and -7 in float64"),
    DataDependentConvention(
        "tanh_float32_form",
        lambda case: case.dtype == "float32" and case.uses_activation("tanh"),
        {"jax": "xla_rational"}, "library", "every tanh of a float32 run (XLA's CPU kernel)"),
    DataDependentConvention(
        "bce_logits_gradient_form",
        lambda case: case.loss == "binary_cross_entropy_with_logits",
        {"torch": "sigmoid_minus_target"}, "exact",
        "confidently right logits, above about 13 in float32 and 33 in float64"),
    DataDependentConvention(
        "softplus_threshold", lambda case: case.uses_activation("softplus"),
        {"torch": 20.0}, 0.0, "pre-activations above torch's threshold 20"),
)
"""The conventions whose effect depends on the data, with each framework's setting."""


def _options(group: Sequence[DataDependentConvention], side: str) -> dict[str, Any]:
    """Each convention of ``group`` set as ``side`` sets it (the oracle: the reference)."""
    framework = "numpy" if side == ORACLE else side
    return {c.name: c.settings.get(framework, c.reference) for c in group}


def _reference(case: Case, problem: Problem, conventions: Mapping[str, Any]) -> RunResult:
    return NumpyAdapter(conventions).run(case, problem)


def _changed_entries(case: Case, problem: Problem, settings: Sequence[Mapping[str, Any]]
                     ) -> int:
    """Gradient entries (at the initial parameters) that the settings give differently."""
    runs = [_reference(replace(case, steps=0), problem, s) for s in settings]
    return int(sum(np.count_nonzero(runs[0].gradients[n] != other.gradients[n])
                   for other in runs[1:] for n in runs[0].gradients))


def _groups(case: Case) -> list[tuple[DataDependentConvention, ...]]:
    """Each convention that can act on ``case`` alone, then all of them together (a GELU
    network with binary cross-entropy on logits meets two at once, and neither alone
    reproduces torch)."""
    acting = [c for c in DATA_DEPENDENT if c.applies(case)]
    return [(c,) for c in acting] + ([tuple(acting)] if len(acting) > 1 else [])


def _described(options: Mapping[str, Any]) -> str:
    values = list(options.values())
    return repr(values[0]) if len(values) == 1 else ", ".join(
        f"{name}={value!r}" for name, value in options.items())


Judge = Callable[[RunResult, RunResult], Sequence[Difference]]
"""Every check of one side against a reference run: how the run judges a pair (with its
confirming draws of the model's probes, :mod:`gradparity.compare.confirmation`)."""


def explain_by_conventions(case: Case, problem: Problem, results: Mapping[str, RunResult],
            failed: Sequence[Difference], given: Problem | None = None,
            judge: Judge | None = None) -> dict[tuple[str, str, str, str], str]:
    """The verdict ``convention ...`` for every failing check that a data-dependent
    convention explains (or several acting together, named ``a+b``): each side of its pair
    agrees with the reference run in that side's settings (``given``: the user's data,
    where the model is evaluated on it), as ``judge`` judges it (by default against one
    draw of the model's probes)."""
    if judge is None:
        def judge(result: RunResult, expected: RunResult) -> list[Difference]:
            return compare_results(result, expected, case, derive(case, given))

    verdicts: dict[tuple[str, str, str, str], str] = {}
    pairs = sorted({(d.framework, d.baseline) for d in failed
                    if d.baseline in results or d.baseline == ORACLE})
    for group in _groups(case):
        for framework, baseline in pairs:
            mine, theirs = _options(group, framework), _options(group, baseline)
            if mine == theirs or any(k[:2] == (framework, baseline) for k in verdicts):
                continue
            if not _reproduced(case, problem, results, framework, baseline, group, judge):
                continue
            count = _changed_entries(case, problem, (mine, theirs))
            where = (f"at {count} gradient entries" if count
                     else "in the steps after the first gradient")
            name = "+".join(c.name for c in group)
            text = (f"{CONVENTION_PREFIX}{name} {where} "
                    f"({'; '.join(c.where for c in group)}): {framework} follows "
                    f"{_described(mine)}, {baseline} {_described(theirs)}; the reference in "
                    "each setting reproduces each side, so this is the convention, not a bug")
            for d in failed:
                if (d.framework, d.baseline) == (framework, baseline):
                    verdicts[(d.framework, d.baseline, d.quantity, d.parameter)] = text
    return verdicts


def _reproduced(case: Case, problem: Problem, results: Mapping[str, RunResult],
                framework: str, baseline: str, group: Sequence[DataDependentConvention],
                judge: Judge) -> bool:
    """Whether each side agrees with the reference run in its own settings."""
    for side in (framework, baseline):
        if side == ORACLE:
            continue  # the oracle is the reference itself, in the reference's setting
        expected = _reference(case, problem, _options(group, side))
        if not all(d.passed for d in judge(results[side], expected)):
            return False
    if baseline == ORACLE:
        # the float64 oracle in the framework's setting: the float32 side must match it
        wide = replace(case, dtype="float64")
        oracle = replace(_reference(wide, problem.as_float64(), _options(group, framework)),
                         framework=ORACLE, case_id=case.id)
        return all(d.passed for d in judge(results[framework], oracle))
    return True


def named_in_float64(verdicts: Mapping[tuple[str, str, str, str], str], check: Difference
                     ) -> str:
    """A float32 failure's pointer to the catalogued convention that
    :func:`explain_by_conventions` found at its float64 rerun's counterpart ``check``
    (``verdicts``: that rerun's), or "". The float32 check is not explained away: the
    convention is reproduced in float64 only, and a float32 bug could sit beside it."""
    text = verdicts.get((check.framework, check.baseline, check.quantity, check.parameter))
    if text is None:
        return ""
    name = text.removeprefix(CONVENTION_PREFIX).split(" ", 1)[0]
    return (f"; in float64 the difference is the catalogued convention {name} (the "
            "reference in each side's setting reproduces each side there)")
