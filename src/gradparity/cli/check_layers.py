"""``gradparity check TARGET --layer TYPE``: a layer object checked one layer at a time
(the contract: :mod:`gradparity.check.layer_objects`)."""

from __future__ import annotations

import argparse
import sys

from gradparity.adapters import FRAMEWORKS
from gradparity.check.layer_objects import (
    DEFAULT_INPUT_SHAPES,
    DEFAULT_SETTINGS,
    LayerCheck,
    check_layer_object,
    check_loss_object,
    layer_names,
)
from gradparity.check.plugin import PluginError, UserCodeError, resolve_target
from gradparity.cli.check_cases import parse_pairs
from gradparity.cli.common import usage_error
from gradparity.harness.runner import validate_frameworks
from gradparity.reference import LOSSES
from gradparity.reference.layers import build
from gradparity.spec.case import DTYPES


def add_layer_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("layer objects (--layer)")
    group.add_argument("--layer", metavar="TYPE", help="check a layer object of this type: "
                       f"{', '.join(layer_names())}")
    group.add_argument("--set", action="append", metavar="NAME=VALUE",
                       help="a layer setting, e.g. features=10 (repeatable)")
    group.add_argument("--input-shape", help="the per-example input, e.g. 784 or 3,8,8")


def _shape(text: str | None, kind: str) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_INPUT_SHAPES.get(kind, (5,))
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--input-shape: invalid value {text!r}; allowed: comma-separated "
                         "integers, e.g. 3,8,8") from None


def _details(check: LayerCheck) -> list[str]:
    lines = [f"{check.label}: {check.status}"]
    lines += [f"  {check.message}"] if check.message else []
    lines += [f"  diagnosis: {finding}" for finding in check.findings]
    lines += [f"  {d.message()}" for d in check.differences if not d.passed][:8]
    return lines


def run_layers(args: argparse.Namespace) -> int:
    kind = args.layer
    try:
        if kind not in layer_names():
            raise ValueError(f"--layer: invalid value {kind!r}; allowed: "
                             f"{', '.join(layer_names())}")
        frameworks = validate_frameworks([f for f in args.frameworks.split(",") if f])
        settings = {**DEFAULT_SETTINGS.get(kind, {}), **parse_pairs(args.set, "--set")}
        if kind not in LOSSES:
            build({"type": kind, **settings})  # validates the settings by name
        shape = _shape(args.input_shape, kind)
        dtypes = [args.dtype] if args.dtype else list(DTYPES)
        if args.dtype and args.dtype not in DTYPES:
            raise ValueError(f"--dtype: invalid value {args.dtype!r}; allowed: "
                             f"{', '.join(DTYPES)}")
        target = resolve_target(args.plugin)
    except (ValueError, PluginError) as error:
        return usage_error("check", str(error))
    except UserCodeError as error:
        print(f"gradparity check: {error}\n{error.details}", file=sys.stderr)
        return 2
    checks = []
    for dtype in dtypes:
        for seed in range(max(args.seeds, 1)):
            if kind in LOSSES:
                check = check_loss_object(target, kind, settings, dtype, seed,
                                          frameworks=frameworks or tuple(FRAMEWORKS))
            else:
                check = check_layer_object(target, {"type": kind, **settings}, shape, dtype,
                                           seed, frameworks=frameworks or tuple(FRAMEWORKS))
            checks.append(check)
            if not args.quiet:
                print("\n".join(_details(check)) if check.status != "pass"
                      else f"  pass           {check.label}", flush=True)
    failed = [c for c in checks if c.status != "pass"]
    handled = [c for c in checks if c.status != "not handled"]
    if not handled:
        print(f"FAIL: the layer object handled none of the {len(checks)} checks")
        return 1
    if failed:
        print(f"FAIL: {len(failed)} of {len(checks)} layer checks disagree")
        return 1
    print(f"PASS: all {len(checks)} layer checks agree ({kind}: output, input gradient and "
          "every parameter gradient against numpy, torch, jax and finite differences)")
    return 0
