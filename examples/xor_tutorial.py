"""A blog-post XOR network (2-10-1, sigmoid, mean squared error, lr 0.1), six ways.

``correct`` is right. Four others each carry one mistake that circulates in
tutorials, and ``all_three_mistakes`` carries the first three at once, the way the
original blog post does; ``gradparity check`` names each, alone or combined (README,
"Worked example"):

    gradparity check examples/xor_tutorial.py:correct
    gradparity check examples/xor_tutorial.py:output_delta_without_derivative
    gradparity check examples/xor_tutorial.py:hidden_delta_without_derivative
    gradparity check examples/xor_tutorial.py:mean_without_two_over_n
    gradparity check examples/xor_tutorial.py:reinitialised_every_call
    gradparity check examples/xor_tutorial.py:all_three_mistakes

Only the 2-hidden-unit-layer sigmoid/MSE shape is written here; every other
case raises NotImplementedError, which gradparity reports as "not handled".
"""

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(s):
    # derivative written in terms of the sigmoid's output s = sigmoid(x)
    return s * (1 - s)


def _require_tutorial_shape(case):
    if len(case.layer_sizes) != 3 or case.activations != ("sigmoid", "sigmoid") \
            or case.loss != "mse":
        raise NotImplementedError("only the 2-layer sigmoid network with MSE")


def _forward(params, x):
    hidden = sigmoid(x @ params["W1"] + params["b1"])
    output = sigmoid(hidden @ params["W2"] + params["b2"])
    return hidden, output


def _backward(params, x, y, *, output_derivative=True, hidden_derivative=True,
              two_over_n=True):
    hidden, output = _forward(params, x)
    loss = np.mean((output - y) ** 2)
    error = 2 * (output - y) / y.size if two_over_n else output - y
    d_output = error * sigmoid_derivative(output) if output_derivative else error
    d_hidden = d_output @ params["W2"].T
    if hidden_derivative:
        d_hidden = d_hidden * sigmoid_derivative(hidden)
    grads = {
        "W1": x.T @ d_hidden, "b1": d_hidden.sum(axis=0),
        "W2": hidden.T @ d_output, "b2": d_output.sum(axis=0),
    }
    return loss, grads


def correct(params, x, y, case):
    _require_tutorial_shape(case)
    return _backward(params, x, y)


def output_delta_without_derivative(params, x, y, case):
    """Mistake 1: d_output = error, the sigmoid derivative of the output forgotten."""
    _require_tutorial_shape(case)
    return _backward(params, x, y, output_derivative=False)


def hidden_delta_without_derivative(params, x, y, case):
    """Mistake 2: d_hidden = d_output @ W2.T, the hidden layer's own derivative forgotten."""
    _require_tutorial_shape(case)
    return _backward(params, x, y, hidden_derivative=False)


def mean_without_two_over_n(params, x, y, case):
    """Mistake 3: the loss is a mean, but its gradient is taken as (output - y)."""
    _require_tutorial_shape(case)
    return _backward(params, x, y, two_over_n=False)


def all_three_mistakes(params, x, y, case):
    """Mistakes 1, 2 and 3 together: no output derivative, no hidden derivative, no 2/n."""
    _require_tutorial_shape(case)
    return _backward(params, x, y, output_derivative=False, hidden_derivative=False,
                     two_over_n=False)


def reinitialised_every_call(params, x, y, case):
    """Mistake 4: the weights are (re)initialised inside the training function."""
    _require_tutorial_shape(case)
    rng = np.random.default_rng(42)
    params = {
        "W1": rng.uniform(-1, 1, (2, 10)), "b1": np.zeros(10),
        "W2": rng.uniform(-1, 1, (10, 1)), "b2": np.zeros(1),
    }
    return _backward(params, x, y)


def step(params, grads, state, case):
    """Plain SGD, the tutorial's update."""
    if case.optimizer != "sgd" or case.hparams["momentum"] or case.hparams["weight_decay"]:
        raise NotImplementedError("plain SGD only")
    lr = case.hparams["lr"]
    return {name: params[name] - lr * grads[name] for name in params}, state
