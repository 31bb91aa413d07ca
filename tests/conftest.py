"""Shared fixtures: frameworks as parameters, results cached per session."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.adapters import RunResult, get_adapter
from gradparity.check.verifier import Verifier
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.matrix import check_cases

# Numeric precision: tests import the package's constants
# (gradparity.compare.tolerances), never redefine them.
# an overflow, x/0 or 0/0 in the reference is a test failure; underflow to 0 is expected
np.seterr(over="raise", divide="raise", invalid="raise")




@pytest.fixture(scope="session", autouse=True)
def _compile_cache_of_the_session(tmp_path_factory: pytest.TempPathFactory):
    """Runs of the CLI cache JAX's programs in a directory of this session, never in the
    user's ~/.cache."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("GRADPARITY_COMPILE_CACHE", str(tmp_path_factory.mktemp("jax-cache")))
    yield
    monkeypatch.undo()


# -- framework fixtures ---------------------------------------------------------

pytest_plugins = ["pytester"]

FRAMEWORKS_UNDER_TEST = ("torch", "jax")


def require(framework: str) -> None:
    """Skip, naming the reason, when a framework is not installed."""
    availability = get_adapter(framework).availability()
    if not availability.available:
        pytest.skip(f"{framework} adapter unavailable: {availability.reason}")


@pytest.fixture(params=FRAMEWORKS_UNDER_TEST, ids=lambda name: name)
def framework(request: pytest.FixtureRequest) -> str:
    require(request.param)
    return request.param


_RESULTS: dict[tuple[str, str], RunResult] = {}


def run_once(case: Case, framework: str) -> RunResult:
    """Run ``case`` on ``framework`` once per test session (results are immutable)."""
    key = (case.id, framework)
    if key not in _RESULTS:
        require(framework)
        reason = get_adapter(framework).unsupported_reason(case)
        if reason is not None:
            pytest.skip(f"not expressible in {framework}: {reason}")
        _RESULTS[key] = get_adapter(framework).run(case, make_problem(case))
    return _RESULTS[key]


@pytest.fixture(scope="session")
def verifier():
    """One Verifier for the session: framework runs and finite differences are cached per case."""
    require("torch")
    require("jax")
    return Verifier()


@pytest.fixture(scope="session")
def check_matrix():
    """The check matrix for the fast tests: every float64 case, and in float32 the XOR
    example and the architectures beyond the MLP (the slow session verifies the whole
    matrix over 20 seeds)."""
    return [case for case in check_cases()
            if case.dtype == "float64" or case.is_sequence or case.dataset == "xor"]
