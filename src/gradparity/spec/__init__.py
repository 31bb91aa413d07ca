"""Stage 2, the case spec: what one comparison is, and the data it runs on.

* :mod:`~gradparity.spec.case`: :class:`~gradparity.spec.case.Case`, validated;
* :mod:`~gradparity.spec.options`: the registry of case options (activation and loss
  parameters, dropout, batch sequences, schedules);
* :mod:`~gradparity.spec.datasets` and :mod:`~gradparity.spec.data`: deterministic
  data, initial weights and dropout masks (or the user's own, validated);
* :mod:`~gradparity.spec.matrix`: the built-in matrices;
* :mod:`~gradparity.spec.case_files`: matrices written in TOML.
"""
