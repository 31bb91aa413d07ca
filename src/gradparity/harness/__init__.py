"""Stage 5, the harness: running cases on every framework and judging them.

* :mod:`~gradparity.harness.runner`: one case on every framework, every pair and oracle
  compared against the tolerance model derived for it, rounding-or-bug, localisation,
  trajectories, seed sweeps;
* :mod:`~gradparity.harness.workers`: cases over worker processes, merged in order;
* :mod:`~gradparity.harness.data_parallel`: DDP and ``shard_map`` gradients against the
  reference (their workers: :mod:`~gradparity.harness.ddp_worker`,
  :mod:`~gradparity.harness.shard_map_worker`);
* :mod:`~gradparity.harness.porting`: library-defaults mode;
* :mod:`~gradparity.harness.audit`: versions and numeric settings of a run;
* :mod:`~gradparity.harness.bench`: what verification costs (``nox -s bench``).
"""
