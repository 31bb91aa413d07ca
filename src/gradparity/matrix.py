"""Built-in case matrices: the default report matrix, the test matrix, the XOR example.

Each matrix is built from the registries in :mod:`gradparity.reference`, so a
newly registered activation or loss is covered without editing a list here.
"""

from __future__ import annotations

from itertools import product

from gradparity.case import DTYPES, Case
from gradparity.reference import ACTIVATIONS, LOSSES

REPORT_ARCHITECTURE = (4, 16, 16, 3)
TEST_ARCHITECTURES = ((3, 8, 2), (4, 16, 16, 3))

XOR_STEPS = 1000
XOR_LEARNING_RATE = 0.1


def xor_case(dtype: str = "float64") -> Case:
    """The seed example: 2-10-1 sigmoid network on XOR, MSE, SGD lr 0.1, 1000 steps."""
    return Case(
        layer_sizes=(2, 10, 1),
        hidden_activation="sigmoid",
        output_activation="sigmoid",
        loss="mse",
        dtype=dtype,
        batch_size=4,
        dataset="xor",
        hyperparameters={"lr": XOR_LEARNING_RATE},
        steps=XOR_STEPS,
    )


def default_cases() -> list[Case]:
    """What ``gradparity run`` runs: every hidden activation x loss x dtype on one MLP."""
    return [
        Case(REPORT_ARCHITECTURE, activation, loss=loss, dtype=dtype)
        for dtype, loss, activation in product(DTYPES, LOSSES, ACTIVATIONS)
    ]


def parity_cases() -> list[Case]:
    """The pytest parity matrix: architectures x activations x losses x dtypes, plus edges."""
    cases = [
        Case(sizes, activation, loss=loss, dtype=dtype)
        for sizes, activation, loss, dtype in product(
            TEST_ARCHITECTURES, ACTIVATIONS, LOSSES, DTYPES
        )
    ]
    for dtype in DTYPES:
        cases += [
            # an output nonlinearity in front of mse
            Case((3, 8, 2), "tanh", output_activation="sigmoid", dtype=dtype),
            Case((3, 8, 2), "relu", output_activation="tanh", dtype=dtype),
            # a different activation per hidden layer
            Case((4, 8, 8, 8, 3), ("relu", "tanh", "sigmoid"), loss="softmax_cross_entropy",
                 dtype=dtype),
            # no hidden layer (logistic regression) and batch edge cases
            Case((5, 1), "tanh", loss="binary_cross_entropy_with_logits", dtype=dtype),
            Case((3, 8, 2), "tanh", loss="softmax_cross_entropy", batch_size=1, dtype=dtype),
            Case((3, 8, 2), "relu", batch_size=32, seed=7, dtype=dtype),
        ]
    return cases
