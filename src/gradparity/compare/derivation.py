"""Deriving the tolerance model for one case: the measurements behind every ``K``.

The model's formulas and constants are in :mod:`gradparity.compare.tolerances`; this
module measures, in float64 on the case's own weights and data, what they need:

* one forward and backward pass: ``n_eff`` and the cancellation ``kappa`` per layer
  (:func:`floors`, enough for the loss, gradient and delta tolerances);
* the reference trajectory rerun with perturbed gradients, updates and optimizer
  state (:func:`derive`): the sensitivities ``S_t``, ``S^c_t``, ``U_t``, ``R_t`` and
  the step sizes ``D_t``.

Both are cached per case for generated data.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from gradparity import reference
from gradparity.compare import random_signs
from gradparity.compare.absolute_layers import absolute_gradients
from gradparity.compare.branches import KinkFlip
from gradparity.compare.metrics import largest, largest_difference, machine_epsilon
from gradparity.compare.probes import (
    ABSOLUTE_BACKPROP,
    conditioning,
    entry_rounding,
    loss_terms,
    mlp_sums,
    reference_rounding,
    sequence_sums,
)
from gradparity.compare.tolerances import (
    PERTURBATION,
    SUM_SAFETY,
    Tolerances,
)
from gradparity.reference.blocks import elementwise
from gradparity.reference.namespace import named, to_numpy
from gradparity.reference.namespace import namespace as namespace_of
from gradparity.reference.network import freeze
from gradparity.reference.optimizers import state_arrays
from gradparity.reference.schedules import step_hyperparameters
from gradparity.reference.sequence import running_entries
from gradparity.spec.case import Case
from gradparity.spec.data import Problem, make_problem, placed
from gradparity.spec.evaluation import Pass, evaluate, layer_index

if TYPE_CHECKING:
    from gradparity.adapters.base import RunResult


_DERIVED: OrderedDict[Case | tuple[Case, int], Tolerances] = OrderedDict()
"""The full models of generated data (a case, or a case and another draw), the most
recently used last."""

DERIVED_CACHE_SIZE = 512


def clear_caches() -> None:
    """Forget every derived model (after the reference was patched, or to time a run)."""
    _DERIVED.clear()
    _static.cache_clear()


def derived_cases() -> int:
    """How many cases' full models are cached (since the last :func:`clear_caches`; the
    confirming draws not counted)."""
    return sum(isinstance(key, Case) for key in _DERIVED)


def floors(case: Case, problem: Problem | None = None) -> Tolerances:
    """The model without its trajectory terms: every ``K`` here is at most the one
    :func:`derive` gives (``S_t``, ``S^c_t``, ``U_t``, ``R_t``, ``D_t`` and the loss
    sensitivities all enter as non-negative terms or as ``max(1, .)``), and the loss,
    gradient and delta tolerances are exactly the derived ones.

    It costs one forward and backward pass instead of up to five trajectories, so a check
    that passes its floor passes the full model too: screening (``tolerances=
    "screened"`` in :func:`gradparity.harness.runner.run_case`) derives the full model only for
    a pair where some check exceeds its floor. Verdicts are the same either way.

    ``problem``: the weights and data the case really ran on, where they are not the
    generated ones (:func:`gradparity.spec.data.problem_from_arrays`)."""
    return _static(case) if problem is None else _static_of(case, problem)


def derive(case: Case, problem: Problem | None = None,
           clean: RunResult | None = None, draw: int = 0,
           like: Tolerances | None = None, namespace: str = "numpy") -> Tolerances:
    """Evaluate the model on the case's weights and data (``problem``, or the generated
    ones), in float64. Cached per case for generated data.

    ``clean``: the reference's float64 run of this case on the same data (a float32
    case's float64 oracle, ``gradparity.harness.runner.float64_oracle``, or a float64
    case's own NumPy run: the reference in float64 from the same inputs). Its
    steps are the model's clean trajectory, computed by the same code: where the case
    has no kink to watch (the clean trajectory then only records its steps) they are
    read from it instead of computed a second time. The same model, to the bit
    (``tests/compare/test_derivation_reuse.py``).

    ``draw``: which random draw of the perturbations the trajectory terms come from; 0
    is the model every check is judged against, the others confirm a disagreement
    (:mod:`gradparity.compare.confirmation`). ``like``: a model of the same case and
    data whose terms without a trajectory a draw reuses instead of measuring them
    again (the same model either way).

    ``namespace``: the array library the trajectories compute with (one of
    :data:`gradparity.reference.namespace.NAMESPACES`; a dense MLP's only, CuPy on a
    GPU), their steps brought back to NumPy to be measured; the one-pass terms stay
    NumPy's."""
    xp = named(namespace)
    if xp is not np and case.is_sequence:
        raise ValueError(f"namespace: invalid value {namespace!r} for the sequence network "
                         f"of {case.id}; allowed: numpy (only dense MLPs run on another "
                         "array namespace)")
    if problem is not None:
        static = like if draw and like is not None else _static_of(case, problem)
        return _with_trajectories(case, static, problem.as_float64(), clean, draw, xp)
    key = (case, draw) if draw else case
    if xp is not np:
        key = (case, draw, namespace)
    cached = _DERIVED.get(key)
    if cached is None:
        static = like if draw and like is not None else _static(case)
        cached = _with_trajectories(case, static, make_problem(case).as_float64(), clean,
                                    draw, xp)
        if len(_DERIVED) >= DERIVED_CACHE_SIZE:
            _DERIVED.popitem(last=False)
    _DERIVED[key] = cached
    _DERIVED.move_to_end(key)
    return cached


