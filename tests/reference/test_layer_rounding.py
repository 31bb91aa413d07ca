"""Where the tolerance model's rounding reaches in a network of layers, and the options
that reach its activation layers (the catalogued conventions of
:mod:`gradparity.harness.explain`)."""

from __future__ import annotations

import numpy as np
import pytest

from gradparity.reference.activations import ACTIVATIONS
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem
from gradparity.spec.evaluation import evaluate
from tests.reference.test_network import _counting as _recording

# _recording(marked): an identity perturbation that records the shape of every value it
# is given, marked as rounding or not (the kink watch's kind, which counts its calls)

TRANSFORMER = Case(architecture="transformer", loss="softmax_cross_entropy")


@pytest.mark.parametrize("marked", [False, True], ids=["plain", "rounding"])
def test_rounding_reaches_inside_attention_and_residual_blocks(marked: bool) -> None:
    """The transformer: embedding, two residual blocks (layer norm + attention; layer
    norm + dense, gelu, dense), layer norm, dense. Any perturbation moves the outputs of
    the five top-level layers. Rounding also moves every layer's output inside the
    blocks, and inside attention its q, k and v, scores, probabilities and weighted
    values, each once; the numbers are those of the plain pass under an identity."""
    problem = make_problem(TRANSFORMER)
    batch = problem.batch(0)
    perturb, shapes = _recording(marked)
    moved = evaluate(TRANSFORMER, problem.params, batch, perturb=perturb)
    n, t = np.shape(batch.x)
    tokens, scores, hidden = (n, t, 8), (n, 2, t, t), (n, t, 16)
    if marked:
        attention = [tokens] * 3 + [scores, scores, (n, 2, t, 4), tokens]
        block1 = [tokens, *attention, tokens]  # layer norm, attention, x + f(x)
        block2 = [tokens, hidden, hidden, tokens, tokens]
        expected = [tokens, *block1, *block2, tokens, (n, t, 7)]
    else:
        expected = [tokens] * 4 + [(n, t, 7)]
    assert shapes == expected
    plain = evaluate(TRANSFORMER, problem.params, batch)
    for name, value in plain.gradients.items():
        np.testing.assert_array_equal(moved.gradients[name], value)


def test_an_activation_layers_backward_reads_its_rounded_output() -> None:
    """tanh's derivative is 1 - a^2 from the cached a: the probe's rounding of a must be
    the a that the backward reads (it was rounded after the layer had cached it), and the
    a that the next layer receives."""
    case = Case(layers=[{"type": "dense", "features": 3}, {"type": "tanh"}],
                input_shape=(2,), loss="mse", dtype="float64")
    problem = make_problem(case)

    def doubled_output(values):
        return values * 2.0 if values.shape[-1] == 3 else values

    doubled_output.rounds_intermediates = True
    network = case.network()
    x = np.asarray(problem.batch(0).x)
    run = network.stack.forward(problem.params, x, perturb=doubled_output)[1]
    z, a = run.caches[1][:2]
    np.testing.assert_array_equal(a, run.outputs["tanh1"])
    np.testing.assert_array_equal(a, 2.0 * np.tanh(z))
    dy = np.ones_like(a)
    dz, _ = network.stack.layers[1].backward({}, run.caches[1], dy)
    np.testing.assert_array_equal(dz, 1.0 - a * a)


def test_the_options_reach_an_activation_layer_inside_a_residual_block() -> None:
    """``gelu_cdf_form`` set as torch sets it reaches a GELU layer in a block: the pass
    then computes Phi as (1 + erf(z / sqrt 2)) / 2, which is 0 below about -8.4 in
    float64, where the exact form is not."""
    case = Case(layers=[{"type": "dense", "features": 4},
                        {"type": "residual", "layers": [{"type": "dense", "features": 4},
                                                        {"type": "gelu"}]}],
                input_shape=(2,), loss="mse", dtype="float64")
    problem = make_problem(case)
    params = {**problem.params, "res1.dense1.b": np.full(4, -30.0)}  # z near -30
    x = np.asarray(problem.batch(0).x)
    stack = case.network().stack

    def inner(options):
        block = stack.forward(params, x, options=options)[1].caches[1][1]
        return block.caches[1][0], block.outputs["gelu1"]  # (z, gelu(z)) in the block

    z, exact = inner({})
    assert np.all(z < -25)
    np.testing.assert_array_equal(exact, ACTIVATIONS["gelu"].forward(z))
    assert np.all(exact < 0)  # the tail: tiny, not zero
    z, torchs = inner({"gelu_cdf_form": "one_plus_erf"})
    np.testing.assert_array_equal(torchs, np.zeros_like(z))  # torch's form: 0 there
    assert case.uses_activation("gelu") and not case.uses_activation("tanh")
