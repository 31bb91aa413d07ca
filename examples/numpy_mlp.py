"""A from-scratch NumPy MLP as course notes write it: relu hidden layers, a softmax
cross-entropy head, plain SGD. It says which cases it handles (``supports``), so
``gradparity check`` computes baselines for those alone.

    python examples/make_digits.py digits.npz        # 64 rows of 784 pixels, 10 classes
    gradparity check examples/numpy_mlp.py:gradients --layers 784,100,10 \\
        --activation relu --loss softmax_cross_entropy --data digits.npz
    gradparity check examples/numpy_mlp.py:gradients    # the built-in matrix: 2 cases
"""

import numpy as np


def supports(case):
    return (case.loss == "softmax_cross_entropy" and set(case.hidden_activation) == {"relu"}
            and case.output_activation == "identity" and case.optimizer == "sgd"
            and not case.hparams["momentum"] and not case.hparams["weight_decay"]
            and case.option("batches") == 1 and case.option("schedule") == "constant")


def gradients(params, x, y, case):
    layers = len(case.layer_sizes) - 1
    activations, pre = [x], []
    for layer in range(1, layers + 1):
        z = activations[-1] @ params[f"W{layer}"]
        if f"b{layer}" in params:
            z = z + params[f"b{layer}"]
        pre.append(z)
        activations.append(np.maximum(z, 0) if layer < layers else z)
    logits = activations[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    delta = np.exp(log_probs)
    delta[np.arange(len(y)), y] -= 1
    delta /= len(y)
    grads = {}
    for layer in range(layers, 0, -1):
        grads[f"W{layer}"] = activations[layer - 1].T @ delta
        if f"b{layer}" in params:
            grads[f"b{layer}"] = delta.sum(axis=0)
        if layer > 1:
            delta = (delta @ params[f"W{layer}"].T) * (pre[layer - 2] > 0)
    return loss, grads


def step(params, grads, state, case):
    lr = case.hparams["lr"]
    return {name: params[name] - lr * grads[name] for name in params}, state
