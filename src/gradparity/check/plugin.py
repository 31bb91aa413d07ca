"""Loading and calling a user's implementation through the plug-in contract.

The contract::

    def gradients(params, x, y, case) -> (loss, grads)
    def step(params, grads, state, case) -> (new_params, new_state)    # optional

``params`` maps ``W1, b1, ..., WL, bL`` to NumPy arrays, ``W`` shaped
``(fan_in, fan_out)``; ``state`` is ``None`` on the first call of ``step``. An
implementation that cannot handle a case raises ``NotImplementedError``.

Two kinds of error are kept apart: :class:`PluginError` says, in one line,
that the plug-in breaks the contract (cannot be loaded, wrong signature,
wrong return value, wrong keys); :class:`UserCodeError` carries the traceback
of an exception raised inside the user's code. Neither is a harness crash.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class PluginError(Exception):
    """The plug-in breaks the contract; the message is one line."""


class UserCodeError(Exception):
    """An exception was raised inside the user's code; ``details`` is its traceback."""

    def __init__(self, where: str, error: BaseException) -> None:
        self.details = "".join(traceback.format_exception(error)).rstrip()
        super().__init__(f"{where} raised {type(error).__name__}: {error}")


class CaseNotHandled(Exception):
    """The implementation raised NotImplementedError for this case."""


@dataclass(frozen=True)
class Plugin:
    """A loaded implementation: its ``gradients`` and, optionally, its ``step`` and
    ``supports(case) -> bool`` (asked before anything is computed for a case)."""

    name: str
    gradients: Callable[..., Any]
    step: Callable[..., Any] | None = None
    step_spec: str | None = None  # how to load ``step`` again (for reproductions)
    supports: Callable[[Any], bool] | None = None


def _load_module(target: str) -> Any:
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise PluginError(f"plug-in file not found: {target}")
        module_name = f"gradparity_plugin_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"cannot import {target} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # so its sibling modules import
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise UserCodeError(f"importing {target}", error) from error
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as error:
        if error.name and target.startswith(error.name):
            as_file = Path(*target.split(".")).with_suffix(".py")
            hint = (f" (the file {as_file} is here: give it as a file, "
                    f"{as_file.as_posix()}:<function>)" if as_file.is_file() else "")
            raise PluginError(f"module not found: {target}{hint}") from None
        raise UserCodeError(f"importing {target}", error) from error
    except Exception as error:
        raise UserCodeError(f"importing {target}", error) from error


def _check_signature(function: Any, spec: str, arguments: tuple[str, ...]) -> None:
    if not callable(function):
        raise PluginError(f"{spec} is not callable (it is a {type(function).__name__})")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # builtins and C extensions: nothing to inspect
    try:
        signature.bind(*arguments)
    except TypeError:
        raise PluginError(
            f"{spec} must accept ({', '.join(arguments)}); its signature is {signature}"
        ) from None


def _resolve(spec: str, default_attribute: str) -> tuple[Any, Any]:
    target, _, attribute = spec.rpartition(":") if ":" in spec else (spec, "", "")
    module = _load_module(target)
    attribute = attribute or default_attribute
    if not hasattr(module, attribute):
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attribute, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PluginError(f"{target} has no attribute {attribute!r}{hint}")
    return module, getattr(module, attribute)


def resolve_target(spec: str) -> Any:
    """What ``path/to/file.py:Name`` or ``package.module:Name`` names (a class or a
    factory, for the layer-object contract)."""
    if ":" not in spec:
        raise PluginError(f"{spec}: name the layer too, e.g. {spec}:Dense")
    _, target = _resolve(spec, "")
    if not callable(target):
        raise PluginError(f"{spec} is not callable (it is a {type(target).__name__})")
    return target


