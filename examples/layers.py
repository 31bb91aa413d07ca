"""Layer objects as from-scratch libraries write them, checked one layer at a time.

    gradparity check examples/layers.py:Dense --layer dense
    gradparity check examples/layers.py:DenseSGD --layer dense          # a stale-weight bug
    gradparity check examples/layers.py:Tanh --layer tanh
    gradparity check examples/layers.py:SoftmaxCrossEntropy --layer softmax_cross_entropy

The contract: ``Layer(params, settings)`` builds the layer from the parameters it is
given; ``forward(x)`` returns y; ``backward(dout)`` returns dx, and the parameter
gradients are the attributes ``dW`` and ``db``. A loss is ``Loss(settings)`` with
``forward(y_hat, y)`` and ``backward()``.
"""

import numpy as np


class Dense:
    """y = x W + b, the textbook way."""

    def __init__(self, params, settings):
        self.W, self.b = params["W"], params["b"]

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


class DenseSGD(Dense):
    """The weights are updated inside backward, as many from-scratch libraries do, but
    before the input gradient is computed: dx uses the new weights (a stale-weight bug
    that a gradients(params, ...) wrapper cannot see)."""

    lr = 0.1

    def backward(self, dout):
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        self.W = self.W - self.lr * self.dW
        self.b = self.b - self.lr * self.db
        return dout @ self.W.T  # should use the weights of the forward pass


class Tanh:
    def __init__(self, params, settings):
        pass

    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out**2)


class SoftmaxCrossEntropy:
    """Mean softmax cross-entropy over the batch, with integer labels."""

    def __init__(self, settings):
        pass

    def forward(self, logits, labels):
        shifted = logits - logits.max(axis=1, keepdims=True)
        self.probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        self.labels = labels
        return -np.mean(np.log(self.probs[np.arange(len(labels)), labels]))

    def backward(self):
        grad = self.probs.copy()
        grad[np.arange(len(self.labels)), self.labels] -= 1
        return grad / len(self.labels)
