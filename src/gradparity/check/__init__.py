"""Stage 6, checking users' code: their backprop against the reference, both frameworks
and finite differences, and what a wrong result looks like.

* :mod:`~gradparity.check.plugin`: loading and calling an implementation through the
  contract ``gradients(params, x, y, case)`` / ``step(params, grads, state, case)``;
* :mod:`~gradparity.check.verifier`: :func:`verify`, the per-case verdicts;
* :mod:`~gradparity.check.bugs`: the one catalogue of known bug shapes, which
  :mod:`~gradparity.check.mutants` (realistic buggy implementations) and
  :mod:`~gradparity.check.diagnosis` (what a wrong gradient looks like) both read;
* :mod:`~gradparity.check.textbook`: the reference in plug-in form;
* :mod:`~gradparity.check.shrink`: the smallest failing case, as a NumPy-only
  reproduction;
* :mod:`~gradparity.check.pytest_plugin`: the ``gradparity_check`` fixture.
"""

from gradparity.check.verifier import CaseCheck, CheckReport, Verifier, verify

__all__ = ["CaseCheck", "CheckReport", "Verifier", "verify"]
