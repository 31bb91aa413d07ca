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


def test_torch_computes_with_one_thread_inside_and_its_own_count_after() -> None:
    require("torch")
    import torch

    from gradparity.adapters import one_torch_thread

    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with one_torch_thread(("numpy", "torch")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3
        with one_torch_thread(("numpy", "jax")):  # torch is not run: left alone
            assert torch.get_num_threads() == 3
        with pytest.raises(KeyError), one_torch_thread():
            raise KeyError("a case that fails still restores the count")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
