"""``gradparity diff OLD.json NEW.json``: what changed between two runs.

Cases that started or stopped passing, checks whose error grew or shrank by
more than a factor, cases present in only one run, and every difference in
versions and numeric settings (a new PyTorch or JAX release, a changed flag).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pandas as pd

from gradparity.report.markdown import markdown_table

Key = tuple[str, str, str, str, str]  # case, framework, baseline, quantity, parameter


def _checks(results: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    return {
        (case["id"], c["framework"], c["baseline"], c["quantity"], c["parameter"]): c
        for case in results["cases"] for c in case["checks"]
    }


def _value(number: Any) -> float:
    return float(number)  # also parses the strings "inf", "-inf" and "nan"


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}{key}" if not prefix else f"{prefix} / {key}", inner)
    else:
        yield prefix, str(value)


def compare_runs(old: dict[str, Any], new: dict[str, Any], factor: float = 10.0) -> dict:
    """The structured difference between two results.json documents."""
    if factor <= 1:
        raise ValueError(f"factor: invalid value {factor}; allowed: a number > 1")
    old_cases = {c["id"]: c for c in old["cases"]}
    new_cases = {c["id"]: c for c in new["cases"]}
    common = [i for i in new_cases if i in old_cases]
    old_checks, new_checks = _checks(old), _checks(new)
    changed = []
    for key in new_checks.keys() & old_checks.keys():
        before, after = _value(old_checks[key]["normwise"]), _value(new_checks[key]["normwise"])
        # errors below one eps are one rounding: count them as one eps
        eps_before = max(_value(old_checks[key]["normwise_eps"]), 1.0)
        eps_after = max(_value(new_checks[key]["normwise_eps"]), 1.0)
        ratio = eps_after / eps_before if math.isfinite(eps_before) else math.inf
        if ratio >= factor or ratio <= 1 / factor or (
                old_checks[key]["passed"] != new_checks[key]["passed"]):
            changed.append({"key": key, "before": before, "after": after, "ratio": ratio,
                            "passed_before": old_checks[key]["passed"],
                            "passed_after": new_checks[key]["passed"]})
    old_env = dict(_flatten("", old["audit"]))
    new_env = dict(_flatten("", new["audit"]))
    environment = [(k, old_env.get(k, "absent"), new_env.get(k, "absent"))
                   for k in sorted(old_env.keys() | new_env.keys())
                   if old_env.get(k) != new_env.get(k)]
    return {
        "started_passing": [i for i in common if new_cases[i]["passed"]
                            and not old_cases[i]["passed"]],
        "stopped_passing": [i for i in common if old_cases[i]["passed"]
                            and not new_cases[i]["passed"]],
        "only_old": [i for i in old_cases if i not in new_cases],
        "only_new": [i for i in new_cases if i not in old_cases],
        "changed_checks": sorted(changed, key=lambda c: -abs(math.log(max(c["ratio"], 1e-300)))),
        "environment": environment,
        "factor": factor,
    }


def render_diff(diff: dict, old_name: str, new_name: str) -> str:
    lines = [f"# gradparity diff: `{old_name}` -> `{new_name}`", ""]
    stopped, started = diff["stopped_passing"], diff["started_passing"]
    verdict = (f"**{len(stopped)} cases stopped passing**" if stopped
               else "**No case stopped passing**")
    lines += [f"{verdict}; {len(started)} started passing; {len(diff['changed_checks'])} checks "
              f"changed by more than x{diff['factor']:g}; {len(diff['environment'])} "
              "environment differences.", ""]
    for title, ids in (("Stopped passing", stopped), ("Started passing", started),
                       ("Only in the old run", diff["only_old"]),
                       ("Only in the new run", diff["only_new"])):
        if ids:
            lines += [f"## {title}", "", *(f"- {i}" for i in ids), ""]
    if diff["changed_checks"]:
        rows = [{"case": c["key"][0], "pair": f"{c['key'][1]} vs {c['key'][2]}",
                 "check": f"{c['key'][3]} {c['key'][4]}", "old": f"{c['before']:.2e}",
                 "new": f"{c['after']:.2e}", "ratio": f"x{c['ratio']:.3g}",
                 "pass": f"{c['passed_before']} -> {c['passed_after']}"}
                for c in diff["changed_checks"][:200]]
        lines += [f"## Checks that changed by more than x{diff['factor']:g}", "",
                  markdown_table(pd.DataFrame(rows)), ""]
    if diff["environment"]:
        rows = [{"setting": k, "old": a, "new": b} for k, a, b in diff["environment"]]
        lines += ["## Environment differences", "",
                  markdown_table(pd.DataFrame(rows)), ""]
    return "\n".join(lines).rstrip() + "\n"
