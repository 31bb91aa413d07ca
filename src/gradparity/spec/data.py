"""Deterministic data and initial weights, generated once in NumPy.

Every implementation receives the very same arrays: they are drawn in float64
from ``numpy.random`` generators seeded by the case seed, rounded once to the
case dtype, and made read-only. Two independent streams are spawned from
``SeedSequence(seed)``: stream 0 draws the weights, stream 1 the data and
stream 2 the dropout masks, so changing the data set never changes the
initial weights, and switching dropout on changes neither.

A case with the option ``batches = B`` trains on a fixed sequence of B
batches: evaluation t (the gradient at the parameters after t steps) uses
batch ``t mod B`` and, with dropout, mask set t. :meth:`Problem.batch` is the
one place that decides this, for every implementation and oracle.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from gradparity.reference.losses import LOSSES
from gradparity.reference.namespace import to_namespace
from gradparity.reference.network import forward
from gradparity.spec.case import Case
from gradparity.spec.datasets import DATASETS


class Batch(NamedTuple):
    """What one gradient evaluation sees: inputs, targets, one dropout mask per hidden layer."""

    x: np.ndarray
    y: np.ndarray
    masks: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Problem:
    """Inputs for one case: initial parameters, inputs ``x`` and targets ``y``.

    ``params`` maps ``W1, b1, ..., WL, bL`` to arrays shaped ``(fan_in, fan_out)``
    and ``(fan_out,)``. ``y`` is float (same shape as the output) for ``real`` and
    ``binary`` targets, int64 labels of shape ``(batch,)`` for ``class_index``.
    ``x`` and ``y`` hold all ``batches`` batches one after the other.
    ``masks[t]`` holds the dropout masks of evaluation t (one per hidden layer,
    entries 0 or 1 / (1 - p)), or ``masks`` is empty without dropout.
    A sequence network (``case.layers``) names its parameters as its stack does
    (``conv1.W``, a conv kernel OIHW, a dense W (fan_in, fan_out)), takes ``x`` with the
    case's ``input_shape`` per example (int64 token ids after an embedding) and keeps
    its initial running statistics in ``state`` (``bn1.running_mean``, ...).
    All arrays are read-only.
    """

    params: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    batches: int = 1
    masks: tuple[tuple[np.ndarray, ...], ...] = ()
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def batch(self, evaluation: int) -> Batch:
        """Inputs of evaluation ``evaluation`` (0: initial parameters, t: after t steps)."""
        index = evaluation % self.batches
        size = self.x.shape[0] // self.batches
        rows = slice(index * size, (index + 1) * size)
        if self.masks and not 0 <= evaluation < len(self.masks):
            raise ValueError(f"evaluation: invalid value {evaluation!r}; allowed: "
                             f"0..{len(self.masks) - 1} (dropout masks were drawn for those)")
        masks = self.masks[evaluation] if self.masks else ()
        return Batch(self.x[rows], self.y[rows], masks)

    def first_rows(self, rows: int) -> Problem:
        """The problem of evaluation 0 cut to the first ``rows`` examples of its batch
        (one batch; running statistics and parameters unchanged)."""
        x, y, masks = self.batch(0)
        if not 0 < rows <= x.shape[0]:
            raise ValueError(f"rows: invalid value {rows!r}; allowed: 1..{x.shape[0]}")
        return Problem(params=self.params, x=x[:rows], y=y[:rows], batches=1,
                       masks=(tuple(m[:rows] for m in masks),) if self.masks else (),
                       state=self.state)

    def as_float64(self) -> Problem:
        """The same numbers in float64 (labels stay integers): oracles compute there."""
        return Problem(
            params={n: np.asarray(v, dtype=np.float64) for n, v in self.params.items()},
            x=self.x if self.x.dtype.kind == "i" else np.asarray(self.x, dtype=np.float64),
            y=self.y if self.y.dtype.kind == "i" else np.asarray(self.y, dtype=np.float64),
            batches=self.batches,
            masks=tuple(tuple(np.asarray(m, dtype=np.float64) for m in evaluation)
                        for evaluation in self.masks),
            state={n: np.asarray(v, dtype=np.float64) for n, v in self.state.items()},
        )


class PlacedProblem:
    """A problem whose parameters, running statistics and batches are arrays of another
    array API namespace ``xp`` (CuPy: on the GPU), for the reference to compute there:
    the parameters and statistics moved once, each batch as it is read."""

    def __init__(self, problem: Problem, xp: Any) -> None:
        self._problem, self._xp = problem, xp

    @functools.cached_property
    def params(self) -> dict[str, Any]:
        return to_namespace(dict(self._problem.params), self._xp)

    @functools.cached_property
    def state(self) -> dict[str, Any]:
        return to_namespace(dict(self._problem.state), self._xp)

    def batch(self, evaluation: int) -> Batch:
        """:meth:`Problem.batch`, in the namespace."""
        x, y, masks = self._problem.batch(evaluation)
        return Batch(*to_namespace((x, y), self._xp),
                     tuple(to_namespace(list(masks), self._xp)))


def placed(problem: Problem, xp: Any) -> Problem | PlacedProblem:
    """``problem`` itself for NumPy, a :class:`PlacedProblem` for any other namespace."""
    return problem if xp is np else PlacedProblem(problem, xp)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def initial_parameters(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """W_l, b_l ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's nn.Linear default range.

    Biases are non-zero on purpose, so their gradients are exercised.
    """
    params: dict[str, np.ndarray] = {}
    bias = bool(case.option("bias"))
    for layer, (fan_in, fan_out) in enumerate(zip(case.layer_sizes[:-1], case.layer_sizes[1:],
                                                  strict=True), start=1):
        bound = 1.0 / np.sqrt(fan_in)
        params[f"W{layer}"] = rng.uniform(-bound, bound, size=(fan_in, fan_out))
        bias_values = rng.uniform(-bound, bound, size=(fan_out,))  # drawn either way: the
        if bias:                                                     # weights stay the same
            params[f"b{layer}"] = bias_values
    return params


def dropout_masks(case: Case, rng: np.random.Generator) -> tuple[tuple[np.ndarray, ...], ...]:
    """Keep masks for evaluations 0..steps, one per hidden layer: a unit is kept with
    probability 1 - p and then scaled by 1 / (1 - p) (inverted dropout, as
    torch.nn.functional.dropout and flax scale in training)."""
    p = float(case.option("dropout"))
    if p == 0:
        return ()
    dtype, widths = np.dtype(case.dtype), case.layer_sizes[1:-1]
    masks = []
    for _ in range(case.steps + 1):
        keep = [rng.random((case.batch_size, width)) >= p for width in widths]
        masks.append(tuple(_read_only((k / (1 - p)).astype(dtype)) for k in keep))
    return tuple(masks)


def make_problem(case: Case) -> Problem:
    """Draw the case's weights, data and masks, round them once to the case dtype."""
    weights_seed, data_seed, mask_seed = np.random.SeedSequence(case.seed).spawn(3)
    if case.is_sequence:
        params = case.network().init(np.random.default_rng(weights_seed))
    else:
        params = initial_parameters(case, np.random.default_rng(weights_seed))
    batches = int(case.option("batches"))
    x, y = DATASETS[case.dataset].generate(case, np.random.default_rng(data_seed),
                                           case.batch_size * batches)
    dtype = np.dtype(case.dtype)
    return Problem(
        params={name: _read_only(value.astype(dtype)) for name, value in params.items()},
        x=_read_only(x if x.dtype == np.int64 else x.astype(dtype)),
        y=_read_only(y if y.dtype == np.int64 else y.astype(dtype)),
        batches=batches,
        masks=dropout_masks(case, np.random.default_rng(mask_seed)),
        state=initial_state(case),
    )


