"""Every adapter covers every registered activation, loss and optimizer."""

from __future__ import annotations

import importlib

import pytest

from gradparity.adapters import FRAMEWORKS
from gradparity.reference import ACTIVATIONS, LOSSES, OPTIMIZERS
from tests.conftest import require


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_adapter_tables_match_the_registries(name: str) -> None:
    require(name)
    module = importlib.import_module(FRAMEWORKS[name])
    assert set(module.ACTIVATIONS) == set(ACTIVATIONS)
    # a loss the framework cannot express is listed with the reason instead
    missing = getattr(module, "NOT_EXPRESSIBLE_LOSSES", {})
    assert set(module.LOSSES) | set(missing) == set(LOSSES)
    assert not set(module.LOSSES) & set(missing)
    assert set(module.OPTIMIZERS) == set(OPTIMIZERS)


def test_unknown_framework_names_the_allowed_ones() -> None:
    from gradparity.adapters import get_adapter

    with pytest.raises(ValueError, match=r"framework: invalid value 'mxnet'; allowed: numpy, "):
        get_adapter("mxnet")


def test_missing_framework_is_reported_unavailable(monkeypatch) -> None:
    from gradparity import adapters

    monkeypatch.setitem(adapters.FRAMEWORKS, "ghost", "gradparity.adapters.no_such_module")
    adapter = adapters.get_adapter.__wrapped__("ghost")
    availability = adapter.availability()
    assert not availability.available
    assert "ghost is not installed" in availability.reason


def test_an_unavailable_framework_is_skipped_with_its_reason(monkeypatch) -> None:
    from gradparity.adapters import UnavailableAdapter, get_adapter
    from gradparity.harness import runner
    from gradparity.spec.case import Case

    def fake_get_adapter(name: str, device: str = "cpu"):
        if name == "torch":
            return UnavailableAdapter("torch", "torch is not installed (test)")
        return get_adapter(name, device)

    monkeypatch.setattr(runner, "get_adapter", fake_get_adapter)
    outcome = runner.run_case(Case((3, 4, 2)), ["numpy", "torch"])
    assert outcome.skipped == {"torch": "torch is not installed (test)"}
    assert set(outcome.results) == {"numpy"}
    assert outcome.differences == ()
