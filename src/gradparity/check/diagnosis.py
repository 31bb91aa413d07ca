"""Say what a wrong gradient or update looks like, not only that it differs.

Per parameter, in this order: a wrong shape (transposed, bias reduced over the
wrong axis), non-finite values, all zeros, a match with a named kind of bug
(a missing activation derivative at layer k, the derivative evaluated at the
activation instead of the pre-activation, a missing transpose, weights updated
before the gradient below was computed, and for updates: optimizer state not
carried, Adam without bias correction, eps inside the square root, weight decay
coupled/decoupled the wrong way), a constant factor (named where it is 2, the
batch size, ...), a wrong sign, the right direction at the wrong scale. Across
parameters, the layers that are wrong localise where the error enters backward.

Hypotheses are the shapes of the one bug catalogue (:mod:`gradparity.check.bugs`),
computed in float64 with the textbook implementation and matched within
:func:`gradparity.compare.tolerances.diagnosis_match_tolerance`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradparity.check.bugs import (
    Bug,
    compound_candidates,
    gradient_hypotheses,
    update_hypotheses,
)
from gradparity.check.layer_bugs import layer_hypotheses
from gradparity.check.textbook import Textbook
from gradparity.compare.tolerances import diagnosis_match_tolerance
from gradparity.reference import OPTIMIZERS, parameter_names
from gradparity.reference.schedules import step_hyperparameters
from gradparity.spec.case import Case
from gradparity.spec.data import Problem
from gradparity.spec.evaluation import layer_index


@dataclass(frozen=True)
class Finding:
    """One diagnosis: ``parameter`` is ``W2``, ``b1``, or ``layers`` for a summary."""

    parameter: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.parameter}: {self.message}"


def match_tolerance(dtype: str) -> float:
    """Within this normwise distance a hypothesis matches (see
    :data:`gradparity.compare.tolerances.DIAGNOSIS_MATCH_FACTOR`)."""
    return diagnosis_match_tolerance(dtype)


def _normwise(a: np.ndarray, b: np.ndarray) -> float:
    scale = float(np.abs(b).max()) if b.size else 0.0
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else np.inf)


def named_factors(case: Case) -> dict[float, list[str]]:
    """Constant factors that common bugs introduce, with their explanations."""
    batch, outputs = case.batch_size, case.output_shape[-1]
    elements = batch * outputs
    candidates = [
        (2.0, "2 (an extra factor 2)"), (0.5, "1/2 (the 2 of d/dx x^2 dropped)"),
        (float(batch), f"the batch size {batch} (a missing 1/batch: sum instead of mean)"),
        (1 / batch, f"1/{batch} (divided by the batch size once too often)"),
        (float(elements), f"batch*outputs = {elements} (the 1/n of the mean dropped)"),
        (1 / elements, f"1/(batch*outputs) = 1/{elements} (an extra mean)"),
        (elements / 2, f"batch*outputs/2 = {elements / 2:g} (the 2/n of the mean dropped)"),
        (2 / elements, f"2/(batch*outputs) = {2 / elements:g} (an extra 2/n)"),
        (float(outputs), f"the number of outputs {outputs}"),
        (1 / outputs, f"1/{outputs} (divided by the number of outputs)"),
    ]
    if "lr" in case.hparams:
        lr = case.hparams["lr"]
        candidates += [(lr, f"the learning rate {lr:g} (applied twice?)"),
                       (1 / lr, f"1/lr = {1 / lr:g} (the learning rate not applied)")]
    table: dict[float, list[str]] = {}
    for value, text in candidates:
        key = next((k for k in table if np.isclose(k, value, rtol=1e-12)), value)
        if value != 1.0:
            table.setdefault(key, []).append(text)
    return table


def _named(factor: float, case: Case, tol: float) -> list[str]:
    return [text for value, texts in named_factors(case).items()
            if np.isclose(abs(factor), value, rtol=max(tol, 1e-9)) for text in texts]


def _shape_finding(name: str, user: np.ndarray, ref: np.ndarray, case: Case) -> Finding:
    what = "update of " + name if name.startswith("update") else name
    if user.shape == ref.T.shape and user.ndim == 2:
        same = _normwise(user.T, ref) <= match_tolerance(case.dtype)
        detail = " and the values match the transpose" if same else ""
        return Finding(name, "transposed", f"transposed: shape {user.shape} instead of "
                       f"{ref.shape} (W must be (fan_in, fan_out)){detail}")
    if name.startswith("b") and user.shape == (case.batch_size,):
        return Finding(name, "wrong_axis", f"reduced over the wrong axis: shape {user.shape} "
                       f"(the batch) instead of {ref.shape}; sum delta over axis 0")
    if user.size == ref.size:
        return Finding(name, "shape", f"shape {user.shape} instead of {ref.shape} "
                       "(an extra or missing axis?)")
    return Finding(name, "shape", f"{what}: shape {user.shape} instead of {ref.shape}")


def classify(
    name: str,
    user: np.ndarray,
    ref: np.ndarray,
    case: Case,
    hypotheses: Mapping[tuple[str, str], np.ndarray],
    subject: str = "gradient",
) -> Finding:
    """Diagnose one array ``user`` against the correct ``ref`` (float64)."""
    user = np.asarray(user, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    tol = match_tolerance(case.dtype)
    if user.shape != ref.shape:
        return _shape_finding(name, user, ref, case)
    if not np.isfinite(user).all():
        index = np.unravel_index(int(np.argmax(~np.isfinite(user))), user.shape)
        return Finding(name, "nonfinite", f"the {subject} contains {user[index]} at index "
                       f"{tuple(int(i) for i in index)} (overflow, log(0) or 0/0?)")
    if not user.any() and ref.any():
        return Finding(name, "zero", f"the {subject} is all zeros (never computed?)")
    if (user.ndim == 2 and user.shape[0] == user.shape[1] and _normwise(user, ref.T) <= tol
            and _normwise(ref, ref.T) > tol):
        return Finding(name, "transposed", f"{name} is the transpose of the correct {subject} "
                       f"(square, so no shape error shows it; W is (fan_in, fan_out) and "
                       "dW = a^T delta)")
    matches = [
        (kind, description) for (kind, description), value in hypotheses.items()
        if value.shape == user.shape and _normwise(user, value) <= tol
        and _normwise(ref, value) > tol
    ]
    if matches:
        # several named bugs can give the same numbers (at step 1 Nesterov-missing
        # and momentum-ignored coincide): name them all
        return Finding(name, "|".join(kind for kind, _ in matches),
                       "matches a known bug: " + " or ".join(text for _, text in matches))
    if ref.any():
        factor = float(np.vdot(user, ref) / np.vdot(ref, ref))
        proportional = _normwise(user, factor * ref) <= tol
        if user.size == 1 and not _named(factor, case, tol):
            # one number is proportional to anything: say only what it is
            return Finding(name, "differs", f"{user.item()!r} instead of {ref.item()!r} "
                           f"(ratio {factor:.6g})")
        if proportional and abs(factor - 1.0) <= tol:
            # within the diagnosis's resolution of the right answer: no factor to name
            return Finding(name, "differs", f"differs from the correct {subject} by "
                           f"{_normwise(user, ref):.2e} normwise, below the resolution of the "
                           f"bug shapes ({tol:.1e}): no known bug this small")
        if proportional and np.isclose(factor, -1.0, rtol=tol, atol=0):
            return Finding(name, "sign",
                           f"wrong sign: the {subject} is exactly -1 x the correct one")
        if proportional:
            names = _named(factor, case, tol)
            sign = "wrong sign and " if factor < 0 else ""
            if names:
                return Finding(name, "factor", f"{sign}off by a constant factor x{factor:.6g}: "
                               + " or ".join(names))
            return Finding(name, "scale", f"{sign}right direction, wrong scale: exactly "
                           f"x{factor:.6g} the correct {subject}")
        cosine = float(np.vdot(user, ref) / (np.linalg.norm(user) * np.linalg.norm(ref)))
        if cosine > 0.999:
            return Finding(name, "direction", f"nearly the right direction (cosine {cosine:.5f})"
                           f" but not a constant multiple; norm ratio "
                           f"{np.linalg.norm(user) / np.linalg.norm(ref):.4g}")
        return Finding(name, "differs", f"differs: cosine {cosine:.3f} with the correct "
                       f"{subject}, normwise relative error {_normwise(user, ref):.2e}")
    return Finding(name, "differs", f"should be zero, normwise size {np.abs(user).max():.2e}")


def localise(wrong: set[str], case: Case) -> Finding | None:
    """Which layers and parameters are wrong, which are right, and what that says about
    where the error enters."""
    if case.is_sequence:
        return _localise_sequence(wrong, case)
    names = [name for name in _parameter_names(case)]
    layers = sorted({int(name[1:]) for name in wrong if name[:1] in "Wb" and name[1:].isdigit()})
    if not layers:
        return None
    right = [name for name in names if name not in wrong]
    kinds = {name[0] for name in wrong}
    last = case.num_layers
    if right and kinds == {"b"} and all(f"W{layer}" in right for layer in layers):
        text = (f"only bias gradients are wrong ({', '.join(sorted(wrong))}); every weight "
                "gradient is right, so the deltas are right: the error is in db, not in "
                "backprop")
    elif right and kinds == {"W"} and all(f"b{layer}" in right for layer in layers):
        text = (f"only weight gradients are wrong ({', '.join(sorted(wrong))}); the bias "
                "gradients of those layers are right, so the deltas are right: the error is "
                "in dW = a^T delta")
    elif len(layers) == 1:
        text = f"only layer {layers[0]} is wrong"
        if layers[0] == last:
            text += " (the output layer: its weight/bias gradient formula, not the loss gradient)"
    elif layers == list(range(1, last + 1)) and not right:
        text = ("every parameter is wrong: the error enters at the output (loss gradient or "
                "output activation derivative) or is a global factor")
    elif layers == list(range(1, layers[-1] + 1)) and not any(
            n in right for layer in layers for n in (f"W{layer}", f"b{layer}")):
        text = (f"layers 1..{layers[-1]} are wrong and the layers above are right: the error "
                f"enters the backward pass at layer {layers[-1]} and propagates down")
    else:
        text = "wrong: " + ", ".join(n for n in names if n in wrong)
    if right and (text.startswith("wrong:") or text.startswith("only layer")):
        text += "; right: " + ", ".join(right)
    return Finding("layers", "localisation", text)


def _localise_sequence(wrong: set[str], case: Case) -> Finding | None:
    """A sequence network's wrong parameters by layer: backward runs from the last layer
    down, so the highest layer with a wrong gradient is where the error enters (or a
    parameter-free layer just above it)."""
    index, names = layer_index(case), case.network().stack.names
    wrong_layers = sorted({index[name] for name in wrong if name in index})
    if not wrong_layers:
        return None
    right = [name for name in _parameter_names(case) if name not in wrong]
    top = names[wrong_layers[-1] - 1]
    above = [name for name in right if index[name] > wrong_layers[-1]]
    text = (f"the highest layer with a wrong gradient is {top} (layer {wrong_layers[-1]} of "
            f"{len(names)}): the error enters the backward pass there")
    if wrong_layers[-1] < len(names):
        text += (f", or in the input gradient dL/dx of the layer above it "
                 f"({names[wrong_layers[-1]]}), whose own parameters may still be right")
    if above:
        text += f"; right above it: {', '.join(above)}"
    below_right = [name for name in right if index[name] < wrong_layers[-1]]
    if below_right:
        text += f"; right below it: {', '.join(below_right)} (the error does not reach them)"
    return Finding("layers", "localisation", text)


def _parameter_names(case: Case) -> list[str]:
    if case.is_sequence:
        return list(case.network().parameter_shapes())
    return list(parameter_names(case.num_layers, bool(case.option("bias"))))


COMPOUND_SIZE = 3
"""The diagnosis searches combinations of up to this many known bugs."""


def _compound(user: Mapping[str, np.ndarray], correct: Mapping[str, np.ndarray],
              wrong: set[str], case64: Case, arrays: tuple, tol: float) -> list[tuple[Bug, ...]]:
    """The smallest combinations of known bug shapes that reproduce every gradient the
    user returned (the right ones included), or nothing."""
    params64, x64, y64 = arrays
    comparable = [n for n in correct if np.shape(user[n]) == correct[n].shape]
    mine = {n: np.asarray(user[n], np.float64) for n in comparable}

    def explains(grads: Mapping[str, np.ndarray]) -> bool:
        return all(_normwise(mine[n], grads[n]) <= tol for n in comparable)

    candidates = [bug for bug in (layer_hypotheses(case64) if case64.is_sequence
                                  else compound_candidates(case64)) if bug.applies(case64)]
    alone = {bug: Textbook([bug]).gradients(params64, x64, y64, case64)[1]
             for bug in candidates}
    if any(explains(grads) for grads in alone.values()):
        return []  # one known bug explains everything: the per-parameter findings say it
    right = [n for n in comparable if n not in wrong]
    # a part of the combination changes some wrong parameter and no right one
    parts = [bug for bug, grads in alone.items()
             if any(_normwise(grads[n], correct[n]) > tol for n in wrong if n in grads)
             and all(_normwise(grads[n], correct[n]) <= tol for n in right)]
    for size in range(2, COMPOUND_SIZE + 1):
        found = [combination for combination in itertools.combinations(parts, size)
                 if explains(Textbook(combination).gradients(params64, x64, y64, case64)[1])]
        if found:
            return found
    return []


def diagnose_gradients(
    user: Mapping[str, np.ndarray], case: Case, problem: Problem, wrong: set[str]
) -> list[Finding]:
    """Findings for every parameter in ``wrong``, then the localisation summary.

    Each parameter is matched against single known bugs first; where no single bug
    explains every wrong parameter, combinations of up to :data:`COMPOUND_SIZE` are
    searched, and the smallest set that reproduces all gradients is named."""
    wide = problem.as_float64()
    (x64, y64, _), params64 = wide.batch(0), wide.params
    case64 = replace(case, dtype="float64")
    _, correct = Textbook().gradients(params64, x64, y64, case64)
    hypotheses_by_param: dict[str, dict[tuple[str, str], np.ndarray]] = {n: {} for n in correct}
    for bug in (layer_hypotheses(case64) if case.is_sequence else gradient_hypotheses(case64)):
        _, alternative = Textbook([bug]).gradients(params64, x64, y64, case64)
        for name, value in alternative.items():
            hypotheses_by_param[name][(bug.kind, bug.describe(case64))] = value
    findings = [
        classify(name, user[name], correct[name], case, hypotheses_by_param[name])
        for name in problem.params if name in wrong
    ]
    if _unexplained(findings):
        tol = match_tolerance(case.dtype)
        combinations = _compound(user, correct, wrong, case64, (params64, x64, y64), tol)
        if combinations:
            described = [" + ".join(_merged([bug.describe(case64) for bug in combination]))
                         for combination in combinations[:3]]
            text = described[0] + (f" (on this case the same numbers as: "
                                   f"{' | '.join(described[1:])})" if described[1:] else "")
            kinds = sorted({bug.kind for combination in combinations for bug in combination})
            findings = [Finding(f.parameter, "|".join(["compound", *kinds]),
                                f"matches a combination of known bugs: {text}")
                        for f in findings]
    summary = localise(wrong, case)
    return findings + ([summary] if summary else [])


def _merged(descriptions: list[str]) -> list[str]:
    """One phrase for the same bug in several layers: "... of layers 1 and 2 ..."."""
    templates: dict[str, list[str]] = {}
    for text in descriptions:
        templates.setdefault(re.sub(r"layer \d+", "layer #", text), []).append(text)
    merged = []
    for template, texts in templates.items():
        if len(texts) == 1:
            merged.append(texts[0])
            continue
        layers = sorted({int(m) for text in texts for m in re.findall(r"layer (\d+)", text)})
        listed = ", ".join(map(str, layers[:-1])) + f" and {layers[-1]}"
        merged.append(template.replace("layer #", f"layers {listed}"))
    return merged


NAMED_KINDS = ("transposed", "wrong_axis", "shape", "nonfinite", "zero", "sign")


def _unexplained(findings: list[Finding]) -> bool:
    """Whether the single-bug findings leave something unnamed: a parameter that matches
    no known bug, or parameters that match different ones."""
    matched = [f for f in findings if f.message.startswith("matches a known bug")]
    loose = [f for f in findings if not f.message.startswith("matches a known bug")
             and f.kind not in NAMED_KINDS]
    explanations = {f.message for f in matched}
    return bool(loose) or len(explanations) > 1


# -- update hypotheses ------------------------------------------------------------


def diagnose_update(
    user_params: Mapping[str, np.ndarray],
    before: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    state: Any,
    case: Case,
    step: int,
    wrong: set[str],
) -> list[Finding]:
    """Diagnose the first step whose update differs, from the reference's params and state."""
    optimizer = OPTIMIZERS[case.optimizer]
    hp = step_hyperparameters(case.hparams, case.all_options, step - 1, case.steps)
    correct, _ = optimizer.update(before, grads, state, hp)
    hypotheses_by_param: dict[str, dict[tuple[str, str], np.ndarray]] = {n: {} for n in before}
    for bug in update_hypotheses(case):
        start_state = optimizer.init(before) if bug.fresh_state else state
        alternative, _ = bug.update(optimizer, before, grads, start_state, hp)
        for name in before:
            hypotheses_by_param[name][(bug.kind, bug.describe(case))] = (alternative[name]
                                                                          - before[name])
    findings = []
    for name in before:
        if name not in wrong:
            continue
        finding = classify(
            name, np.asarray(user_params[name], np.float64) - before[name],
            correct[name] - before[name], case, hypotheses_by_param[name], subject="update",
        )
        findings.append(replace(finding, message=f"step {step} update: {finding.message}"))
    return findings
