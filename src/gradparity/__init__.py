"""gradparity: textbook NumPy backprop checked against PyTorch autograd and JAX grad."""

from gradparity.case import Case
from gradparity.data import Problem, make_problem

__version__ = "0.1.0"

__all__ = ["Case", "Problem", "__version__", "make_problem"]
