"""Stage 7, the report: what a run found, for people and for programs.

* :mod:`~gradparity.report.document` and :mod:`~gradparity.report.sections`:
  ``REPORT.md``;
* :mod:`~gradparity.report.results`: ``results.json`` and ``checks.csv``;
* :mod:`~gradparity.report.plots`: the PNG plots;
* :mod:`~gradparity.report.diff`: two runs compared;
* :mod:`~gradparity.report.check_report`: the output of ``check`` and ``mutants``;
* :mod:`~gradparity.report.markdown`, :mod:`~gradparity.report.files`: tables and
  atomic writes; :mod:`~gradparity.report.outputs`: everything a run writes.
"""
