"""Shrink a failing case and write a self-contained reproduction.

Shrinking is greedy: try a smaller case (fewer hidden layers, narrower hidden
layers, a smaller batch, fewer steps, fewer inputs) and keep it whenever the
implementation still fails there; stop when no smaller case fails. Only the
NumPy reference and finite differences are consulted, so it is quick.

The reproduction is ``<dir>/<case id>.npz`` (weights, data, the expected loss,
gradients and parameters after each step, the case as JSON) and
``<dir>/<case id>.py``, a script that needs only NumPy and the user's module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from gradparity.check.plugin import Plugin
from gradparity.check.verifier import Verifier
from gradparity.compare.tolerances import fixed_tolerance
from gradparity.harness.runner import run_case
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem


def _smaller(case: Case) -> Iterator[Case]:
    sizes, hidden = case.layer_sizes, case.hidden_activation
    if len(sizes) > 2:
        # drop the last hidden layer (keep the output width)
        yield replace(case, layer_sizes=(*sizes[:-2], sizes[-1]), hidden_activation=hidden[:-1])
    for index in range(1, len(sizes) - 1):
        if sizes[index] > 1:
            narrower = list(sizes)
            narrower[index] = sizes[index] // 2
            yield replace(case, layer_sizes=tuple(narrower))
    if case.dataset != "xor":
        if case.batch_size > 1:
            yield replace(case, batch_size=case.batch_size // 2)
        if sizes[0] > 1:
            yield replace(case, layer_sizes=(sizes[0] // 2, *sizes[1:]))
    if case.steps > 1:
        yield replace(case, steps=case.steps // 2)
        yield replace(case, steps=case.steps - 1)


def shrink(plugin: Plugin, case: Case, *, max_checks: int = 200) -> Case:
    """The smallest case reachable from ``case`` on which ``plugin`` still fails."""
    verifier = Verifier(frameworks=("numpy",))
    checks = 0
    current = case
    improved = True
    while improved and checks < max_checks:
        improved = False
        for candidate in _smaller(current):
            try:
                candidate = replace(candidate)  # re-validate
            except ValueError:
                continue
            checks += 1
            if verifier.check_case(plugin, candidate).status in ("fail", "error"):
                current, improved = candidate, True
                break
    return current


SCRIPT = '''"""Reproduce a gradparity failure with only NumPy and your implementation.

Case: {case_id}
Run from the directory you ran gradparity in:  python {script}
"""
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

GRADIENTS = {gradients!r}
STEP = {step!r}
TOLERANCE = {tolerance!r}  # normwise relative, as in gradparity
data = np.load(Path(__file__).with_suffix(".npz"), allow_pickle=False)
case = types.SimpleNamespace(**json.loads(str(data["case_json"])))
case.option = lambda name: case.all_options[name]


def load(spec, method):
    target, _, name = spec.rpartition(":")
    if target.endswith(".py") or "/" in target:
        module_spec = importlib.util.spec_from_file_location("user_module", target)
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, str(Path(target).resolve().parent))
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    found = getattr(module, name or method)
    return found if callable(found) else getattr(found, method)


def report(label, got, expected):
    got = np.asarray(got, dtype=np.float64)
    if got.shape != expected.shape:
        print(f"{{label}}: shape {{got.shape}}, expected {{expected.shape}}")
        return False
    diff = np.abs(got - expected)
    error = diff.max() / max(np.abs(expected).max(), 1e-300)
    index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), expected.shape))
    ok = error <= TOLERANCE
    print(f"{{label}}: normwise relative error {{error:.3e}} ({{'ok' if ok else 'WRONG'}}); "
          f"worst index {{index}}: yours {{float(got[index])!r}}, "
          f"expected {{float(expected[index])!r}}")
    return ok


params = {{k[len("param_"):]: data[k].copy() for k in data.files if k.startswith("param_")}}
gradients = load(GRADIENTS, "gradients")
loss, grads = gradients({{k: v.copy() for k, v in params.items()}}, data["x0"].copy(),
                        data["y0"].copy(), case)
ok = report("loss", np.asarray(loss), data["expected_loss"])
for name in params:
    ok &= report(f"gradient of {{name}}", grads[name], data[f"grad_{{name}}"])
if STEP is not None:
    step, state = load(STEP, "step"), None
    for t in range(1, case.steps + 1):
        params, state = step(params, grads, state, case)
        for name in params:
            ok &= report(f"{{name}} after step {{t}}", params[name], data[f"step{{t}}_{{name}}"])
        loss, grads = gradients(params, data[f"x{{t}}"].copy(), data[f"y{{t}}"].copy(), case)
sys.exit(0 if ok else 1)
'''


def write_reproduction(plugin: Plugin, case: Case, directory: Path) -> tuple[Path, Path]:
    """Write ``<case id>.npz`` and ``<case id>.py`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    problem = make_problem(case)
    expected = run_case(case, ("numpy",)).results["numpy"]
    fields = case.to_dict()
    fields.update(activations=list(case.activations), hparams=case.hparams,
                  num_layers=case.num_layers, hidden_activation=list(case.hidden_activation),
                  all_options=case.all_options)
    arrays = {f"param_{n}": v for n, v in problem.params.items()}
    arrays.update({f"grad_{n}": v for n, v in expected.gradients.items()})
    if plugin.step is not None:
        for t, params in enumerate(expected.trajectory, start=1):
            arrays.update({f"step{t}_{n}": v for n, v in params.items()})
    npz = directory / f"{case.id}.npz"
    for evaluation in range(case.steps + 1):  # the batch each gradient evaluation sees
        batch = problem.batch(evaluation)
        arrays.update({f"x{evaluation}": batch.x, f"y{evaluation}": batch.y})
    np.savez(npz, expected_loss=np.asarray(expected.loss),
             case_json=np.asarray(json.dumps(fields)), **arrays)
    script = directory / f"{case.id}.py"
    script.write_text(SCRIPT.format(
        case_id=case.id, script=script.as_posix(), gradients=plugin.name,
        step=plugin.step_spec if plugin.step is not None else None,
        tolerance=fixed_tolerance(case.dtype),
    ), encoding="utf-8")
    return npz, script
