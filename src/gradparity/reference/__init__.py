"""Stage 1, the reference: the NumPy textbook, forward, backward and updates written out.

Pure NumPy; nothing here imports a deep-learning framework.
"""

from gradparity.reference.activations import ACTIVATIONS, Activation
from gradparity.reference.losses import LOSSES, Loss
from gradparity.reference.network import (
    BACKPROP,
    Backprop,
    ForwardCache,
    Gradients,
    backward,
    backward_deltas,
    forward,
    loss_and_gradients,
    parameter_names,
)
from gradparity.reference.optimizers import OPTIMIZERS, Optimizer

__all__ = [
    "ACTIVATIONS",
    "BACKPROP",
    "LOSSES",
    "OPTIMIZERS",
    "Activation",
    "Backprop",
    "ForwardCache",
    "Gradients",
    "Loss",
    "Optimizer",
    "backward",
    "backward_deltas",
    "forward",
    "loss_and_gradients",
    "parameter_names",
]
