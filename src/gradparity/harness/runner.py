"""Run one case on every requested framework, compare every pair, and explain gaps.

Besides the pairwise checks, :func:`run_case` also measures each
implementation against independent oracles and says where things broke:

* the **float64 oracle** (float32 cases): the NumPy reference run in float64
  from the same float32-rounded weights and data; each implementation's own
  error against it, in float32 epsilons;
* **finite differences** (float64, no framework) against the reference gradient;
* for every failing check, **rounding or bug**: the case is rerun in float64;
  a rounding error shrinks by about eps64/eps32, a logic difference does not;
* the **first backward divergence** (step, layer) from the dL/dz_l signals;
* **trajectories** free-running and teacher-forced (every step restarted from
  the reference's parameters), so per-step error is told apart from drift.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import replace
from itertools import combinations

import numpy as np

from gradparity.adapters import (
    FRAMEWORKS,
    RunResult,
    check_device,
    get_adapter,
    one_torch_thread,
)
from gradparity.adapters.base import run_teacher_forced
from gradparity.compare.confirmation import CONFIRMING_DRAWS, widest, worth_another_draw
from gradparity.compare.derivation import derive, floors
from gradparity.compare.finite_differences import check_against_finite_differences
from gradparity.compare.metrics import (
    FINITE_DIFFERENCES,
    ORACLE,
    Difference,
    largest_difference_and_scale,
    machine_epsilon,
)
from gradparity.compare.pairwise import compare_results, first_backward_divergence
from gradparity.compare.tolerances import ROUNDING_SHRINK_SLACK, TOLERANCE_MODES, Tolerances
from gradparity.harness.explain import explain_by_conventions, named_in_float64
from gradparity.harness.memory import release_freed_memory
from gradparity.harness.oracle import float64_oracle, oracle_namespace
from gradparity.harness.outcome import CaseOutcome, CaseTimeout, TrajectoryErrors
from gradparity.spec.case import Case
from gradparity.spec.data import Problem, make_problem


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


def short_traceback(error: BaseException, limit: int = 4) -> str:
    """The exception and the last ``limit`` frames: enough to find it, short enough to
    report."""
    lines = traceback.format_exception(type(error), error, error.__traceback__, limit=-limit)
    return "".join(lines).rstrip()


def _runnable(case: Case, frameworks: Sequence[str], device: str = "cpu"
              ) -> tuple[list[str], dict[str, str]]:
    """The frameworks that can run ``case`` here, and why each other one cannot."""
    runnable, skipped = [], {}
    for name in frameworks:
        adapter = get_adapter(name, device)
        availability = adapter.availability()
        if not availability.available:
            skipped[name] = availability.reason
            continue
        reason = adapter.unsupported_reason(case)
        if reason is not None:
            skipped[name] = f"not expressible in {name}: {reason}"
            continue
        runnable.append(name)
    return runnable, skipped


def _run_all(case: Case, problem: Problem, runnable: Sequence[str], device: str = "cpu"):
    """Each framework's result; one that raises is recorded as an error, the rest go on."""
    results: dict[str, RunResult] = {}
    errors: dict[str, str] = {}
    for name in runnable:
        adapter = get_adapter(name, device)
        try:
            results[name] = adapter.run(case, problem)
        except CaseTimeout:
            raise
        except Exception as error:  # an adapter bug must not stop the other frameworks
            errors[name] = short_traceback(error)
    return results, errors


def divergence(result: RunResult) -> tuple[str, int] | None:
    """Where a run stops being finite (``"the reference's W1 becomes non-finite at step 3
    (training diverges)"``) and how many steps stayed finite before it, or None."""
    who = "the reference" if result.framework == "numpy" else result.framework
    if not np.isfinite(result.loss):
        return f"{who}'s loss is not finite", 0
    for name, value in result.gradients.items():
        if not np.isfinite(value).all():
            return f"{who}'s gradient of {name} is not finite", 0
    for step, (params, loss) in enumerate(zip(result.trajectory, result.losses[1:],
                                              strict=False), start=1):
        for name, value in params.items():
            if not np.isfinite(value).all():
                return (f"{who}'s {name} becomes non-finite at step {step} (training "
                        "diverges)", step - 1)
        if not np.isfinite(loss):
            # the loss after this step is the next pass's: this step's update is the last
            # one whose loss could be compared, so the steps before it stay finite
            return f"{who}'s loss becomes non-finite after step {step} (training diverges)", \
                step - 1
    return None


