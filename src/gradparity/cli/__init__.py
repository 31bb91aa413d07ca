"""Stage 8, the command line: one module per command (``run``, ``diff``, ``list``,
``check``, ``mutants``), each with ``add_parser`` and ``run``; :mod:`~gradparity.cli.main`
is the ``gradparity`` entry point (also ``python -m gradparity``)."""
