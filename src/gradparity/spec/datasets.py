"""The registry of data sets: deterministic generators of inputs and targets.

Each data set draws from the generator it is given (stream 1 of the case seed, see
:mod:`gradparity.spec.data`) and says which cases it cannot serve. Arrays come back
in float64 (labels as int64); :func:`gradparity.spec.data.make_problem` rounds them
once to the case dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.reference.losses import LOSSES

Case = Any
"""A :class:`gradparity.spec.case.Case` (which imports this module to validate its
``dataset``; the alias avoids an import cycle)."""


@dataclass(frozen=True)
class Dataset:
    """A named data generator and the cases it can serve."""

    name: str
    generate: Callable[[Case, np.random.Generator, int], tuple[np.ndarray, np.ndarray]]
    incompatibility: Callable[[Case], str | None]
    description: str


def _loss_target_kind(case: Case) -> str:
    return LOSSES[case.loss].target_kind


# -- xor --------------------------------------------------------------------

_XOR_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_XOR_LABELS = np.array([0, 1, 1, 0])


def _xor(case: Case, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    repeats = rows // len(_XOR_LABELS)  # every batch is the same 4 points
    x, labels = np.tile(_XOR_INPUTS, (repeats, 1)), np.tile(_XOR_LABELS, repeats)
    if _loss_target_kind(case) == "class_index":
        return x, labels
    return x, labels[:, None].astype(np.float64)


def _xor_incompatibility(case: Case) -> str | None:
    if _loss_target_kind(case) == "probabilities":
        return f"xor has hard labels; loss {case.loss!r} needs probability targets (blobs)"
    n_out_required = 2 if _loss_target_kind(case) == "class_index" else 1
    if case.is_sequence:
        return "xor is for dense MLPs given by layer_sizes"
    if case.layer_sizes[0] != 2 or case.layer_sizes[-1] != n_out_required:
        return (
            f"xor needs layer_sizes (2, ..., {n_out_required}) for loss {case.loss!r}, "
            f"got {case.layer_sizes}"
        )
    if case.batch_size != 4:
        return f"xor has exactly 4 points: batch_size must be 4, got {case.batch_size}"
    return None


# -- regression ---------------------------------------------------------------


def _regression(case: Case, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((rows, *case.example_shape))
    y = rng.standard_normal((rows, *case.output_shape))
    return x, y


def _float_inputs(case: Case) -> str | None:
    if case.takes_tokens:
        return "the network starts with an embedding, which takes token ids (data set 'tokens')"
    return None


def _regression_incompatibility(case: Case) -> str | None:
    if _loss_target_kind(case) != "real":
        return f"regression has real-valued targets; loss {case.loss!r} needs another data set"
    return _float_inputs(case)


# -- blobs --------------------------------------------------------------------


def _blobs(case: Case, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters, one per class, centres drawn with spread 2.

    ``class_index`` targets are the labels; ``binary`` targets are the label
    itself for one output (two classes) or its one-hot encoding for several.
    """
    shape, n_out = case.example_shape, case.output_shape[-1]
    n_classes = 2 if n_out == 1 else n_out
    centres = 2.0 * rng.standard_normal((n_classes, *shape))
    labels = rng.integers(0, n_classes, size=rows)
    x = centres[labels] + rng.standard_normal((rows, *shape))
    if _loss_target_kind(case) == "class_index":
        return x, labels.astype(np.int64)
    if _loss_target_kind(case) == "probabilities":
        # soft targets leaning towards the blob's class: softmax(3 onehot + noise)
        scores = 3.0 * np.eye(n_out)[labels] + rng.standard_normal((rows, n_out))
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return x, scores / scores.sum(axis=1, keepdims=True)
    if n_out == 1:
        return x, labels[:, None].astype(np.float64)
    return x, np.eye(n_out)[labels]


def _blobs_incompatibility(case: Case) -> str | None:
    if _loss_target_kind(case) not in ("class_index", "binary", "probabilities"):
        return f"blobs has class labels; loss {case.loss!r} needs real-valued targets"
    if len(case.output_shape) != 1:
        return (f"blobs has one label per example; the network's output per example is "
                f"{case.output_shape} (one row of scores per example needed)")
    return _float_inputs(case)


# -- tokens -------------------------------------------------------------------


def _tokens(case: Case, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Toy token sequences: each sequence counts up from a random start by a step of its
    own (1 or 2, mod the vocabulary), one token in five replaced by a random one; the
    inputs are positions 0..T-1 and the targets the next tokens, positions 1..T."""
    (positions,), vocab = case.example_shape, case.output_shape[-1]
    start = rng.integers(0, vocab, size=(rows, 1))
    stride = rng.integers(1, 3, size=(rows, 1))
    sequence = (start + stride * np.arange(positions + 1)) % vocab
    noise = rng.random(sequence.shape) < 0.2
    sequence = np.where(noise, rng.integers(0, vocab, size=sequence.shape), sequence)
    return sequence[:, :-1].astype(np.int64), sequence[:, 1:].astype(np.int64)


def _tokens_incompatibility(case: Case) -> str | None:
    if not case.takes_tokens:
        return "tokens feeds token ids to a network that starts with an embedding"
    if _loss_target_kind(case) != "class_index":
        return f"tokens has next-token labels; loss {case.loss!r} needs another data set"
    if case.output_shape != (*case.example_shape, dict(case.layers[0])["vocab"]):
        return (f"tokens predicts the next token at every position: the output per example "
                f"must be (positions, vocab) = "
                f"{(*case.example_shape, dict(case.layers[0])['vocab'])}, got "
                f"{case.output_shape}")
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
        "Gaussian clusters with integer class labels (one-hot / 0-1 for binary losses), in "
        "the input shape (vectors, or images such as 3x8x8)",
    ),
    "tokens": Dataset(
        "tokens", _tokens, _tokens_incompatibility,
        "toy token sequences (counting up by 1 or 2 with 20% noise); targets: the next "
        "token at every position",
    ),
}
"""The registry of data sets."""


def default_dataset_for(target_kind: str) -> str:
    """The data set a case uses when it names none."""
    return "regression" if target_kind == "real" else "blobs"
