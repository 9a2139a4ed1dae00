"""Data parallelism over devices and hosts with ``jax.sharding``.

One mesh axis, ``"data"``, over the example axis (`make_data_mesh`):

- training: ``Trainer(..., mesh=mesh)`` splits every batch across the
  devices, parameters replicated; XLA reduces the gradients and the
  BatchNorm batch statistics across devices, so the result equals one
  device's up to float reassociation;
- influence: `hint_jax.parallel.influence` mirrors the one-device engine
  (validation gradient, Hessian products for CG, I_up, I_pert, features)
  with the rows split and the sums reduced with ``psum``;
- HINT: ``Hint(..., mesh=mesh)`` runs its features, s_test, scoring and
  perturbation passes through those functions;
- several hosts: `distributed.initialize`, then each process keeps
  `distributed.process_rows` of the training set.
"""

from hint_jax.parallel import distributed
from hint_jax.parallel import influence
from hint_jax.parallel.mesh import DATA
from hint_jax.parallel.mesh import make_data_mesh
from hint_jax.parallel.mesh import pad_rows
from hint_jax.parallel.mesh import put_global
from hint_jax.parallel.mesh import replicate
from hint_jax.parallel.mesh import replicated
from hint_jax.parallel.mesh import rows
from hint_jax.parallel.mesh import shard_rows
from hint_jax.parallel.mesh import use_cpu_devices

__all__ = ["DATA", "distributed", "influence", "make_data_mesh", "pad_rows",
           "put_global", "replicate", "replicated", "rows", "shard_rows", "use_cpu_devices"]
