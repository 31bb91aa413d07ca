"""Check a user's implementation against the reference, PyTorch, JAX and finite differences.

:class:`Verifier` caches, per case, everything that does not depend on the
implementation under test (the framework runs and the finite-difference
estimate), so checking many implementations (the mutation catalogue, seed
sweeps) costs little more than running them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradparity.adapters import FRAMEWORKS, RunResult
from gradparity.check.diagnosis import Finding, diagnose_gradients, diagnose_update
from gradparity.check.plugin import (
    CaseNotHandled,
    Plugin,
    PluginError,
    UserCodeError,
    call_gradients,
    call_step,
    call_supports,
    load_plugin,
)
from gradparity.check.textbook import Textbook
from gradparity.compare.derivation import floors
from gradparity.compare.directions import DirectionalEstimate
from gradparity.compare.finite_differences import (
    FiniteDifferenceResult,
    compare_with_estimate,
    estimate_for,
)
from gradparity.compare.metrics import Difference, compare_arrays
from gradparity.compare.tolerances import (
    FINITE_DIFFERENCE_TOLERANCE,
    diagnosis_match_tolerance,
    fixed_tolerance,
)
from gradparity.harness.runner import compare_pair, run_case
from gradparity.reference import OPTIMIZERS
from gradparity.reference.schedules import step_hyperparameters
from gradparity.spec.case import Case
from gradparity.spec.data import Problem, make_problem
from gradparity.spec.matrix import select_cases

YOURS = "yours"


@dataclass(frozen=True)
class CaseCheck:
    """The verdict on one case. ``status``: pass, fail, not handled, contract error, error."""

    case: Case
    status: str
    differences: tuple[Difference, ...] = ()
    findings: tuple[Finding, ...] = ()
    message: str = ""  # one line: why it failed to run, or was not handled
    details: str = ""  # the traceback of an exception inside the user's code
    first_divergent_step: int | None = None

    @property
    def worst(self) -> Difference | None:
        return max(self.differences, key=lambda d: d.headroom, default=None)

    def caught_by(self) -> set[str]:
        """The checks that failed: ``gradient vs torch``, ``trajectory vs numpy``, ``probe``..."""
        caught = set()
        for difference in self.differences:
            if not difference.passed:
                group = {"loss": "loss", "gradient": "gradient"}.get(
                    difference.quantity, "trajectory"
                )
                caught.add(f"{group} vs {difference.baseline}")
        if any(f.kind in ("ignores_params", "nondeterministic") for f in self.findings):
            caught.add("probe")
        if self.status in ("contract error", "error"):
            caught.add(self.status)
        return caught


@dataclass(frozen=True)
class CheckReport:
    """All case verdicts for one implementation."""

    plugin: str
    cases: tuple[CaseCheck, ...]

    @property
    def checked(self) -> list[CaseCheck]:
        return [c for c in self.cases if c.status != "not handled"]

    @property
    def passed(self) -> bool:
        """True only if at least one case was checked and every checked case passed."""
        return bool(self.checked) and all(c.status == "pass" for c in self.checked)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def failures(self) -> list[CaseCheck]:
        return [c for c in self.checked if c.status != "pass"]


@dataclass
class _Baselines:
    problem: Problem
    results: dict[str, RunResult]
    skipped: dict[str, str]
    finite_differences: FiniteDifferenceResult | DirectionalEstimate | None
    given: Problem | None = None  # the user's data, where the tolerance model uses it


@dataclass
class Verifier:
    """Runs implementations against cached baselines."""

    frameworks: Sequence[str] = tuple(FRAMEWORKS)
    finite_differences: bool = True
    _cache: dict[tuple, _Baselines] = field(default_factory=dict)

    def baselines(self, case: Case, problem: Problem | None = None) -> _Baselines:
        """Every framework's run and the finite-difference estimate for ``case`` on
        ``problem`` (the user's weights and data; default: generated), computed once."""
        key = (case, None if problem is None else id(problem))
        if key not in self._cache:
            frameworks = tuple(dict.fromkeys(("numpy", *self.frameworks)))
            outcome = run_case(case, frameworks, problem=problem)
            data = make_problem(case) if problem is None else problem
            estimate = estimate_for(case, data) if self.finite_differences else None
            self._cache[key] = _Baselines(data, outcome.results, outcome.skipped, estimate,
                                          given=problem)
        return self._cache[key]

    def check_case(self, plugin: Plugin, case: Case,
                   problem: Problem | None = None) -> CaseCheck:
        """One case's verdict; ``problem``: the user's weights and data (the tolerance
        model, the oracles and the diagnosis use them too).

        The implementation is asked first (its ``supports(case)``, then its gradients):
        the baselines are computed only for a case it handles."""
        if case.option("dropout"):
            return CaseCheck(case, "not handled", message="not handled: the plug-in contract "
                             "gradients(params, x, y, case) carries no dropout mask")
        data = make_problem(case) if problem is None else problem
        try:
            if not call_supports(plugin, case):
                return CaseCheck(case, "not handled", message="not handled: supports(case) "
                                 "returned False")
            x, y, _ = data.batch(0)
            loss, grads = call_gradients(plugin, data.params, x, y, case)
        except CaseNotHandled as reason:
            return CaseCheck(case, "not handled", message=f"not handled: {reason}")
        except PluginError as error:
            return CaseCheck(case, "contract error", message=str(error))
        except UserCodeError as error:
            return CaseCheck(case, "error", message=str(error), details=error.details)
        baselines = self.baselines(case, problem)
        notes = _dtype_findings(loss, grads, case)
        message, details, with_steps = "", "", plugin.step is not None
        try:
            result = _run_steps(plugin, case, baselines.problem, loss, grads)
        except CaseNotHandled as reason:
            notes.append(Finding("update", "not handled", f"the update is not handled "
                                 f"({reason}); the gradient checks still count"))
            result, with_steps = RunResult(YOURS, case.id, loss, grads, (), np.array([loss])), \
                False
        except (PluginError, UserCodeError) as error:
            # the gradients are still checked; the broken update is reported
            message = str(error)
            details = getattr(error, "details", "")
            result, with_steps = RunResult(YOURS, case.id, loss, grads, (), np.array([loss])), \
                False
        differences = _compare(result, case, baselines, with_steps)
        if all(d.passed for d in differences) and not message:
            return CaseCheck(case, "pass", tuple(differences), tuple(notes))
        with np.errstate(all="ignore"):
            findings, divergent = self._diagnose(plugin, case, baselines, result, differences)
        if message:
            findings.append(Finding("update", "error", message))
        return CaseCheck(case, "fail", tuple(differences), tuple(notes + findings),
                         message=message, details=details, first_divergent_step=divergent)

    def verify(self, plugin: Plugin, cases: Iterable[Case],
               progress: Callable[[CaseCheck], None] | None = None,
               problems: Mapping[Case, Problem] | None = None) -> CheckReport:
        """Every case's verdict; ``problems``: the user's weights and data per case."""
        checks = []
        for case in cases:
            check = self.check_case(plugin, case, (problems or {}).get(case))
            checks.append(check)
            if progress is not None:
                progress(check)
        return CheckReport(plugin.name, tuple(checks))

    def _diagnose(self, plugin, case, baselines, result, differences):
        findings: list[Finding] = []
        reference = baselines.results["numpy"]
        wrong = {d.parameter for d in differences
                 if d.quantity == "gradient" and d.baseline == "numpy" and not d.passed}
        loss_wrong = any(d.quantity == "loss" and not d.passed for d in differences)
        if loss_wrong:
            findings += _probe(plugin, case, baselines.problem, result)
            if any(f.kind == "ignores_params" for f in findings):
                findings.append(Finding("params", "localisation", "per-parameter diagnosis "
                                        "skipped: the gradients belong to other weights"))
                return findings, None
        if wrong:
            findings += diagnose_gradients(result.gradients, case, baselines.problem, wrong)
            return findings, None
        if loss_wrong:
            findings.append(Finding("loss", "loss", _loss_only_finding(result.loss,
                                                                       reference.loss, case)))
            return findings, None
        divergent = _first_divergent_step(result, reference, case)
        if divergent is not None:
            findings += _diagnose_step(result, case, baselines.problem, divergent)
        return findings, divergent


def _loss_only_finding(loss: float, reference: float, case: Case) -> str:
    """What a wrong loss beside right gradients looks like: rounded to float32 on the way
    (within one float32 ulp of the reference's loss in a float64 case), or a forward-pass
    or reduction mistake."""
    if case.dtype == "float64" and np.isfinite(reference):
        nearest = np.float32(reference)
        if abs(loss - float(nearest)) <= float(np.spacing(np.abs(nearest))):
            return ("the loss differs but the gradients agree, and it is the float64 loss "
                    "rounded to float32 (within one float32 ulp): a float32 value on the way "
                    "(torch.tensor of a Python float, np.float32, a float32 array)")
    return "the loss differs but the gradients agree: check the forward pass / loss reduction"


def _dtype_findings(loss: float, grads: Mapping[str, np.ndarray], case: Case) -> list:
    """A gradient in another dtype than the case's is worth saying (a float64 gradient
    for a float32 case often means an integer-valued derivative or a stray Python
    float), though its numbers are judged as they are."""
    return [Finding(name, "dtype", f"returned {np.asarray(value).dtype} for a {case.dtype} "
                    "case (an integer-valued derivative or a stray Python float promotes "
                    "it); the numbers are judged as they are")
            for name, value in grads.items() if np.asarray(value).dtype != case.dtype]


def _run_steps(
    plugin: Plugin, case: Case, problem: Problem, loss: float, grads: dict
) -> RunResult:
    """The user's training loop: their gradients feed their step, ``case.steps`` times."""
    losses, trajectory = [loss], []
    if plugin.step is not None:
        params, step_grads, state = dict(problem.params), grads, None
        for completed in range(1, case.steps + 1):
            params, state = call_step(plugin, params, step_grads, state, case)
            trajectory.append(params)
            x, y, _ = problem.batch(completed)
            step_loss, step_grads = call_gradients(plugin, params, x, y, case)
            losses.append(step_loss)
    return RunResult(YOURS, case.id, loss, grads, tuple(trajectory), np.array(losses))


def _compare(result: RunResult, case: Case, baselines: _Baselines, with_steps: bool) -> list:
    differences: list[Difference] = []
    for baseline in baselines.results.values():
        differences += compare_pair(result, baseline, case, problem=baselines.given,
                                    steps=None if with_steps else ())
    estimate = baselines.finite_differences
    if estimate is not None:
        differences += compare_with_estimate(case, estimate, result.gradients, YOURS,
                                             _against_truth(case, baselines))
    return differences


def _against_truth(case: Case, baselines: _Baselines) -> dict[str, float]:
    """Per parameter, how far an implementation's gradient may be from the true one
    (finite differences in float64): its own rounding. Never tighter than the case's
    fixed tolerance, nor than the gradient's derived tolerance, which is how far the
    run allows a float32 implementation from the float64 oracle and which grows with the
    conditioning of the data (saturated units: ``1 - tanh(z)**2`` cancels in float32)."""
    least = max(fixed_tolerance(case.dtype), FINITE_DIFFERENCE_TOLERANCE)
    model = floors(case, baselines.given)  # its gradient tolerances are the full model's
    return {name: max(least, model.normwise("gradient", name))
            for name in baselines.problem.params}


def _probe(plugin: Plugin, case: Case, problem: Problem, result: RunResult) -> list[Finding]:
    """Call the implementation again: same inputs, then moved parameters."""
    findings = []
    try:
        x, y, _ = problem.batch(0)
        again, _ = call_gradients(plugin, problem.params, x, y, case)
        moved = {n: (np.asarray(p) * 1.5 + 0.1).astype(p.dtype)
                 for n, p in problem.params.items()}
        shifted, _ = call_gradients(plugin, moved, x, y, case)
    except (PluginError, UserCodeError, CaseNotHandled):
        return findings
    if again != result.loss:
        findings.append(Finding("all", "nondeterministic", f"the same inputs gave different "
                                f"losses ({result.loss!r}, then {again!r}): random state inside?"))
    elif shifted == result.loss:
        findings.append(Finding("params", "ignores_params", "the loss does not change when "
                                "params change: the implementation ignores the params it is "
                                "given (weights re-initialised inside the function?)"))
    return findings


def _first_divergent_step(result: RunResult, reference: RunResult, case: Case) -> int | None:
    for step in range(1, len(result.trajectory) + 1):
        for name, value in reference.parameters_after(step).items():
            difference = compare_arrays(
                result.parameters_after(step)[name], value, case_id=case.id, dtype=case.dtype,
                framework=YOURS, baseline_name="numpy", quantity=f"params@{step}",
                parameter=name, tolerance=fixed_tolerance(case.dtype),
            )
            if not difference.passed:
                return step
    return None


def _diagnose_step(result: RunResult, case: Case, problem: Problem, step: int) -> list:
    """Replay the reference optimizer in float64 along the user's trajectory up to ``step``."""
    case64 = replace(case, dtype="float64")
    wide = problem.as_float64()
    textbook, optimizer = Textbook(), OPTIMIZERS[case.optimizer]
    params = wide.params
    state = optimizer.init(params)

    def hp(completed: int) -> dict:
        return step_hyperparameters(case.hparams, case.all_options, completed, case.steps)

    for completed in range(1, step):
        x, y, _ = wide.batch(completed - 1)
        _, grads = textbook.gradients(params, x, y, case64)
        _, state = optimizer.update(params, grads, state, hp(completed - 1))
        params = {n: np.asarray(v, np.float64)
                  for n, v in result.parameters_after(completed).items()}
    x, y, _ = wide.batch(step - 1)
    _, grads = textbook.gradients(params, x, y, case64)
    after = result.parameters_after(step)
    correct, _ = optimizer.update(params, grads, state, hp(step - 1))
    tol = diagnosis_match_tolerance(case.dtype)
    wrong = {n for n in params
             if np.abs(after[n] - correct[n]).max() > tol * max(np.abs(correct[n]).max(), 1e-300)}
    findings = [Finding("steps", "divergence", f"gradients agree; the parameters first "
                        f"diverge at step {step} (steps before agree): the update rule")]
    return findings + diagnose_update(after, params, grads, state, case, step,
                                      wrong or set(params))


def verify(
    gradients: Callable[..., Any] | str,
    step: Callable[..., Any] | None = None,
    *,
    cases: Iterable[Case] | None = None,
    frameworks: Sequence[str] = tuple(FRAMEWORKS),
    name: str | None = None,
    **filters: Any,
) -> CheckReport:
    """Check ``gradients`` (and ``step``) and return every case's verdict.

    ``gradients`` is the contract callable, an object with ``gradients``/``step``
    methods, or a spec such as ``"my_mlp.py:gradients"``. ``cases`` defaults to
    the built-in check matrix, filtered by ``activation``, ``loss``, ``dtype``,
    ``optimizer``, ``case`` (id text) and repeated over ``seeds``.
    """
    if isinstance(gradients, str):
        plugin = load_plugin(gradients, find_step=step is None)
        if step is not None:
            plugin = replace(plugin, step=step)
    elif not callable(gradients) and hasattr(gradients, "gradients"):
        plugin = Plugin(name or type(gradients).__name__, gradients.gradients,
                        step or getattr(gradients, "step", None),
                        supports=getattr(gradients, "supports", None))
    else:
        plugin = Plugin(name or getattr(gradients, "__qualname__", "gradients"), gradients, step)
    if cases is None:
        cases = select_cases(**filters)
    elif filters:
        raise ValueError(f"filters {sorted(filters)}: give either cases or filters, not both")
    return Verifier(frameworks=frameworks).verify(plugin, cases)