def initial_state(case: Case) -> dict[str, np.ndarray]:
    """A sequence network's running statistics before training (BatchNorm: mean 0,
    variance 1, as torch and Flax start), in the case dtype; empty for an MLP."""
    if not case.is_sequence:
        return {}
    return {name: _read_only(value.astype(case.dtype))
            for name, value in case.network().init_state().items()}


def problem_from_arrays(case: Case, x, y, params=None) -> Problem:
    """A :class:`Problem` from user data (and optionally user weights), validated.

    ``x`` holds ``batch_size * batches`` rows of ``layer_sizes[0]`` inputs; ``y``
    the matching targets for the case's loss (integer labels in ``0..K-1`` for
    class-index losses, 0/1 for binary ones, rows summing to 1 for probability
    targets, real numbers otherwise). Weights default to the case seed's. Every
    problem raises ``ValueError`` naming the array, what is wrong and what is
    allowed; dropout masks are drawn as for generated data.
    """
    rows = case.batch_size * int(case.option("batches"))
    shape_in, shape_out = case.example_shape, case.output_shape
    n_out = shape_out[-1]
    inputs = "x".join(map(str, shape_in))
    if case.takes_tokens:
        x = _checked_ids("x", x, (rows, *shape_in), int(dict(case.layers[0])["vocab"]),
                         "token id", "token ids")
    else:
        x = _checked_array("x", x, (rows, *shape_in), f"batch_size {case.batch_size} x "
                           f"batches {case.option('batches')} = {rows} rows of {inputs} inputs")
    kind = LOSSES[case.loss].target_kind
    if kind == "class_index":
        y = _checked_ids("y", y, (rows, *shape_out[:-1]), n_out, "label",
                         f"class labels for loss {case.loss!r}{_label_hint(y, n_out)}")
    else:
        y = _checked_array("y", y, (rows, *shape_out), f"{rows} rows of "
                           f"{'x'.join(map(str, shape_out))} targets for loss {case.loss!r}")
        if kind == "binary" and not np.all((y == 0) | (y == 1)):
            raise ValueError(f"y: invalid values for loss {case.loss!r}; allowed: 0 or 1")
        if kind == "probabilities" and (np.any(y < 0) or not np.allclose(y.sum(axis=-1), 1)):
            raise ValueError(f"y: invalid rows for loss {case.loss!r}; allowed: non-negative "
                             "rows that sum to 1")
    generated = make_problem(case)
    weights = dict(generated.params)
    if params is not None:
        expected = {name: value.shape for name, value in generated.params.items()}
        unknown = sorted(set(params) - set(expected))
        missing = sorted(set(expected) - set(params))
        if unknown or missing:
            raise ValueError(f"params: keys {sorted(params)}; allowed: exactly "
                             f"{', '.join(expected)} (missing {missing}, unknown {unknown})")
        weights = {name: _checked_array(f"params[{name!r}]", params[name], shape,
                                        f"shape {shape}") for name, shape in expected.items()}
    dtype = np.dtype(case.dtype)
    with np.errstate(over="ignore"):  # overflow is reported below, by name
        cast = {name: np.asarray(value, dtype=np.float64).astype(dtype)
                for name, value in weights.items()}
        cast_x = x if x.dtype == np.int64 else x.astype(dtype)
        cast_y = y if y.dtype == np.int64 else y.astype(dtype)
    for name, array in (*((f"params[{n!r}]", v) for n, v in cast.items()), ("x", cast_x),
                        ("y", cast_y)):
        if array.dtype == np.int64:
            continue
        _check_finite_in(name, array, case.dtype)
    problem = Problem(
        params={name: _read_only(value) for name, value in cast.items()},
        x=_read_only(cast_x), y=_read_only(cast_y),
        batches=int(case.option("batches")), masks=generated.masks, state=generated.state,
    )
    check_intermediates(case, problem)
    return problem


