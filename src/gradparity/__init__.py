"""gradparity: textbook NumPy backprop checked against PyTorch autograd and JAX grad.

The names below are the stable public API; everything else is internal and may move.
The package is laid out as the pipeline runs, one folder per stage:

    reference/  the textbook (array API, NumPy)  spec/     cases, options, data, matrices
    adapters/   numpy, torch, jax; conventions   compare/  metrics, tolerances, oracles
    harness/    running and judging cases        check/    users' code, bugs, diagnosis
    report/     REPORT.md, results, plots        cli/      the gradparity command

Data flows one way: a stage imports only the stages before it (a test holds it so).
"""

from gradparity.check.assertions import BackpropMismatch, assert_backprop
from gradparity.check.verifier import CaseCheck, CheckReport, verify
from gradparity.compare.derivation import derive, floors
from gradparity.compare.metrics import Difference, ParityError, assert_parity
from gradparity.harness.runner import CaseOutcome, compare_pair, run_case
from gradparity.harness.workers import run_isolated
from gradparity.spec.case import Case
from gradparity.spec.case_files import ConfigError, load_cases
from gradparity.spec.data import Problem, make_problem, problem_from_arrays
from gradparity.spec.matrix import default_cases

__version__ = "0.1.0"

__all__ = [
    "BackpropMismatch",
    "Case",
    "CaseCheck",
    "CaseOutcome",
    "CheckReport",
    "ConfigError",
    "Difference",
    "ParityError",
    "Problem",
    "__version__",
    "assert_backprop",
    "assert_parity",
    "compare_pair",
    "default_cases",
    "derive",
    "floors",
    "load_cases",
    "make_problem",
    "problem_from_arrays",
    "run_case",
    "run_isolated",
    "verify",
]
