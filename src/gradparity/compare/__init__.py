"""Stage 4, the comparison: how far two results are apart, and how far they may be.

* :mod:`~gradparity.compare.metrics`: the normwise relative difference of two arrays,
  the :class:`~gradparity.compare.metrics.Difference` row, assertions;
* :mod:`~gradparity.compare.batched`: the same rows, many arrays at once;
* :mod:`~gradparity.compare.pairwise`: every check of one pair of implementations,
  against a tolerance model it is given;
* :mod:`~gradparity.compare.tolerances`: the tolerance model's formulas and every
  tolerance constant of the project;
* :mod:`~gradparity.compare.derivation`: the measurements that evaluate the model on a
  case's own data;
* :mod:`~gradparity.compare.finite_differences`: the framework-free gradient oracle.
"""