@functools.lru_cache(maxsize=512)
def _static(case: Case) -> Tolerances:
    return _static_of(case, make_problem(case))


def _static_of(case: Case, problem: Problem) -> Tolerances:
    """n_eff, kappa and the constants A and B: one forward and backward pass."""
    wide = problem.as_float64()
    exact = evaluate(case, wide.params, wide.batch(0), wide.state)
    if case.is_sequence:
        n_eff, per_layer = sequence_sums(case)
    else:
        n_eff, per_layer = mlp_sums(case, wide)
    hp = case.hparams
    bias = (hp["beta1"] / (1 - hp["beta1"]) + hp["beta2"] / (2 * (1 - hp["beta2"]))
            if case.optimizer in ("adam", "adamw", "amsgrad") else 0.0)
    return Tolerances(dtype=case.dtype, n_eff=n_eff, kappa=per_layer,
                      conditioning={**conditioning(case, wide, exact),
                                    "loss terms": loss_terms(case, exact)},
                      rounding=reference_rounding(case, wide, exact), sensitivity={},
                      componentwise={}, moved={}, bias_correction_eps=bias, state_rounding={},
                      step_size={}, loss_sensitivity=(0.0, 0.0, 0.0),
                      stored_bias_eps=hp["beta2"] / (1 - hp["beta2"])
                      if hp.get("max_of_bias_corrected") else 0.0,
                      steps=case.steps, floor=True, layer_of=layer_index(case),
                      parameters=tuple(wide.params))