def _check_finite_in(name: str, array: np.ndarray, dtype: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape))
        raise ValueError(f"{name}: {int(bad.sum())} values overflow {dtype} (first at {first}, "
                         f"largest finite {dtype} is {np.finfo(dtype).max:.3e}); allowed: "
                         f"values that fit in {dtype}")


def check_intermediates(case: Case, problem: Problem) -> None:
    """Refuse weights and data whose forward pass overflows in the case dtype: a
    non-finite intermediate is not something two implementations can agree on. The
    error names the layer (``z2`` = W2's pre-activation, ``a2`` its activation, or the
    loss) and the evaluation."""
    options = case.all_options
    if case.is_sequence:
        _check_sequence_intermediates(case, problem)
        return
    for evaluation in range(min(problem.batches, case.steps + 1)):
        x, y, masks = problem.batch(evaluation)
        with np.errstate(all="ignore"):
            cache = forward(problem.params, x, y, case.activations, case.loss, options, masks)
        for layer, (z, a) in enumerate(zip(cache.pre_activations, cache.activations,
                                           strict=True), start=1):
            for label, values in ((f"z{layer}", z), (f"a{layer}", a)):
                if not np.isfinite(values).all():
                    raise ValueError(
                        f"data and weights: non-finite intermediate {label} (layer {layer}) "
                        f"in {case.dtype} on batch {evaluation}; allowed: values whose "
                        f"forward pass stays finite in {case.dtype} (scale the inputs or "
                        "the weights down)")
        if not np.isfinite(cache.loss):
            raise ValueError(f"data and weights: the loss is not finite in {case.dtype} on "
                             f"batch {evaluation}; allowed: values whose forward pass stays "
                             f"finite in {case.dtype}")