def _trajectory_errors(case, problem, results, device="cpu") -> dict[str, TrajectoryErrors]:
    reference = results.get("numpy")
    if reference is None or case.steps < 2:
        return {}
    eps = machine_epsilon(case.dtype)

    def error(params, step):
        target = reference.parameters_after(step)
        return max(difference / max(scale, np.finfo(float).tiny) for difference, scale in (
            largest_difference_and_scale(params[n], target[n]) for n in target)) / eps

    errors = {}
    for name, result in results.items():
        if name == "numpy":
            continue
        forced = run_teacher_forced(get_adapter(name, device), case, problem, reference)
        errors[name] = TrajectoryErrors(
            free_running=tuple(error(result.parameters_after(t), t)
                               for t in range(1, case.steps + 1)),
            teacher_forced=tuple(error(p, t) for t, p in enumerate(forced, start=1)),
        )
    return errors


def rounding_or_bug(case: Case, failed: Sequence[Difference], frameworks: Sequence[str],
                    problem: Problem | None = None) -> dict[tuple[str, str, str, str], str]:
    """Rerun a float32 case in float64: does each failing check shrink like rounding?

    The rerun uses the same weights and data (``problem``, the user's where given, in
    float64). A check whose difference is not finite is never rounding."""
    verdicts: dict[tuple[str, str, str, str], str] = {}
    remaining = []
    for d in failed:
        key = (d.framework, d.baseline, d.quantity, d.parameter)
        if d.baseline == FINITE_DIFFERENCES:
            verdicts[key] = ("logic difference: the reference disagrees with float64 finite "
                             "differences beyond their own error estimate")
        elif d.note or not np.isfinite(d.normwise):
            verdicts[key] = f"not rounding: {d.note or 'the difference is not finite'}"
        else:
            remaining.append(d)
    if not remaining:
        return verdicts
    if case.dtype == "float64":
        for d in remaining:
            verdicts[(d.framework, d.baseline, d.quantity, d.parameter)] = (
                "logic difference: fails in float64, where rounding cannot explain it")
        return verdicts
    wide_case = replace(case, dtype="float64")
    given = None if problem is None else problem.as_float64()
    wide = run_case(wide_case, frameworks, explain=False, finite_differences=False,
                    problem=given)
    again = {(d.framework, d.baseline, d.quantity, d.parameter): d for d in wide.checks}
    # a difference that stays in float64 may be a catalogued convention there
    models = _Models(wide_case, given)
    in_float64 = explain_by_conventions(
        wide_case, make_problem(wide_case) if given is None else given, wide.results,
        [d for d in wide.checks if not d.passed], given,
        judge=_full_judge(wide_case, models))
    expected = machine_epsilon("float64") / machine_epsilon("float32")
    for d in remaining:
        key = (d.framework, d.baseline, d.quantity, d.parameter)
        if d.baseline == ORACLE and d.framework == "numpy":
            # the reference in float32 against itself in float64: nothing but rounding,
            # which the tolerance model underestimated here
            verdicts[key] = ("rounding: the float32 reference against its own float64 run "
                             "(the tolerance model underestimates this case's rounding)")
            continue
        other = again.get((d.framework, d.baseline.replace(ORACLE, "numpy"), d.quantity,
                           d.parameter))
        if other is None:
            verdicts[key] = "undetermined: no float64 counterpart"
            continue
        ratio = other.normwise / d.normwise
        if other.passed and ratio == 0:
            verdicts[key] = ("rounding: the two agree exactly in float64 and differ by "
                             f"{d.normwise:.2e} in float32")
        elif other.passed and ratio < ROUNDING_SHRINK_SLACK * expected:
            verdicts[key] = (f"rounding: shrinks x{ratio:.1e} in float64 (eps ratio "
                             f"{expected:.1e}) and passes there")
        else:
            verdicts[key] = (f"logic difference: float32 {d.normwise:.2e}, float64 "
                             f"{other.normwise:.2e} (does not shrink with precision)"
                             + named_in_float64(in_float64, other))
    return verdicts


def compare_pair(result: RunResult, baseline: RunResult, case: Case, *,
                 tolerances: str = "full", problem: Problem | None = None,
                 steps: Sequence[int] | None = None) -> list[Difference]:
    """Every check of one pair, against the tolerance model derived for ``case``.

    ``tolerances="screened"`` judges the pair against the model's floors first
    (:func:`gradparity.compare.derivation.floors`, a lower bound of each derived
    tolerance) and derives the full model only when some check exceeds its floor: the
    same verdicts for less work, but a check that passed its floor reports the floor as
    its tolerance. ``problem``: the weights and data the case ran on, where they are not
    the generated ones (the model is evaluated on them). ``steps``: see
    :func:`gradparity.compare.pairwise.compare_results`."""
    if tolerances not in TOLERANCE_MODES:
        raise ValueError(f"tolerances: invalid value {tolerances!r}; allowed: "
                         f"{', '.join(TOLERANCE_MODES)}")
    return _judged(result, baseline, case, tolerances, _Models(case, problem), steps)[0]


