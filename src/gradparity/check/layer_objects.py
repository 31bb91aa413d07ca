"""The layer-object contract: a user's layer checked on its own, one layer at a time.

Most NumPy backprop is written as layer objects, often with the weights updated inside
``backward``. The contract (``gradparity check mylayers.py:make_dense --layer dense``)::

    layer = target(params, settings)   # params: {"W": (fan_in, fan_out), "b": (fan_out,)}
    y = layer.forward(x)               # x: (batch, *input_shape)
    back = layer.backward(dy)          # dy: dL/dy, random
    # back is dx, or (dx, {"W": dW, "b": db}); otherwise the parameter gradients are read
    # from layer.grads[name] or attributes d<name> / grad_<name> (dW, db, dgamma, ...)

    loss = target(settings)            # a loss layer: --layer mse, softmax_cross_entropy
    value = loss.forward(y_hat, y); dy_hat = loss.backward()

``target`` may be a class or any factory. Every quantity (the output, ``dL/dx``, each
parameter's gradient) is compared with the reference layer, PyTorch's and JAX's own
layer, and (in float64) Ridders' finite differences along random directions; a wrong
one is diagnosed with the same vocabulary as whole networks.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.adapters import FRAMEWORKS, get_adapter
from gradparity.check.diagnosis import Finding, classify
from gradparity.compare.layer_tolerances import layer_tolerances, loss_tolerances
from gradparity.compare.metrics import FINITE_DIFFERENCES, Difference, compare_arrays
from gradparity.compare.ridders import ridders
from gradparity.compare.tolerances import (
    FINITE_DIFFERENCE_ERROR_SAFETY,
    FINITE_DIFFERENCE_TOLERANCE,
)
from gradparity.reference import LOSSES
from gradparity.reference.layers import LAYERS, build
from gradparity.reference.layers.base import Layer

BATCH = 4
DIRECTIONS = 4
DEFAULT_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "dense": (6,), "flatten": (2, 3, 3), "conv2d": (3, 6, 6), "conv_transpose2d": (2, 4, 4),
    "max_pool2d": (2, 6, 6), "avg_pool2d": (2, 6, 6), "layer_norm": (5, 8),
    "batch_norm": (3, 4, 4), "embedding": (6,), "attention": (5, 8), "residual": (5, 8)}
"""Per layer type, the per-example input shape a check uses unless told (others: (5,))."""
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "dense": {"features": 4}, "conv2d": {"channels": 4, "padding": 1},
    "conv_transpose2d": {"channels": 3, "stride": 2, "padding": 1},
    "embedding": {"vocab": 5, "features": 4}, "attention": {"heads": 2, "causal": True},
    "residual": {"layers": [{"type": "layer_norm"}, {"type": "dense", "features": 8}]}}
"""Per layer type, the settings a check uses unless told."""


@dataclass(frozen=True)
class LayerCheck:
    """The verdict on one layer object in one dtype and seed."""

    label: str
    status: str  # pass, fail, not handled, contract error, error
    differences: tuple[Difference, ...] = ()
    findings: tuple[Finding, ...] = ()
    message: str = ""
    details: str = ""

    @property
    def worst(self) -> Difference | None:
        return max(self.differences, key=lambda d: d.headroom, default=None)


def layer_names() -> list[str]:
    """Every type ``--layer`` takes: the layer registry and the losses."""
    return [*LAYERS, *LOSSES]


def _default_spec(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": kind, **DEFAULT_SETTINGS.get(kind, {}), **settings}


def _inputs(layer: Layer, kind: str, input_shape, dtype: str, rng: np.random.Generator):
    params = {n: v.astype(dtype) for n, v in layer.init(input_shape, rng).items()}
    if kind == "embedding":  # token ids, with repeats (their gradients must add up)
        x = rng.integers(0, layer.vocab, size=(BATCH, *input_shape))
    else:
        x = rng.standard_normal((BATCH, *input_shape)).astype(dtype)
    dy = rng.standard_normal((BATCH, *layer.output_shape(input_shape))).astype(dtype)
    return params, x, dy


def _gradients_of(back: Any, layer_object: Any, names: tuple[str, ...]):
    """``(dx, grads)`` from what ``backward`` returned and what the object exposes."""
    if isinstance(back, tuple | list) and len(back) == 2 and isinstance(back[1], Mapping):
        return back[0], dict(back[1])
    exposed = getattr(layer_object, "grads", None)
    grads = {}
    for name in names:
        if isinstance(exposed, Mapping) and name in exposed:
            grads[name] = exposed[name]
            continue
        for attribute in (f"d{name}", f"d{name.lower()}", f"grad_{name}", f"{name}_grad"):
            if hasattr(layer_object, attribute):
                grads[name] = getattr(layer_object, attribute)
                break
    return back, grads


def _current(layer_object: Any, name: str) -> np.ndarray | None:
    held = getattr(layer_object, "params", None)
    if isinstance(held, Mapping) and name in held:
        return np.asarray(held[name])
    value = getattr(layer_object, name, None)
    return None if value is None else np.asarray(value)


def _directional(layer: Layer, spec, params, x, dy, state) -> dict[str, tuple]:
    """Ridders' derivative of <dy, forward> along random unit directions of the input and
    of each parameter (float64): ``{quantity: (directions, estimates, errors)}``."""
    wide = {n: np.asarray(v, np.float64) for n, v in params.items()}
    x64 = x if x.dtype.kind == "i" else np.asarray(x, np.float64)
    dy64 = np.asarray(dy, np.float64)
    rng = np.random.default_rng(7)
    found = {}
    state64 = {n: np.asarray(v, np.float64) for n, v in state.items()}
    targets = {**({"input gradient": x64} if x64.dtype.kind == "f" else {}),
               **{f"gradient of {n}": v for n, v in wide.items()}}
    for quantity, base in targets.items():
        directions = rng.standard_normal((DIRECTIONS, *base.shape))
        if spec["type"] == "embedding" and spec.get("padding_idx") is not None \
                and quantity == "gradient of W":
            directions[:, spec["padding_idx"]] = 0.0  # the padding row is frozen by design
        directions /= np.sqrt((directions ** 2).reshape(DIRECTIONS, -1).sum(axis=1)).reshape(
            (DIRECTIONS,) + (1,) * base.ndim)

        def value(point, quantity=quantity):
            if quantity == "input gradient":
                y, _ = layer.forward(wide, point, True, state64)
            else:
                y, _ = layer.forward({**wide, quantity.removeprefix("gradient of "): point},
                                     x64, True, state64)
            return float(np.sum(dy64 * y))

        def evaluate(steps, base=base, directions=directions, value=value):
            above = np.array([value(base + s * d) for s, d in zip(steps, directions,
                                                                  strict=True)])
            below = np.array([value(base - s * d) for s, d in zip(steps, directions,
                                                                  strict=True)])
            return above, below, np.zeros(len(steps), dtype=bool)

        scale = max(float(np.abs(base).max(initial=0.0)), 1e-3)
        estimate, error, _ = ridders(evaluate, np.full(DIRECTIONS, 1e-3 * scale))
        found[quantity] = (directions, estimate, error)
    return found


def _compare_all(label, dtype, framework, mine: Mapping[str, np.ndarray],
                 theirs: Mapping[str, np.ndarray], baseline: str, tolerances) -> list:
    return [compare_arrays(mine.get(name), value, case_id=label, dtype=dtype,
                           framework=framework, baseline_name=baseline,
                           quantity=name.split(" of ")[0] if " of " in name else name,
                           parameter=name.split(" of ")[1] if " of " in name else "x",
                           tolerance=tolerances[name]) for name, value in theirs.items()]


def _label(spec: Mapping[str, Any], input_shape, dtype: str, seed: int) -> str:
    settings = ",".join(f"{k}={v}" for k, v in spec.items() if k != "type")
    shape = "x".join(map(str, input_shape))
    return f"{spec['type']}({settings})_in{shape}_{dtype}_seed{seed}"


def check_layer_object(target: Callable[..., Any], spec: Mapping[str, Any],
                       input_shape: tuple[int, ...], dtype: str = "float64", seed: int = 0,
                       frameworks=tuple(FRAMEWORKS)) -> LayerCheck:
    """Build the user's layer from the reference's parameters, run it forward and
    backward, and compare every quantity with every baseline."""
    layer = build(spec)
    label = _label(spec, input_shape, dtype, seed)
    params, x, dy = _inputs(layer, spec["type"], input_shape, dtype,
                            np.random.default_rng(seed))
    state = {n: v.astype(dtype) for n, v in layer.init_state(input_shape).items()}
    settings = {k: v for k, v in spec.items() if k != "type"}
    try:
        user_object = target({n: v.copy() for n, v in {**params, **state}.items()},
                             dict(settings))
        y = user_object.forward(x.copy())
        dx, grads = _gradients_of(user_object.backward(dy.copy()), user_object,
                                  tuple(params))
    except NotImplementedError as error:
        return LayerCheck(label, "not handled", message=f"not handled: {error}")
    except Exception as error:  # the user's code raised: report it, do not crash
        return LayerCheck(label, "error", message=f"{type(error).__name__}: {error}",
                          details="".join(traceback.format_exception(error)).rstrip())
    missing = [n for n in params if n not in grads]
    if missing:
        return LayerCheck(label, "contract error", message=(
            f"no gradient for {missing}: return (dx, {{name: grad}}) from backward, or "
            f"set layer.grads[name] or attributes d<name> (e.g. d{missing[0]})"))
    mine = {"output": np.asarray(y), "input gradient": np.asarray(dx),
            **{f"gradient of {n}": np.asarray(g) for n, g in grads.items()},
            **{f"state {n}": value for n in state
               if (value := _current(user_object, n)) is not None}}
    if x.dtype.kind == "i":
        del mine["input gradient"]  # token ids have no gradient
    tolerances = layer_tolerances(layer, params, x, dy, dtype, input_shape, state=state,
                                  seed=seed)
    differences: list[Difference] = []
    runs = {}
    for name in dict.fromkeys(("numpy", *frameworks)):
        adapter = get_adapter(name)
        if not adapter.availability().available or adapter.layer_unsupported_reason(spec):
            continue
        run = adapter.run_layer(spec, params, x, dy, state=state)
        runs[name] = {"output": run.output, "input gradient": run.input_gradient,
                      **{f"gradient of {n}": g for n, g in run.parameter_gradients.items()},
                      **{f"state {n}": v for n, v in run.state.items()}}
        if x.dtype.kind == "i":
            del runs[name]["input gradient"]
        differences += _compare_all(label, dtype, "yours", mine, runs[name], name, tolerances)
    if dtype == "float64":
        for quantity, (directions, estimate, error) in _directional(
                layer, spec, params, x, dy, state).items():
            predicted = np.array([float(np.sum(np.asarray(mine[quantity], np.float64) * d))
                                  for d in directions]) if np.shape(mine[quantity]) == \
                directions.shape[1:] else np.full(len(directions), np.nan)
            allowed = max(FINITE_DIFFERENCE_TOLERANCE, FINITE_DIFFERENCE_ERROR_SAFETY
                          * float(np.max(error)) / max(
                float(np.abs(estimate).max()), 1e-300))
            differences.append(compare_arrays(
                predicted, estimate, case_id=label, dtype=dtype, framework="yours",
                baseline_name=FINITE_DIFFERENCES, quantity=quantity.split(" of ")[0],
                parameter=(quantity.split(" of ")[1] if " of " in quantity else "x")
                + f" ({DIRECTIONS} random directions)", tolerance=allowed))
    findings = _dtype_findings(mine, dtype)
    if all(d.passed for d in differences):
        return LayerCheck(label, "pass", tuple(differences), tuple(findings))
    findings += _diagnose(layer, spec, params, x, dy, mine, runs["numpy"], user_object, dtype)
    return LayerCheck(label, "fail", tuple(differences), tuple(findings))


def _dtype_findings(mine: Mapping[str, np.ndarray], dtype: str) -> list[Finding]:
    """A float32 layer that answers in float64 (or the other way) is worth saying, though
    the numbers are judged as they are."""
    return [Finding(name, "dtype", f"returned {np.asarray(value).dtype} for a {dtype} check "
                    "(an integer-valued derivative or a stray Python float promotes it)")
            for name, value in mine.items()
            if np.asarray(value).dtype.kind == "f" and np.asarray(value).dtype != dtype]


def _diagnose(layer, spec, params, x, dy, mine, reference, user_object, dtype) -> list:
    """What each wrong quantity looks like (the network diagnosis's vocabulary), with the
    layer hypotheses that only a layer object can show."""
    from gradparity.spec.case import Case

    case = Case((2, 2), dtype=dtype, batch_size=BATCH)  # classify reads these two
    hypotheses: dict[str, dict[tuple[str, str], np.ndarray]] = {name: {} for name in mine}
    wide_dy = np.asarray(dy, np.float64)
    if spec["type"] == "dense":
        updated = _current(user_object, "W")
        if updated is not None and not np.array_equal(updated, params["W"]):
            hypotheses["input gradient"][("stale_weights", "the input gradient uses the "
                                          "weights already updated inside backward (compute "
                                          "dx before updating W)")] = wide_dy @ np.asarray(
                updated, np.float64).T
        if params["W"].shape[0] == params["W"].shape[1]:
            hypotheses["input gradient"][("missing_transpose", "dx = dy @ W instead of "
                                          "dy @ W.T")] = wide_dy @ np.asarray(params["W"],
                                                                              np.float64)
    if spec["type"] in LAYERS and getattr(layer, "activation", None):
        hypotheses["input gradient"][("missing_derivative", "dx = dy: the activation's "
                                      "derivative is missing")] = wide_dy
    findings = []
    for name, value in mine.items():
        right = reference[name]
        if np.shape(value) == np.shape(right) and np.allclose(value, right, rtol=1e-5,
                                                                atol=1e-12):
            continue
        findings.append(classify(name, np.asarray(value), np.asarray(right, np.float64),
                                 case, hypotheses[name]))
    return findings


def check_loss_object(target: Callable[..., Any], loss: str, options: Mapping[str, Any],
                      dtype: str = "float64", seed: int = 0, outputs: int = 3,
                      frameworks=tuple(FRAMEWORKS)) -> LayerCheck:
    """A loss layer: ``target(settings).forward(y_hat, y)`` and ``.backward()``."""
    from gradparity.spec.case import Case
    from gradparity.spec.data import make_problem

    case = Case((2, outputs), loss=loss, output_activation=LOSSES[loss].output_activation
                or "identity", dtype=dtype, batch_size=BATCH, seed=seed)
    label = f"{loss}_{dtype}_seed{seed}"
    rng = np.random.default_rng(seed)
    y = make_problem(case).y
    y_hat = rng.standard_normal((BATCH, outputs)).astype(dtype)
    if LOSSES[loss].output_activation == "sigmoid":
        y_hat = (1 / (1 + np.exp(-y_hat))).astype(dtype)
    try:
        user_object = target(dict(options))
        value = user_object.forward(y_hat.copy(), y.copy())
        try:
            gradient = user_object.backward()
        except TypeError:
            gradient = user_object.backward(1.0)
    except NotImplementedError as error:
        return LayerCheck(label, "not handled", message=f"not handled: {error}")
    except Exception as error:
        return LayerCheck(label, "error", message=f"{type(error).__name__}: {error}",
                          details="".join(traceback.format_exception(error)).rstrip())
    tolerances = loss_tolerances(LOSSES[loss].bound({**case.all_options, **options}), y_hat,
                                 y, dtype, seed)
    differences = []
    for name in dict.fromkeys(("numpy", *frameworks)):
        adapter = get_adapter(name)
        if not adapter.availability().available or adapter.loss_unsupported_reason(loss):
            continue
        result = adapter.run_loss(loss, {**case.all_options, **options}, y_hat, y)
        differences += [
            compare_arrays(np.asarray(value), np.asarray(result.value), case_id=label,
                           dtype=dtype, framework="yours", baseline_name=name,
                           quantity="loss", parameter="loss", tolerance=tolerances["loss"]),
            compare_arrays(np.asarray(gradient), result.gradient, case_id=label, dtype=dtype,
                           framework="yours", baseline_name=name, quantity="input gradient",
                           parameter="y_hat", tolerance=tolerances["input gradient"])]
    status = "pass" if all(d.passed for d in differences) else "fail"
    findings = []
    if status == "fail":
        reference = get_adapter("numpy").run_loss(loss, {**case.all_options, **options},
                                                  y_hat, y)
        findings = [classify("dL/dy_hat", np.asarray(gradient), reference.gradient, case, {})]
    return LayerCheck(label, status, tuple(differences), tuple(findings))
