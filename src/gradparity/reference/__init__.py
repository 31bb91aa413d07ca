"""The NumPy textbook: forward, backward and updates written out by hand.

Pure NumPy; nothing here imports a deep-learning framework.
"""

from gradparity.reference.activations import ACTIVATIONS, Activation
from gradparity.reference.losses import LOSSES, Loss
from gradparity.reference.network import (
    ForwardCache,
    backward,
    backward_deltas,
    forward,
    loss_and_gradients,
    parameter_names,
)
from gradparity.reference.optimizers import OPTIMIZERS, Optimizer

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "OPTIMIZERS",
    "Activation",
    "ForwardCache",
    "Loss",
    "Optimizer",
    "backward",
    "backward_deltas",
    "forward",
    "loss_and_gradients",
    "parameter_names",
]