class _Models:
    """The tolerance model of one case on one problem, each form derived at most once:
    generated data is cached by :mod:`gradparity.compare.derivation` itself, a user's
    data (``problem``) once per run here instead of once per compared pair."""

    def __init__(self, case: Case, problem: Problem | None, namespace: str = "numpy") -> None:
        self.case, self.problem, self.namespace = case, problem, namespace
        self._floors: Tolerances | None = None
        self._full: Tolerances | None = None
        self._draws: list[Tolerances] = []  # the full model's, then the confirming ones
        self.oracle: RunResult | None = None  # once run: the model's clean trajectory

    @property
    def clean(self) -> RunResult | None:
        """The oracle's run, where computed in the namespace of the model's trajectories (a
        float64 case's NumPy run is not, beside a GPU's: its rounding is no perturbation)."""
        foreign = self.namespace != "numpy" and getattr(self.oracle, "framework", 0) != ORACLE
        return None if foreign else self.oracle

    def floors(self) -> Tolerances:
        if self._floors is None:
            self._floors = floors(self.case, self.problem)
        return self._floors

    def full(self) -> Tolerances:
        if self._full is None:
            self._full = derive(self.case, self.problem, clean=self.clean,
                                namespace=self.namespace)
        return self._full

    def widest(self, draws: int) -> Tolerances:
        """The widest of the first ``draws`` draws of the model's probes
        (:mod:`gradparity.compare.confirmation`)."""
        if not self._draws:
            self._draws.append(self.full())
        while len(self._draws) < draws:
            self._draws.append(derive(self.case, self.problem, clean=self.clean,
                                      draw=len(self._draws), like=self._draws[0],
                                      namespace=self.namespace))
        return widest(self._draws[:draws])


def _full_judge(case: Case, models: _Models):
    """How a run judges a pair by the full model, with its confirming draws: what a
    convention's explanation judges each side with."""
    return lambda mine, expected: _judged(mine, expected, case, "full", models)[0]


def _judged(result: RunResult, baseline: RunResult, case: Case, tolerances: str,
            models: _Models, steps: Sequence[int] | None = None
            ) -> tuple[list[Difference], Tolerances]:
    """:func:`compare_pair`'s checks and the model they were judged against: a pair
    that fails the full model is judged again against more draws of its probes before
    its disagreement stands (:mod:`gradparity.compare.confirmation`)."""
    if tolerances == "screened":
        model = models.floors()
        screened = compare_results(result, baseline, case, model, steps=steps)
        if all(d.passed for d in screened):
            return screened, model
    model = models.full()
    checks = compare_results(result, baseline, case, model, steps=steps)
    draws = 1
    while draws < CONFIRMING_DRAWS and worth_another_draw(checks):
        draws += 1
        model = models.widest(draws)
        checks = compare_results(result, baseline, case, model, steps=steps)
    return checks, model


def run_case(case: Case, frameworks: Sequence[str] = tuple(FRAMEWORKS), *,
             explain: bool = True, finite_differences: bool = True,
             problem: Problem | None = None, tolerances: str = "full",
             device: str = "cpu", reference_namespace: str | None = None) -> CaseOutcome:
    """Run ``case`` on each available framework, compare all pairs and the oracles.

    ``problem`` replaces the generated weights and data (see
    :func:`gradparity.spec.data.problem_from_arrays`, which validates user data);
    ``tolerances`` is one of :data:`~gradparity.compare.tolerances.TOLERANCE_MODES`;
    ``device`` (see :data:`gradparity.adapters.DEVICES`) is where torch and JAX compute;
    the float64 oracle and the tolerance model's trajectories compute with the array
    namespace ``reference_namespace``, by default CuPy where ``device`` is ``cuda`` and
    CuPy sees a GPU (:func:`~gradparity.harness.oracle.oracle_namespace`), while the NumPy
    reference's own run, the finite differences and the comparisons stay on the CPU.
    torch computes with one intra-op thread (:func:`gradparity.adapters.one_torch_thread`:
    the same numbers in this process as in a worker process)."""
    with one_torch_thread(frameworks):
        return _run_case(case, frameworks, explain=explain,
                         finite_differences=finite_differences, problem=problem,
                         tolerances=tolerances, device=device,
                         oracle_on=oracle_namespace(case, device, reference_namespace))


