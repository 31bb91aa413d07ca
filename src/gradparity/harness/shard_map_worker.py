"""One data-parallel JAX run: ``python -m gradparity.harness.shard_map_worker CASE_JSON OUT``.

Needs 2 host CPU devices, which ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
gives only when set before JAX is imported: the parent
(:func:`gradparity.harness.data_parallel.jax_two_device_gradients`) sets it in this
process's environment. Under ``jax.shard_map`` each device computes its half-batch
loss with the JAX adapter's own loss, ``jax.lax.pmean`` averages the losses, and
``jax.grad`` through that all-reduces the gradients; they are written to the ``.npz``
file OUT.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from gradparity.adapters import jax_adapter
from gradparity.spec.case import Case
from gradparity.spec.data import make_problem


def main(case_json: str, out_file: str) -> None:
    case = Case.from_dict(json.loads(case_json))
    jax.config.update("jax_enable_x64", case.dtype == "float64")
    devices = jax.devices()
    if len(devices) != 2:
        raise RuntimeError(f"expected 2 host devices (XLA_FLAGS), got {devices}")
    problem = make_problem(case)
    loss_fn = jax_adapter.make_loss(case.activations, case.loss, case.all_options)

    def local_loss(params, x, y):
        offsets = [jnp.zeros((x.shape[0], w), dtype=x.dtype) for w in case.layer_sizes[1:]]
        # each device's half-batch loss, averaged over the devices; differentiating
        # through it all-reduces the gradient (the replicated parameters' cotangents sum)
        return jax.lax.pmean(loss_fn(params, offsets, x, y, []), "data")

    mesh = Mesh(np.array(devices), ("data",))
    sharded_loss = jax.shard_map(local_loss, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                                 out_specs=P())
    params = {n: jnp.asarray(v) for n, v in problem.params.items()}
    grads = jax.jit(jax.grad(sharded_loss))(params, jnp.asarray(problem.x),
                                            jnp.asarray(problem.y))
    np.savez(out_file, **{n: np.asarray(g) for n, g in grads.items()})


if __name__ == "__main__":
    main(*sys.argv[1:3])