def _with_trajectories(case: Case, static: Tolerances, wide,
                       recorded: RunResult | None = None, draw: int = 0,
                       xp: Any = np) -> Tolerances:
    """The model's trajectory terms, from the clean float64 trajectory and up to four
    perturbed ones. The trajectories run side by side, one step at a time, and only
    the current and previous step of each is held: memory stays a few copies of the
    parameters and optimizer state, whatever the number of steps. ``recorded``: the
    clean trajectory already run; ``draw``: the perturbations' draw (see :func:`derive`);
    ``xp``: the namespace the trajectories compute with (their steps come back as NumPy
    arrays)."""
    params, n_eff, bias = wide.params, static.n_eff, static.bias_correction_eps
    on = placed(wide, xp)
    sensitivity, moved, componentwise, branched = {}, {}, {}, {}
    # the clean run counts values within rounding of a kink; from the first pass with
    # one, a branch trajectory takes the other side of every such value (X_t)
    watch, forks = KinkFlip(case, flip=False), []
    if recorded is not None and not watch.active:
        clean = _steps_of(case, recorded)
    else:
        clean = _trajectory(case, on, noise=None, kinks=watch if watch.active else None,
                            forks=forks)
    first = next(clean, None)
    branch = None
    # every perturbed trajectory starts with the same unperturbed pass: it is run once
    # (with its forward cache, which the componentwise probe's absolute sums start from)
    start = evaluate(case, on.params, on.batch(0), on.state,
                     keep_forward=True) if case.steps else None
    runs = {"gradient": _trajectory(case, on, noise="gradient", initial=start,
                                    draw=draw)}
    # U_t only ever multiplies the bias-correction term A, which is zero outside the
    # Adam family and in float64; R_t exists only for optimizers that keep state
    if bias and case.dtype == "float32":
        runs["update"] = _trajectory(case, on, noise="update", initial=start, draw=draw)
    # at the size rounding really has in this dtype: RMSprop's g / sqrt(v) is far from
    # linear where v is tiny, so a 1e-7 probe would underestimate float32
    entry_size = SUM_SAFETY * math.sqrt(n_eff) * machine_epsilon(case.dtype)
    runs["componentwise"] = _trajectory(case, on, noise="componentwise",
                                        size=entry_size, initial=start, draw=draw)
    if first is not None and any("/" in name for name in first[0]):
        runs["state"] = _trajectory(case, on, noise="state", initial=start, draw=draw)
    del start  # each trajectory holds it only until its first step
    losses = {name: [] for name in ("clean", *runs, "branch")}
    state_rounding, step_size, largest_update = {}, {}, {n: 0.0 for n in params}
    before = params
    for step in range(1, case.steps + 1):
        if branch is None and forks and forks[0].evaluation < step:
            branch = _trajectory(case, on, noise=None, kinks=KinkFlip(case),
                                 start=forks[0])
        exact, loss = first if step == 1 else next(clean)
        losses["clean"].append(loss)
        branched_step, branched_loss = (exact, loss) if branch is None else next(branch)
        losses["branch"].append(branched_loss)
        perturbed = {}
        for name, run in runs.items():
            perturbed[name], loss = next(run)
            losses[name].append(loss)
        # parameters and optimizer state slots alike: "W1", "first_moment/W1", ...
        scale = {n: max(largest(exact[n]), np.finfo(float).tiny) for n in exact}
        sensitivity[step] = _moved(perturbed["gradient"], exact, scale, PERTURBATION)
        if "update" in runs:
            moved[step] = _moved(perturbed["update"], exact, scale, PERTURBATION)
        componentwise[step] = _moved(perturbed["componentwise"], exact, scale,
                                     machine_epsilon(case.dtype))
        branched[step] = _moved(branched_step, exact, scale, machine_epsilon(case.dtype))
        state_rounding[step] = ({n: v for n, v in _moved(perturbed["state"], exact, scale,
                                                         PERTURBATION).items() if "/" in n}
                                if "state" in runs else {})
        largest_update = {n: max(largest_update[n], largest_difference(exact[n], before[n]))
                          for n in params}
        # rounding an update d is relative to d: where updates exceed the parameters
        # (RMSprop's first steps), one rounding per step is more than one eps of p
        step_size[step] = {n: largest_update[n] / scale[n] for n in params}
        before = exact
    clean_losses = np.array(losses["clean"])
    gradient_losses = np.array(losses["gradient"])
    update_losses = np.array(losses["update"]) if "update" in runs else clean_losses
    entry_losses = np.array(losses["componentwise"])

    def loss_sensitivity(losses: np.ndarray) -> float:
        if not len(losses):
            return 0.0
        change = np.abs(losses - clean_losses) / np.maximum(np.abs(clean_losses), 1e-300)
        return float(change.max() / PERTURBATION)

    branch_change = (np.abs(np.array(losses["branch"]) - clean_losses).max()
                     / max(float(np.abs(clean_losses).max()), 1e-300)) if case.steps else 0.0
    return replace(static, sensitivity=sensitivity, componentwise=componentwise, moved=moved,
                   state_rounding=state_rounding, step_size=step_size, floor=False,
                   branched=branched,
                   # a value near a kink in the last pass (the final loss) moves no step
                   branch_from=(forks[0].evaluation if forks and forks[0].evaluation
                                < case.steps else None),
                   branched_loss=float(branch_change) / machine_epsilon(case.dtype),
                   loss_sensitivity=(loss_sensitivity(gradient_losses),
                                     loss_sensitivity(update_losses),
                                     loss_sensitivity(entry_losses) * PERTURBATION
                                     / machine_epsilon(case.dtype)))


def _steps_of(case: Case, run: RunResult):
    """A run's steps as :func:`_trajectory` yields them: per step the parameters, optimizer
    state slots and running statistics after it, and the loss there."""
    for step in range(1, case.steps + 1):
        yield {**run.parameters_after(step), **run.states[step - 1]}, float(run.losses[step])


def _moved(perturbed, exact, scale, unit) -> dict[str, float]:
    """How far each entry of a perturbed trajectory's step moved, in ``unit`` x its scale."""
    return {n: largest_difference(perturbed[n], exact[n]) / (unit * scale[n]) for n in exact}


@dataclass(frozen=True)
class _Fork:
    """Where the clean trajectory first met a value near a kink: the pass's index and
    the parameters, optimizer state and running statistics it started from."""

    evaluation: int
    params: dict
    state: Any
    running: dict