def _run_case(case: Case, frameworks: Sequence[str], *, explain: bool,
              finite_differences: bool, problem: Problem | None, tolerances: str,
              device: str, oracle_on: str) -> CaseOutcome:
    if tolerances not in TOLERANCE_MODES:
        raise ValueError(f"tolerances: invalid value {tolerances!r}; allowed: "
                         f"{', '.join(TOLERANCE_MODES)}")
    device = check_device(device)
    frameworks = validate_frameworks(frameworks)
    given = problem  # user data: the tolerance model is evaluated on it, not on generated
    problem = make_problem(case) if problem is None else problem
    runnable, skipped = _runnable(case, frameworks, device)
    models = _Models(case, given, oracle_on)  # the model's trajectories go with the oracle
    parameter_bytes = 8 * sum(value.size for value in problem.params.values())
    needs_oracle = case.dtype == "float32" and (explain or (
        finite_differences and "numpy" in runnable))
    # the reference's run in float64 is the model's clean trajectory: in a float64 case
    # the reference's own run, in a float32 case the float64 oracle's
    wide = case.dtype == "float64" and "numpy" in runnable
    results, errors = {}, {}
    if tolerances == "full" and given is None and (len(runnable) > 1 or (
            explain and runnable and case.dtype == "float32")):
        # the model before the other runs are held: its float64 trajectories' memory
        # then comes and goes before theirs arrives, not on top of it (a user's data is
        # checked for divergence first, below); its pages stay in the heap for the runs
        # (handing them back here lowered no peak and cost the MNIST-sized case 1-2 s of
        # faulting them in again, docs/speed.md)
        if wide:
            results, errors = _run_all(case, problem, ["numpy"], device)
            models.oracle = results.get("numpy")
        else:
            try:
                models.oracle = (float64_oracle(case, problem, oracle_on) if needs_oracle
                                 else None)
            except CaseTimeout:
                raise
            except Exception:  # run again after the frameworks, which report its error
                models.oracle = None
        models.full()
    more, failed = _run_all(case, problem, [n for n in runnable if n not in results
                                            and n not in errors], device)
    results, errors = {**results, **more}, {**errors, **failed}  # registry order
    if wide:
        models.oracle = results.get("numpy")
    if given is not None and "numpy" in results:
        diverged = divergence(results["numpy"])
        if diverged is not None:
            where, finite = diverged
            shorter = (f"; the first {finite} step{'s' if finite != 1 else ''} stay finite: "
                       f"steps = {finite} checks them" if finite else "")
            raise ValueError(f"data and weights: {where} in {case.dtype}; allowed: data, "
                             "weights and hyperparameters whose training stays finite for "
                             f"{case.steps} steps (nothing can be compared past it{shorter})")
    differences: list[Difference] = []
    kink_pass = None  # set where a pair was judged by the full model and it found a kink
    for framework, baseline in framework_pairs(list(results)):
        judged, model = _judged(results[framework], results[baseline], case, tolerances,
                                models)
        differences += judged
        kink_pass = model.branch_from if kink_pass is None else kink_pass
    oracle_differences: list[Difference] = []
    needs_oracle = needs_oracle and (explain or "numpy" in results)
    if needs_oracle and models.oracle is None:
        models.oracle = float64_oracle(case, problem, oracle_on)
    oracle = models.oracle if needs_oracle else None
    if oracle is not None and explain:
        for result in results.values():
            oracle_differences += _judged(result, oracle, case, tolerances, models)[0]
    if finite_differences and "numpy" in results:
        # the reference's maths is checked in float64: a float32 gradient's own
        # rounding (~1e-7) would eat most of the 1e-6 finite-difference budget
        reference = oracle if oracle is not None else results["numpy"]
        oracle_differences += check_against_finite_differences(case, problem, reference)
    if not explain:
        return CaseOutcome(case, results, skipped, tuple(differences), tuple(oracle_differences),
                           errors=errors, kink_pass=kink_pass)
    failed = [d for d in differences + oracle_differences if not d.passed]
    sides = {**results, **({ORACLE: oracle} if oracle is not None else {})}
    verdicts = explain_by_conventions(case, problem, sides, failed, given,
                                      judge=_full_judge(case, models)) if failed else {}
    verdicts.update(rounding_or_bug(case, [d for d in failed if (
        d.framework, d.baseline, d.quantity, d.parameter) not in verdicts], frameworks, given))
    localisation = {}
    for framework, baseline in framework_pairs(list(results)):
        where = first_backward_divergence(results[framework], results[baseline], case,
                                          models.floors())
        if where is not None:
            localisation[(framework, baseline)] = where
    # the teacher-forced reruns need neither: the float64 run goes first
    del sides, oracle
    models.oracle = None
    release_freed_memory(parameter_bytes)
    trajectories = _trajectory_errors(case, problem, results, device)
    return CaseOutcome(
        case, results, skipped, tuple(differences), tuple(oracle_differences), errors=errors,
        verdicts=verdicts, localisation=localisation, trajectories=trajectories,
        kink_pass=kink_pass,
    )


__all__ = ["ORACLE", "CaseOutcome", "compare_pair", "framework_pairs", "run_case"]
