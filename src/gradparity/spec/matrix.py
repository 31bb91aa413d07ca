"""Built-in case matrices: the default report matrix, the test matrix, the XOR example.

Each matrix is built from the registries in :mod:`gradparity.reference`, so a
newly registered activation or loss is covered without editing a list here.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import replace
from itertools import product

from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from gradparity.spec.architectures import ARCHITECTURES
from gradparity.spec.case import DTYPES, Case

REPORT_ARCHITECTURE = (4, 16, 16, 3)
TEST_ARCHITECTURES = ((3, 8, 2), (4, 16, 16, 3))

# (optimizer, hyperparameters): every optimizer and its options, run on one MLP
OPTIMIZER_VARIANTS: tuple[tuple[str, dict], ...] = (
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    ("sgd", {"lr": 0.1, "weight_decay": 0.01}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw", {"lr": 0.01}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1}),
    # clipping: by global norm with torch's 1e-6 and with optax's 0, and by value
    ("sgd", {"lr": 0.1, "clip_norm": 0.05}),
    ("sgd", {"lr": 0.1, "clip_norm": 0.05, "clip_norm_eps": 0.0}),
    ("sgd", {"lr": 0.1, "clip_value": 0.01}),
    # the two AMSGrad maxima: torch's (raw v) and optax's (bias-corrected v_hat)
    ("amsgrad", {"lr": 0.01}),
    ("amsgrad", {"lr": 0.01, "max_of_bias_corrected": True}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "centered": True}),
    ("rmsprop", {"lr": 0.01, "eps_in_sqrt": True}),  # optax's default placement
    # momentum: torch's lr outside the buffer; optax's inside is an option (OPTION_VARIANTS)
    ("rmsprop", {"lr": 0.01, "momentum": 0.9}),
    # eps outside the square root (torch) and inside (optax)
    ("adagrad", {"lr": 0.1}),
    ("adagrad", {"lr": 0.1, "eps_in_sqrt": True, "initial_accumulator_value": 0.1}),
)

# (hidden activation, loss, optimizer, hyperparameters, options): activation and loss
# parameters, dropout, batch sequences and learning-rate schedules (gradparity.spec.options)
OPTION_VARIANTS: tuple[tuple[str, str, str, dict, dict], ...] = (
    ("leaky_relu", "mse", "sgd", {"lr": 0.1}, {"negative_slope": 0.2}),
    ("elu", "mse", "sgd", {"lr": 0.1}, {"elu_alpha": 0.5}),
    ("tanh", "huber", "sgd", {"lr": 0.1}, {"huber_delta": 0.5}),
    ("tanh", "smooth_l1", "sgd", {"lr": 0.1}, {"smooth_l1_beta": 0.5}),
    ("tanh", "softmax_cross_entropy_smoothed", "sgd", {"lr": 0.1}, {"label_smoothing": 0.3}),
    ("tanh", "softmax_cross_entropy", "sgd", {"lr": 0.1, "momentum": 0.9}, {"dropout": 0.3}),
    ("relu", "softmax_cross_entropy", "adam", {"lr": 0.01}, {"dropout": 0.5, "batches": 3}),
    # N steps over a fixed sequence of batches, optimizer state compared after every step
    ("tanh", "softmax_cross_entropy", "sgd", {"lr": 0.1, "momentum": 0.9}, {"batches": 4}),
    ("tanh", "softmax_cross_entropy", "adamw", {"lr": 0.01}, {"batches": 4}),
    # schedules, and their interaction with momentum
    ("tanh", "softmax_cross_entropy", "sgd", {"lr": 0.1, "momentum": 0.9},
     {"schedule": "step", "step_size": 3, "gamma": 0.5}),
    ("tanh", "softmax_cross_entropy", "adam", {"lr": 0.01}, {"schedule": "cosine"}),
    ("tanh", "softmax_cross_entropy", "adamw", {"lr": 0.01, "weight_decay": 0.1},
     {"schedule": "cosine", "cosine_min_lr": 0.001, "batches": 2}),
    ("tanh", "softmax_cross_entropy", "sgd", {"lr": 0.1},
     {"schedule": "cosine", "cosine_period": 4}),  # torch's form past the period
    ("tanh", "softmax_cross_entropy", "sgd", {"lr": 0.1},
     {"schedule": "cosine", "cosine_period": 4, "cosine_past_period": "hold"}),  # optax's
    ("tanh", "softmax_cross_entropy", "rmsprop", {"lr": 0.01, "momentum": 0.9},
     {"schedule": "cosine"}),  # torch's lr outside the momentum buffer
    ("tanh", "softmax_cross_entropy", "rmsprop", {"lr": 0.01, "momentum": 0.9},
     {"schedule": "cosine", "lr_in_momentum": True}),  # optax's lr inside
    ("tanh", "softmax_cross_entropy", "rmsprop", {"lr": 0.01, "momentum": 0.9},
     {"lr_in_momentum": True}),  # optax's form at a constant rate
    ("tanh", "mse", "sgd", {"lr": 0.1}, {"bias": False}),  # a network without biases
)

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


def optimizer_cases(
    sizes: tuple[int, ...] = REPORT_ARCHITECTURE, variants=OPTIMIZER_VARIANTS
) -> list[Case]:
    """Every optimizer variant in both dtypes, on a tanh classifier."""
    return [
        Case(sizes, "tanh", loss="softmax_cross_entropy", dtype=dtype, optimizer=name,
             hyperparameters=hyperparameters)
        for dtype in DTYPES
        for name, hyperparameters in variants
    ]


def option_cases(sizes: tuple[int, ...] = REPORT_ARCHITECTURE) -> list[Case]:
    """Every option variant in both dtypes."""
    cases = []
    for dtype in DTYPES:
        for activation, loss, optimizer, hyperparameters, options in OPTION_VARIANTS:
            cases.append(Case(sizes, activation, loss=loss, dtype=dtype,
                              optimizer=optimizer, hyperparameters=hyperparameters,
                              options=options))
    return cases


BASE_LOSSES = ("mse", "softmax_cross_entropy", "binary_cross_entropy_with_logits")


def _loss_case(sizes: tuple[int, ...], loss: str, dtype: str, activation: str = "tanh") -> Case:
    """One case for ``loss``: the output activation it needs, and a step size that keeps
    summed losses (whose gradients are batch*outputs times larger) from diverging."""
    output = LOSSES[loss].output_activation or "identity"
    summed = loss.endswith("_sum")
    lr = 0.1 / (8 * sizes[-1]) if summed else 0.1
    return Case(sizes, activation, output_activation=output, loss=loss, dtype=dtype,
                hyperparameters={"lr": lr})


def loss_cases(sizes: tuple[int, ...] = REPORT_ARCHITECTURE) -> list[Case]:
    """Every loss beyond the three base ones, in both dtypes, with tanh hidden layers, and
    half_mse_batch_mean behind a sigmoid output (as from-scratch networks write it)."""
    return [_loss_case(sizes, loss, dtype) for dtype in DTYPES for loss in LOSSES
            if loss not in BASE_LOSSES] + [
        Case(sizes, "sigmoid", output_activation="sigmoid", loss="half_mse_batch_mean",
             dtype=dtype) for dtype in DTYPES]


ARCHITECTURE_OPTIMIZERS: tuple[tuple[str, dict], ...] = (("sgd", {"lr": 0.1}),
                                                         ("adam", {"lr": 0.01}))


def architecture_cases() -> list[Case]:
    """Every named architecture beyond the MLP (a CNN, with BatchNorm, a residual MLP with
    layer norm, a causal transformer block: ``spec.architectures.ARCHITECTURES``) in both
    dtypes, with SGD and Adam, on a softmax cross-entropy."""
    return [Case(architecture=name, loss="softmax_cross_entropy", dtype=dtype,
                 optimizer=optimizer, hyperparameters=hyperparameters)
            for name in ARCHITECTURES for dtype in DTYPES
            for optimizer, hyperparameters in ARCHITECTURE_OPTIMIZERS]


def default_cases() -> list[Case]:
    """What ``gradparity run`` runs: activation x base loss x dtype on one MLP, then every
    other loss, the optimizers, the case options (parameters, dropout, batch sequences,
    schedules) and the architectures beyond the MLP."""
    return [
        Case(REPORT_ARCHITECTURE, activation, loss=loss, dtype=dtype)
        for dtype, loss, activation in product(DTYPES, BASE_LOSSES, ACTIVATIONS)
    ] + loss_cases() + optimizer_cases() + option_cases() + architecture_cases()


def parity_cases() -> list[Case]:
    """The pytest parity matrix: architectures x activations x losses x dtypes, plus edges."""
    cases = [
        Case(sizes, activation, loss=loss, dtype=dtype)
        for sizes, activation, loss, dtype in product(
            TEST_ARCHITECTURES, ACTIVATIONS, BASE_LOSSES, DTYPES
        )
    ]
    cases += loss_cases((3, 8, 2))
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
    return (cases + optimizer_cases((3, 8, 2)) + option_cases((3, 8, 2))
            + architecture_cases())


def check_cases() -> list[Case]:
    """What ``gradparity check`` runs by default: the report matrix and the XOR example."""
    return [*default_cases(), xor_case("float64"), xor_case("float32")]


def matches_id(pattern: str, case_id: str) -> bool:
    """An exact case id, or a glob pattern over ids (``*tanh_mse*``, ``mlp4-16-16-3_*``)."""
    return case_id == pattern or (any(c in pattern for c in "*?[")
                                  and fnmatch.fnmatchcase(case_id, pattern))


def filter_cases(
    candidates: list[Case],
    *,
    activation: str | None = None,
    loss: str | None = None,
    dtype: str | None = None,
    optimizer: str | None = None,
    case: str | None = None,
) -> list[Case]:
    """``candidates`` filtered by hidden activation, loss, dtype, optimizer and case id
    (exact or glob). Unknown names raise ``ValueError`` naming the filter and its allowed
    values; a ``case`` that matches nothing says which ids come close."""
    filters = {"activation": (activation, ACTIVATIONS), "loss": (loss, LOSSES),
               "dtype": (dtype, DTYPES), "optimizer": (optimizer, OPTIMIZERS)}
    for name, (value, allowed) in filters.items():
        if value is not None and value not in allowed:
            raise ValueError(f"{name}: invalid value {value!r}; allowed: {', '.join(allowed)}")
    selected = [
        candidate for candidate in candidates
        if (activation is None or activation in candidate.hidden_activation)
        and (loss is None or candidate.loss == loss)
        and (dtype is None or candidate.dtype == dtype)
        and (optimizer is None or candidate.optimizer == optimizer)
        and (case is None or matches_id(case, candidate.id))
    ]
    if not selected and case is not None:
        containing = [c.id for c in candidates if case in c.id]
        close = containing or difflib.get_close_matches(case, [c.id for c in candidates], n=3)
        hint = (f"; {len(containing)} ids contain it: try --case '*{case}*'" if containing
                else f"; did you mean {', '.join(close)}?" if close else "")
        raise ValueError(f"case: no case id is {case!r} (an exact id or a glob such as "
                         f"'*xor*'){hint}; `gradparity list --cases` lists them")
    if not selected:
        raise ValueError("no default case matches these filters (`gradparity list --cases` "
                         "lists them)")
    return selected


def select_cases(
    *,
    activation: str | None = None,
    loss: str | None = None,
    dtype: str | None = None,
    optimizer: str | None = None,
    case: str | None = None,
    seeds: int = 1,
) -> list[Case]:
    """The check matrix filtered (:func:`filter_cases`), every case repeated for seeds
    ``0..seeds-1``."""
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds: invalid value {seeds!r}; allowed: an integer >= 1")
    selected = filter_cases(check_cases(), activation=activation, loss=loss, dtype=dtype,
                            optimizer=optimizer, case=case)
    return [replace(c, seed=seed) for c in selected for seed in range(seeds)]