def _trajectory(case, problem, noise, size=PERTURBATION, kinks: KinkFlip | None = None,
                forks: list[_Fork] | None = None, start: _Fork | None = None,
                initial: Pass | None = None, draw: int = 0):
    """The float64 reference trajectory, one step at a time: per step the parameters,
    optimizer state slots and running statistics after it, and the loss there; optionally
    with every gradient entry multiplied by
    ``1 +- PERTURBATION`` (random signs, like rounding), moved by ``+- size`` times the
    absolute sum of its terms (``componentwise``), every optimizer state entry and
    running statistic multiplied by ``1 +- PERTURBATION`` after each step (``state``), or
    every update scaled by ``1 + PERTURBATION`` (one sign, like a misrounded constant).

    ``kinks`` is every pass's ``perturb``: a flipping :class:`KinkFlip` takes the other
    side of every kink within rounding (the branch trajectory, which begins at ``start``),
    a counting one records in ``forks`` the first pass that has such a value.

    ``initial``: the unperturbed first pass, already run (a trajectory without
    ``kinks`` or ``start``; the componentwise one of an MLP needs its forward cache).
    The last pass gives only the loss, so it runs no backward pass. ``draw``: 0 for the
    model's own streams of random signs, any other number for streams of their own."""
    optimizer = reference.OPTIMIZERS[case.optimizer]
    rng = np.random.default_rng(case.seed if not draw else [case.seed, 3, draw])
    # the float32 probe's own stream: the signs drawn from ``rng`` stay what they were
    probe_rng = np.random.default_rng([case.seed, 2] if not draw else [case.seed, 2, draw])
    if start is None:
        first, current = 0, dict(problem.params)
        state, running = optimizer.init(problem.params), dict(problem.state)
    else:
        first, current, state, running = (start.evaluation, start.params, start.state,
                                          start.running)
    options = case.all_options
    xp = namespace_of(*current.values())

    def rounded_state(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: random_signs.scaled(v, PERTURBATION, rng) for n, v in values.items()}

    # the componentwise probe starts its absolute sums from each pass's forward cache
    keep_forward = noise == "componentwise"

    def evaluated(evaluation: int, entering: dict):
        result = evaluate(case, current, problem.batch(evaluation), entering,
                          perturb=kinks.reset() if kinks is not None else None,
                          backward=evaluation < case.steps, keep_forward=keep_forward)
        if forks is not None and not forks and kinks is not None and kinks.found:
            forks.append(_Fork(evaluation, current, state, entering))
        return result

    entering = running  # the running statistics the last pass started from
    result = initial if initial is not None else evaluated(first, entering)
    del initial
    for step in range(first, case.steps):
        grads, running = result.gradients, result.state or running
        if noise == "gradient":
            grads = {n: random_signs.scaled(g, PERTURBATION, rng) for n, g in grads.items()}
        elif noise == "componentwise":
            # each entry carries the rounding of the sums of its terms' absolute values
            scales = (absolute_gradients(case.network(), current, result.forward)
                      if case.is_sequence else
                      ABSOLUTE_BACKPROP.backward(result.forward).params)
            # each entry's rounding: the sum model, or the reference's own measured
            # rounding where that is larger (saturation, cancellation inside the loss)
            measured = entry_rounding(case, current, problem.batch(step), entering, grads,
                                       probe_rng)
            # unclipped: an entry smaller than its own rounding level has no reliable
            # sign, and an optimizer that normalises by sqrt(v) turns that into a full step
            # either way; the tolerance must (and the report flags it when it is loose)
            grads = {n: random_signs.moved(g, elementwise(
                         lambda scale, entry: xp.maximum(size * scale, entry), scales[n],
                         measured[n]), rng) for n, g in grads.items()}
        result = None  # the pass's activations are not held through the update
        hp = step_hyperparameters(case.hparams, options, step, case.steps)
        new, state = optimizer.update(current, grads, state, hp)
        if noise == "update":
            # systematic, like a misrounded constant: every update scaled by 1 + delta
            new = {n: elementwise(lambda before, after: before + (after - before)
                                  * (1 + PERTURBATION), current[n], new[n]) for n in new}
        elif noise == "state":
            # every state entry rounded once per step, relative to itself
            state = state._replace(**{
                slot: rounded_state(value)
                for slot, value in state._asdict().items() if isinstance(value, dict)})
            running = rounded_state(running)
        current = freeze(new)  # this generator's own: forward keeps them without a copy
        # the loss after this step is the next step's forward pass
        entering = running
        result = evaluated(step + 1, entering)
        step_values = {**current, **state_arrays(case.optimizer, state, case.hparams,
                                                 copy=False), **running_entries(running)}
        # another namespace's steps come back to the host, where they are measured
        yield step_values if xp is np else to_numpy(step_values), float(result.loss)
