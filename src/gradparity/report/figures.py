"""The figures the documentation quotes, written by a command so they cannot go stale.

``gradparity figures --results docs/example-report/results.json`` writes Markdown
snippets into ``docs/generated/`` that the docs include (``--8<--``): the registries
(layers, architectures, conventions, the mutation catalogue, the default matrix) and
the example run's summary. ``--check`` regenerates them in memory and fails on any
difference with the committed files; ``--against FRESH.json`` also fails when a fresh run
of the default matrix differs from the committed example in structure (its case ids,
each case's checks, the verdict), i.e. when the example report is stale. The numbers
that depend on the machine's arithmetic (eps, ratios) are compared with nothing: they
belong to the example run, whose environment its report states.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from gradparity.adapters.conventions import CONVENTIONS
from gradparity.check.mutants import CATALOGUE
from gradparity.reference.layers import LAYERS
from gradparity.spec.architectures import ARCHITECTURES, layers_code
from gradparity.spec.matrix import check_cases, default_cases

GENERATED = Path("docs/generated")


def _architectures(results: dict) -> str:
    lines = ["| architecture | input (per example) | layers | what it is |", "|---|---|---|---|"]
    for name, (layers, shape, description) in ARCHITECTURES.items():
        lines.append(f"| `{name}` | {'x'.join(map(str, shape))} | `{layers_code(layers)}` | "
                     f"{description} |")
    return "\n".join(lines)


def _matrix(results: dict) -> str:
    cases = default_cases()
    families = Counter(case.network_family for case in cases)
    lines = [f"The default matrix (`gradparity run`) has **{len(cases)} cases** (plus the two "
             f"XOR cases of the seed example; `gradparity check` runs those "
             f"{len(check_cases())}):", "", "| network | cases |", "|---|---|"]
    lines += [f"| `{family}` | {count} |" for family, count in families.items()]
    return "\n".join(lines)


def _layers(results: dict) -> str:
    return ", ".join(f"`{name}`" for name in LAYERS)


def _conventions(results: dict) -> str:
    lines = [f"{len(CONVENTIONS)} conventions are catalogued "
             "(`gradparity.adapters.conventions`; `gradparity list` names them):", "",
             "| convention | PyTorch | JAX / optax / Flax | effect |", "|---|---|---|---|"]
    lines += [f"| `{c.name}` | {c.torch} | {c.jax} | {c.effect} |" for c in CONVENTIONS]
    return "\n".join(lines)


def _mutants(results: dict) -> str:
    compound = sum(m.compound for m in CATALOGUE)
    return (f"The catalogue holds **{len(CATALOGUE)} mutants** ({compound} of them with "
            f"several bugs at once); `gradparity mutants` runs them all and writes the kill "
            f"matrix ([example](example-report/MUTANTS.md)).")


def _summary(results: dict) -> str:
    summary = results["summary"]
    checks = [check for case in results["cases"] for check in case["checks"]]
    between = [c for c in checks if c["baseline"] in results["frameworks"]]
    largest = max((c["headroom"] for c in between), default=0.0)
    verdict = ("all agree" if not summary["failed_cases"]
               else f"{len(summary['failed_cases'])} disagree")
    return (f"The [example run](example-report/REPORT.md) (`nox -s example`): "
            f"{summary['cases']} cases, {summary['checks']:,} checks, {verdict}; the largest "
            f"observed/allowed ratio between frameworks is {largest:.3f}.")


def _precision(results: dict) -> str:
    checks = [(case["id"], c) for case in results["cases"] for c in case["checks"]]
    frameworks = set(results["frameworks"])

    def largest(rows):
        return max(rows, key=lambda row: row[1]["normwise"]) if rows else None

    lines = []
    between64 = largest([r for r in checks if r[1]["baseline"] in frameworks
                         and "_float64_" in r[0]])
    between32 = largest([r for r in checks if r[1]["baseline"] in frameworks
                         and "_float32_" in r[0]])
    oracle = largest([r for r in checks if r[1]["baseline"] == "float64 oracle"])
    for label, row in (("float64, between frameworks", between64),
                       ("float32, between frameworks", between32),
                       ("float32 against the float64 oracle", oracle)):
        if row is not None:
            case, c = row
            lines.append(f"- {label}: at most {c['normwise']:.1e} normwise "
                         f"({c['normwise_eps']:.1f} eps): {c['framework']} vs "
                         f"{c['baseline']}, {c['quantity']} of {c['parameter']} in `{case}`")
    return "\n".join(lines)


SNIPPETS: dict[str, Callable[[dict], str]] = {
    "precision.md": _precision,
    "architectures.md": _architectures,
    "matrix.md": _matrix,
    "layers.md": _layers,
    "conventions.md": _conventions,
    "mutants.md": _mutants,
    "example-summary.md": _summary,
}
"""Every generated snippet, by file name."""


def snippets(results_path: Path) -> dict[str, str]:
    results = json.loads(Path(results_path).read_text(encoding="utf-8"))
    return {name: make(results).rstrip() + "\n" for name, make in SNIPPETS.items()}


def write_figures(results_path: Path, out: Path = GENERATED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in snippets(results_path).items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


def stale_figures(results_path: Path, out: Path = GENERATED) -> list[str]:
    """Every generated file that differs from what the command would write now."""
    problems = []
    for name, text in snippets(results_path).items():
        path = out / name
        if not path.exists():
            problems.append(f"{path}: missing; run gradparity figures")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: stale; run gradparity figures (or nox -s example)")
    return problems


def _structure(results: dict) -> dict:
    return {case["id"]: (case["passed"], sorted(
        (c["framework"], c["baseline"], c["quantity"], c["parameter"]) for c in case["checks"]))
        for case in results["cases"]}


def stale_example(results_path: Path, fresh_path: Path) -> list[str]:
    """Where the committed example run differs in structure from a fresh one."""
    committed = _structure(json.loads(Path(results_path).read_text(encoding="utf-8")))
    fresh = _structure(json.loads(Path(fresh_path).read_text(encoding="utf-8")))
    problems = [f"case {case}: only in the committed example" for case in committed
                if case not in fresh]
    problems += [f"case {case}: only in the fresh run" for case in fresh if case not in committed]
    problems += [f"case {case}: its checks or verdict changed" for case in committed
                 if case in fresh and committed[case] != fresh[case]]
    return [f"{results_path}: {problem}; regenerate with nox -s example" for problem in problems]