def _check_sequence_intermediates(case: Case, problem: Problem) -> None:
    network = case.network()
    for evaluation in range(min(problem.batches, case.steps + 1)):
        x, y, _ = problem.batch(evaluation)
        with np.errstate(all="ignore"):
            cache = network.forward(problem.params, x, y, case.all_options, problem.state)
        for name, values in cache.run.outputs.items():
            if not np.isfinite(values).all():
                raise ValueError(
                    f"data and weights: non-finite output of layer {name} in {case.dtype} on "
                    f"batch {evaluation}; allowed: values whose forward pass stays finite "
                    f"in {case.dtype} (scale the inputs or the weights down)")
        if not np.isfinite(cache.loss):
            raise ValueError(f"data and weights: the loss is not finite in {case.dtype} on "
                             f"batch {evaluation}; allowed: values whose forward pass stays "
                             f"finite in {case.dtype}")


def _label_hint(y, classes: int) -> str:
    """What a class-index loss's targets given as floats most likely are, and the fix."""
    values = np.asarray(y)
    if values.dtype.kind != "f" or not values.size or not np.isfinite(values).all():
        return ""
    if (values.ndim >= 2 and values.shape[-1] == classes
            and np.all((values == 0) | (values == 1)) and np.all(values.sum(axis=-1) == 1)):
        return (" (y holds one-hot rows: pass y.argmax(axis=-1), or use the loss "
                "'softmax_cross_entropy_soft' for rows of probabilities)")
    if np.all(values == np.round(values)):
        return " (y holds whole numbers stored as floats: pass y.astype(int))"
    return ""


def _checked_ids(name: str, value, shape: tuple[int, ...], count: int, what: str,
                 allowed: str) -> np.ndarray:
    """Integer ids (class labels, token ids) of ``shape`` in ``0..count-1``, as int64."""
    ids = np.asarray(value)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"{name}: invalid dtype {ids.dtype}; allowed: integer {allowed}")
    if ids.shape != shape:
        raise ValueError(f"{name}: invalid shape {ids.shape}; allowed: "
                         f"({', '.join(map(str, shape))}{',' if len(shape) == 1 else ''}) "
                         f"{what}s")
    outside = (ids < 0) | (ids >= count)
    if outside.any():
        flat_index = int(np.argmax(outside))
        index = (flat_index if len(shape) == 1
                 else tuple(int(i) for i in np.unravel_index(flat_index, shape)))
        raise ValueError(f"{name}: {what} {int(ids.flat[flat_index])} at index {index} is "
                         f"outside the {'class ' if what == 'label' else ''}range; allowed: "
                         f"0..{count - 1} ({count} {'outputs' if what == 'label' else 'ids'})")
    return ids.astype(np.int64)


def _checked_array(name: str, value, shape: tuple[int, ...], allowed: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: not a numeric array ({type(value).__name__}); allowed: "
                         f"{allowed}") from None
    if array.shape != shape:
        raise ValueError(f"{name}: invalid shape {array.shape}; allowed: {allowed}")
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), shape))
        raise ValueError(f"{name}: {int(bad.sum())} non-finite values (first at {first}); "
                         "allowed: finite numbers")
    return array
