"""One forward and backward pass of a case's reference network, whatever its kind.

A dense MLP (``layer_sizes``) runs through :mod:`gradparity.reference.network`, a
sequence of layers (``layers``) through :mod:`gradparity.reference.sequence`; every
oracle (the tolerance model's probes, finite differences, the numpy adapter, the
checks of user data) asks this module, so each treats both kinds alike.

Backward signals are keyed ``z1 .. zL`` (dL/dz_l) for an MLP and by layer name
(``conv1``, ``relu2``: dL/d(the layer's output)) for a sequence network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.reference import network
from gradparity.reference.sequence import SequenceCache
from gradparity.spec.case import Case
from gradparity.spec.data import Batch

Perturb = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Pass:
    """One evaluation: the loss, dL/dparams, the backward signals, the running statistics
    after the pass (a sequence network's BatchNorm; empty otherwise) and the network's
    output (the loss's input); ``forward``: the forward cache, where asked for (another
    backward pass can then start from it without a second forward pass)."""

    loss: np.ndarray
    gradients: dict[str, np.ndarray]
    deltas: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    output: np.ndarray
    forward: network.ForwardCache | SequenceCache | None = None


def evaluate(case: Case, params: Mapping[str, np.ndarray], batch: Batch,
             state: Mapping[str, np.ndarray] | None = None, perturb: Perturb | None = None,
             options: Mapping[str, Any] | None = None, backward: bool = True,
             overrides: Mapping[str, Any] | None = None, keep_forward: bool = False) -> Pass:
    """The reference's forward pass (and, unless ``backward=False``, its backward pass) of
    ``case`` at ``params`` on ``batch``. ``perturb`` is applied to every intermediate
    (every z_l and a_l of an MLP, every layer output of a sequence); ``options``
    replaces the case's options (conventions set to another framework's);
    ``overrides`` replaces layer types' backward rules (the bug catalogue);
    ``keep_forward``: the pass keeps its forward cache (``Pass.forward``)."""
    options = dict(case.all_options if options is None else options)
    x, y, masks = batch
    if case.is_sequence:
        net = case.network()
        cache = net.forward(params, x, y, options, state, perturb)
        held = cache if keep_forward else None
        if not backward:
            return Pass(cache.loss, {}, {}, cache.state, cache.output, held)
        result = net.backward(params, cache, overrides)
        return Pass(cache.loss, result.params, result.deltas, cache.state, cache.output,
                    held)
    cache = network.forward(params, x, y, case.activations, case.loss, options, masks,
                            perturb=perturb)
    kept = cache if keep_forward else None
    if not backward:
        return Pass(cache.loss, {}, {}, {}, cache.output, kept)
    result = network.BACKPROP.backward(cache)
    deltas = {f"z{layer}": d for layer, d in enumerate(result.deltas, start=1)}
    return Pass(cache.loss, dict(result.params), deltas, {}, cache.output, kept)


def loss_only(case: Case, params: Mapping[str, np.ndarray], batch: Batch,
              state: Mapping[str, np.ndarray] | None = None) -> float:
    """The loss alone (finite differences evaluate it many times)."""
    return float(evaluate(case, params, batch, state, backward=False).loss)


def layer_index(case: Case) -> dict[str, int]:
    """Every parameter, backward signal and running statistic of a case, by the index
    (1-based, in forward order) of the top-level layer it belongs to: ``W2``/``z2`` ->
    2 for an MLP; ``conv1.W``, ``conv1``, ``res1.ln1.gamma``, ``bn1.running_mean`` -> the
    index of ``conv1``, ``res1``, ``bn1`` in a sequence network."""
    if not case.is_sequence:
        return {f"{kind}{layer}": layer for layer in range(1, case.num_layers + 1)
                for kind in "Wbz"}
    stack = case.network().stack
    found = {}
    for index, name in enumerate(stack.names, start=1):
        found[name] = index
    for name in (*stack.parameter_shapes(), *stack.init_state()):
        found[name] = found[name.split(".")[0]]
    return found
