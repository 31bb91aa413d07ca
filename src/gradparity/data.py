"""Deterministic data and initial weights, generated once in NumPy.

Every implementation receives the very same arrays: they are drawn in float64
from ``numpy.random`` generators seeded by the case seed, rounded once to the
case dtype, and made read-only. Two independent streams are spawned from
``SeedSequence(seed)``: stream 0 draws the weights, stream 1 the data, so
changing the data set never changes the initial weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradparity.reference.network import parameter_names

if TYPE_CHECKING:
    from gradparity.case import Case


@dataclass(frozen=True)
class Problem:
    """Inputs for one case: initial parameters, inputs ``x`` and targets ``y``.

    ``params`` maps ``W1, b1, ..., WL, bL`` to arrays shaped ``(fan_in, fan_out)``
    and ``(fan_out,)``. ``y`` is float (same shape as the output) for ``real`` and
    ``binary`` targets, int64 labels of shape ``(batch,)`` for ``class_index``.
    All arrays are read-only.
    """

    params: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray

    def as_float64(self) -> Problem:
        """The same numbers in float64 (labels stay integers): oracles compute there."""
        return Problem(
            params={n: np.asarray(v, dtype=np.float64) for n, v in self.params.items()},
            x=np.asarray(self.x, dtype=np.float64),
            y=self.y if self.y.dtype.kind == "i" else np.asarray(self.y, dtype=np.float64),
        )


@dataclass(frozen=True)
class Dataset:
    """A named data generator and the cases it can serve."""

    name: str
    generate: Callable[[Case, np.random.Generator], tuple[np.ndarray, np.ndarray]]
    incompatibility: Callable[[Case], str | None]
    description: str


def _loss_target_kind(case: Case) -> str:
    from gradparity.reference.losses import LOSSES

    return LOSSES[case.loss].target_kind


# -- xor --------------------------------------------------------------------

_XOR_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_XOR_LABELS = np.array([0, 1, 1, 0])


def _xor(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if _loss_target_kind(case) == "class_index":
        return _XOR_INPUTS.copy(), _XOR_LABELS.copy()
    return _XOR_INPUTS.copy(), _XOR_LABELS[:, None].astype(np.float64)


def _xor_incompatibility(case: Case) -> str | None:
    if _loss_target_kind(case) == "probabilities":
        return f"xor has hard labels; loss {case.loss!r} needs probability targets (blobs)"
    n_out_required = 2 if _loss_target_kind(case) == "class_index" else 1
    if case.layer_sizes[0] != 2 or case.layer_sizes[-1] != n_out_required:
        return (
            f"xor needs layer_sizes (2, ..., {n_out_required}) for loss {case.loss!r}, "
            f"got {case.layer_sizes}"
        )
    if case.batch_size != 4:
        return f"xor has exactly 4 points: batch_size must be 4, got {case.batch_size}"
    return None


# -- regression ---------------------------------------------------------------


def _regression(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((case.batch_size, case.layer_sizes[0]))
    y = rng.standard_normal((case.batch_size, case.layer_sizes[-1]))
    return x, y


def _regression_incompatibility(case: Case) -> str | None:
    if _loss_target_kind(case) != "real":
        return f"regression has real-valued targets; loss {case.loss!r} needs another data set"
    return None


# -- blobs --------------------------------------------------------------------


def _blobs(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters, one per class, centres drawn with spread 2.

    ``class_index`` targets are the labels; ``binary`` targets are the label
    itself for one output (two classes) or its one-hot encoding for several.
    """
    n_in, n_out = case.layer_sizes[0], case.layer_sizes[-1]
    n_classes = 2 if n_out == 1 else n_out
    centres = 2.0 * rng.standard_normal((n_classes, n_in))
    labels = rng.integers(0, n_classes, size=case.batch_size)
    x = centres[labels] + rng.standard_normal((case.batch_size, n_in))
    if _loss_target_kind(case) == "class_index":
        return x, labels.astype(np.int64)
    if _loss_target_kind(case) == "probabilities":
        # soft targets leaning towards the blob's class: softmax(3 onehot + noise)
        scores = 3.0 * np.eye(n_out)[labels] + rng.standard_normal((case.batch_size, n_out))
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return x, scores / scores.sum(axis=1, keepdims=True)
    if n_out == 1:
        return x, labels[:, None].astype(np.float64)
    return x, np.eye(n_out)[labels]


def _blobs_incompatibility(case: Case) -> str | None:
    if _loss_target_kind(case) not in ("class_index", "binary", "probabilities"):
        return f"blobs has class labels; loss {case.loss!r} needs real-valued targets"
    return None


DATASETS: dict[str, Dataset] = {
    "xor": Dataset(
        "xor", _xor, _xor_incompatibility, "the 4 points of XOR on {0,1}^2, target x1 xor x2"
    ),
    "regression": Dataset(
        "regression", _regression, _regression_incompatibility,
        "standard-normal inputs and standard-normal targets",
    ),
    "blobs": Dataset(
        "blobs", _blobs, _blobs_incompatibility,
        "Gaussian clusters with integer class labels (one-hot / 0-1 for binary losses)",
    ),
}
"""The registry of data sets."""


def default_dataset_for(target_kind: str) -> str:
    """The data set a case uses when it names none."""
    return "regression" if target_kind == "real" else "blobs"


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def initial_parameters(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """W_l, b_l ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's nn.Linear default range.

    Biases are non-zero on purpose, so their gradients are exercised.
    """
    params: dict[str, np.ndarray] = {}
    names = iter(parameter_names(case.num_layers))
    for fan_in, fan_out in zip(case.layer_sizes[:-1], case.layer_sizes[1:], strict=True):
        bound = 1.0 / np.sqrt(fan_in)
        params[next(names)] = rng.uniform(-bound, bound, size=(fan_in, fan_out))
        params[next(names)] = rng.uniform(-bound, bound, size=(fan_out,))
    return params


def make_problem(case: Case) -> Problem:
    """Draw the case's weights and data, round them once to the case dtype."""
    weights_seed, data_seed = np.random.SeedSequence(case.seed).spawn(2)
    params = initial_parameters(case, np.random.default_rng(weights_seed))
    x, y = DATASETS[case.dataset].generate(case, np.random.default_rng(data_seed))
    dtype = np.dtype(case.dtype)
    return Problem(
        params={name: _read_only(value.astype(dtype)) for name, value in params.items()},
        x=_read_only(x.astype(dtype)),
        y=_read_only(y if y.dtype == np.int64 else y.astype(dtype)),
    )
