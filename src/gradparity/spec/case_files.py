"""Case files: a matrix of cases described in TOML (``gradparity run --config FILE``).

    [defaults]                      # optional, applied to every case
    steps = 10

    [[case]]
    layer_sizes = [4, 16, 3]
    hidden_activation = "tanh"      # or one name per hidden layer
    loss = "softmax_cross_entropy"
    dtype = ["float32", "float64"]  # dtype and seed may be lists: one case per value
    hyperparameters = { lr = 0.05 }

    [[case]]                        # a sequence of layers instead of layer_sizes
    input_shape = [3, 8, 8]
    layers = [{ type = "conv2d", channels = 4, padding = 1 }, { type = "relu" },
              { type = "flatten" }, { type = "dense", features = 3 }]
    loss = "softmax_cross_entropy"

    [[case]]                        # or a named architecture (gradparity list)
    architecture = "transformer"
    loss = "softmax_cross_entropy"

Keys are the fields of :class:`gradparity.spec.case.Case`. Every problem in the file
is reported, each with the file, the line, the key and what is allowed; none
raises a traceback.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import fields
from itertools import product
from pathlib import Path
from typing import Any

from gradparity.spec.case import Case

FIELDS = {f.name: f for f in fields(Case)}
EXPANDABLE = ("dtype", "seed")
EXPECTED_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "layer_sizes": ((list,), "a list of integers"),
    "hidden_activation": ((str, list), "a name or a list of names"),
    "output_activation": ((str,), "a name"),
    "loss": ((str,), "a name"),
    "dtype": ((str, list), "a name or a list of names"),
    "batch_size": ((int,), "an integer"),
    "dataset": ((str,), "a name"),
    "seed": ((int, list), "an integer or a list of integers"),
    "optimizer": ((str,), "a name"),
    "hyperparameters": ((dict,), "a table, e.g. { lr = 0.1 }"),
    "steps": ((int,), "an integer"),
    "options": ((dict,), "a table, e.g. { schedule = \"cosine\", dropout = 0.2 }"),
    "layers": ((list,), "a list of layer tables, e.g. [{ type = \"conv2d\", channels = 4 }]"),
    "input_shape": ((list,), "a list of integers, e.g. [3, 8, 8]"),
    "architecture": ((str,), "a name"),
}


class ConfigError(ValueError):
    """Every problem found in a case file; ``problems`` holds one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _line_of(text: str, section: str, index: int, key: str | None) -> int:
    """1-based line of ``key`` in the ``index``-th ``[section]``/``[[section]]`` table."""
    count, inside, header = -1, False, 1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            inside = False
            if stripped.strip("[] ") == section:
                count += 1
                if count == index:
                    inside, header = True, number
            continue
        if inside and key and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return header


def _type_problem(key: str, value: Any) -> str | None:
    types, text = EXPECTED_TYPES[key]
    if isinstance(value, bool) or not isinstance(value, types):
        return f"expected {text}, got {type(value).__name__} {value!r}"
    return None


def _entry_cases(entry: dict, where: str, locate) -> tuple[list[Case], list[str]]:
    problems = []
    for key, value in entry.items():
        if key not in FIELDS:
            hint = difflib.get_close_matches(key, FIELDS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"{locate(key)}: {where}.{key}: unknown key{suggestion}; allowed: "
                            + ", ".join(FIELDS))
        elif (problem := _type_problem(key, value)) is not None:
            problems.append(f"{locate(key)}: {where}.{key}: {problem}")
    if problems:
        return [], problems
    choices = [[(key, v) for v in entry[key]] if key in EXPANDABLE and isinstance(
        entry.get(key), list) else [(key, entry[key])] for key in entry]
    cases = []
    for combination in product(*choices):
        arguments = dict(combination)
        for key in ("layer_sizes", "input_shape"):
            if key in arguments:
                arguments[key] = tuple(arguments[key])
        if isinstance(arguments.get("hidden_activation"), list):
            arguments["hidden_activation"] = tuple(arguments["hidden_activation"])
        case, found = _built(arguments, where, locate)
        problems += [problem for problem in found if problem not in problems]
        if case is not None:
            cases.append(case)
    return cases, problems


def _built(arguments: dict, where: str, locate) -> tuple[Case | None, list[str]]:
    """The case, or every problem of its fields: a field that fails is reported, set
    back to its default, and the case is built again, so one pass finds them all."""
    problems: list[str] = []
    failed: set[str] = set()
    while True:
        try:
            case = Case(**arguments)
            return (None if problems else case), problems
        except ValueError as error:
            field = str(error).split(":")[0].removeprefix("Case.").split("[")[0]
            problems.append(f"{locate(field)}: {where}.{field}: {error}")
            if field in failed or field not in arguments:
                return None, problems  # a field whose default cannot stand alone
            failed.add(field)
            del arguments[field]


def load_cases(path: Path) -> list[Case]:
    """Every case of the file, or :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory; allowed: a TOML case file"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([f"{path}: not UTF-8 text (byte {error.start}: "
                           f"{error.object[error.start:error.start + 1]!r}); allowed: a "
                           "UTF-8 TOML case file"]) from None
    except OSError as error:
        raise ConfigError([f"{path}: cannot be read ({error.strerror or error}); allowed: "
                           "a readable TOML case file"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: not valid TOML: {error}"]) from None
    problems = [f"{path}:{_line_of(text, key, 0, None)}: {key}: unknown table; allowed: "
                "defaults, case" for key in data if key not in ("defaults", "case")]
    defaults = data.get("defaults", {})
    entries = data.get("case", [])
    if not isinstance(entries, list) or not entries:
        problems.append(f"{path}: no [[case]] table; add at least one")
        raise ConfigError(problems)
    cases: list[Case] = []
    for index, entry in enumerate(entries):
        merged = {**defaults, **entry}

        def locate(key, index=index, entry=entry):
            section = "case" if key is None or key in entry else "defaults"
            return f"{path}:{_line_of(text, section, index if section == 'case' else 0, key)}"

        found, entry_problems = _entry_cases(merged, f"case[{index}]", locate)
        cases += found
        problems += entry_problems
    ids = [case.id for case in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        problems.append(f"{path}: duplicate cases (same id): {', '.join(duplicates)}")
    if problems:
        raise ConfigError(problems)
    return cases
