"""Which cases ``gradparity check`` runs: the default matrix filtered, a case file, or a
network described by flags, on generated data or the user's ``.npz``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from gradparity.reference import LOSSES
from gradparity.spec.case import DTYPES, Case
from gradparity.spec.case_files import ConfigError, load_cases
from gradparity.spec.data import Problem, problem_from_arrays
from gradparity.spec.matrix import filter_cases, select_cases

DEFAULT_LR = 0.1


def parse_value(text: str) -> Any:
    """``true``/``false`` -> bool, then int, then float, else the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_pairs(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["momentum=0.9", "nesterov=true"]`` -> ``{"momentum": 0.9, "nesterov": True}``."""
    found = {}
    for pair in pairs or []:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"{flag}: invalid value {pair!r}; allowed: NAME=VALUE")
        found[name.strip()] = parse_value(value)
    return found


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--layers: invalid value {text!r}; allowed: comma-separated "
                         "integers, e.g. 784,100,10") from None
    return sizes


def _load_data(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise ValueError(f"--data: file not found: {path}") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"--data: {path} is not a readable .npz file ({error}); allowed: "
                         "np.savez(path, x=..., y=..., [W1=..., b1=..., ...])") from None
    missing = [name for name in ("x", "y") if name not in arrays]
    if missing:
        raise ValueError(f"--data: {path} has no {missing}; allowed: arrays x, y and "
                         "optionally the initial weights W1, b1, ...")
    return arrays


def built_cases(args: argparse.Namespace, data: dict[str, np.ndarray] | None) -> list[Case]:
    """The cases ``--layers`` and its companion flags describe, one per dtype and seed."""
    sizes = _sizes(args.layers)
    loss = args.loss or "mse"
    if loss not in LOSSES:
        raise ValueError(f"--loss: invalid value {loss!r}; allowed: {', '.join(LOSSES)}")
    output = args.output_activation or LOSSES[loss].output_activation or "identity"
    batch = args.batch_size or (len(data["x"]) if data is not None else 8)
    hyperparameters = {"lr": args.lr if args.lr is not None else DEFAULT_LR,
                       **parse_pairs(args.hp, "--hp")}
    dtypes = [args.dtype] if args.dtype else list(DTYPES)
    cases = []
    for dtype in dtypes:
        for seed in range(args.seeds):
            try:
                cases.append(Case(sizes, args.activation or "tanh", output_activation=output,
                                  loss=loss, dtype=dtype, batch_size=batch,
                                  optimizer=args.optimizer or "sgd",
                                  hyperparameters=hyperparameters,
                                  steps=args.steps if args.steps is not None else 10,
                                  seed=seed, options=parse_pairs(args.option, "--option")))
            except ValueError as error:
                raise ValueError(str(error).replace("Case.", "--", 1)) from None
    return cases


def selected_cases(args: argparse.Namespace) -> tuple[list[Case], dict[Case, Problem]]:
    """The cases to check and, with ``--data``, the user's problem for each."""
    data = _load_data(args.data) if args.data is not None else None
    if args.layers:
        cases = built_cases(args, data)
    elif args.config is not None:
        try:
            cases = load_cases(args.config)
        except ConfigError as error:
            raise ValueError("; ".join(error.problems)) from None
        cases = filter_cases(cases, activation=args.activation, loss=args.loss,
                             dtype=args.dtype, optimizer=args.optimizer, case=args.case)
    else:
        if data is not None:
            raise ValueError("--data: needs the network it feeds: --layers (or --config)")
        try:
            cases = select_cases(activation=args.activation, loss=args.loss, dtype=args.dtype,
                                 optimizer=args.optimizer, case=args.case, seeds=args.seeds)
        except ValueError as error:
            raise ValueError(f"--{error}") from None
    if data is None:
        return cases, {}
    params = {name: value for name, value in data.items() if name not in ("x", "y")}
    problems = {}
    for case in cases:
        try:
            problems[case] = problem_from_arrays(case, data["x"], data["y"], params or None)
        except ValueError as error:
            raise ValueError(f"--data ({case.id}): {error}") from None
    return cases, problems