def load_plugin(spec: str, step: str | None = None, *, find_step: bool = True) -> Plugin:
    """Load ``path/to/file.py:gradients`` or ``package.module:gradients``.

    The target may also be an object with ``gradients`` (and ``step``) methods.
    ``step`` names the update function the same way; without it, a callable
    called ``step`` beside ``gradients`` (same module or object) is used unless
    ``find_step`` is False.
    """
    module, gradients = _resolve(spec, "gradients")
    owner = module
    if not inspect.isroutine(gradients) and hasattr(gradients, "gradients"):
        # an object that implements the contract as methods
        owner, gradients = gradients, gradients.gradients
    _check_signature(gradients, spec, ("params", "x", "y", "case"))
    step_function, step_spec = None, step
    if step is not None:
        _, step_function = _resolve(step, "step")
        if not inspect.isroutine(step_function) and hasattr(step_function, "step"):
            step_function = step_function.step
    elif find_step and callable(getattr(owner, "step", None)):
        step_function = owner.step
        step_spec = spec if owner is not module else f"{spec.rpartition(':')[0] or spec}:step"
    if step_function is not None:
        _check_signature(step_function, step or "step", ("params", "grads", "state", "case"))
    supports = getattr(owner, "supports", None)
    if supports is not None:
        _check_signature(supports, "supports", ("case",))
    return Plugin(name=spec, gradients=gradients, step=step_function, step_spec=step_spec,
                  supports=supports)


def _as_array(value: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception:  # any conversion failure is a contract violation
        raise PluginError(f"{what} is not an array ({type(value).__name__})") from None
    if array.dtype.kind not in "fiu":
        raise PluginError(f"{what} is not numeric (dtype {array.dtype})")
    return array


def _check_keys(given: Any, expected: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    if not isinstance(given, Mapping):
        raise PluginError(f"{what} must be a dict keyed like params, got {type(given).__name__}")
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing or extra:
        raise PluginError(
            f"{what} keys do not match params: missing {missing}, unexpected {extra}"
        )
    return {name: _as_array(given[name], f"{what}[{name!r}]") for name in expected}


def _copies(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # fresh writable copies: the user's code may modify its arguments in place
    return {name: np.array(value, copy=True) for name, value in arrays.items()}


def _call_user(where: str, function: Callable[..., Any], *arguments: Any) -> Any:
    try:
        # floating-point warnings in user code are not errors here: the values
        # that come back are checked and diagnosed instead
        with np.errstate(all="ignore"):
            return function(*arguments)
    except NotImplementedError as error:
        raise CaseNotHandled(str(error) or "NotImplementedError") from None
    except Exception as error:
        raise UserCodeError(where, error) from error


def call_supports(plugin: Plugin, case: Any) -> bool:
    """The plug-in's answer to ``supports(case)`` (True when it has none)."""
    if plugin.supports is None:
        return True
    return bool(_call_user("supports", plugin.supports, case))


def call_gradients(
    plugin: Plugin, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, case: Any
) -> tuple[float, dict[str, np.ndarray]]:
    """Call the user's ``gradients`` and check the shape of what comes back (not the values)."""
    returned = _call_user("gradients", plugin.gradients, _copies(params), np.array(x),
                          np.array(y), case)
    if not isinstance(returned, tuple | list) or len(returned) != 2:
        raise PluginError(
            f"gradients must return (loss, grads), got {type(returned).__name__}"
            + (f" of length {len(returned)}" if isinstance(returned, tuple | list) else "")
        )
    loss, grads = returned
    loss_array = _as_array(loss, "the returned loss")
    if loss_array.size != 1:
        raise PluginError(f"the returned loss must be a scalar, got shape {loss_array.shape}")
    return float(loss_array.reshape(())), _check_keys(grads, params, "grads")


def call_step(
    plugin: Plugin, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
    state: Any, case: Any,
) -> tuple[dict[str, np.ndarray], Any]:
    """Call the user's ``step`` and check what comes back."""
    if plugin.step is None:
        raise PluginError("this plug-in has no step function")
    returned = _call_user("step", plugin.step, _copies(params), _copies(grads), state, case)
    if not isinstance(returned, tuple | list) or len(returned) != 2:
        raise PluginError(
            f"step must return (new_params, new_state), got {type(returned).__name__}"
        )
    new_params, new_state = returned
    return _check_keys(new_params, params, "new_params"), new_state
