"""Several hosts: starting JAX's distributed runtime and each host's rows.

A multi-host run starts the same command on every host. Each process calls
`initialize` (the command line does, through ``--coordinator`` or the
environment), after which ``jax.devices()`` lists the devices of all hosts
and a `hint_jax.parallel.make_data_mesh` spans them. Each process then keeps
only its own contiguous block of the training rows (`process_rows`) and
feeds its part of every global batch (`global_batch`); JAX assembles the
global array without copying rows between hosts.

Launch (two hosts, one process each; the first host's address is the
coordinator)::

  # on host 0
  hint-jax train ... --coordinator 10.0.0.1:1234 --num-processes 2 \\
      --process-id 0
  # on host 1
  hint-jax train ... --coordinator 10.0.0.1:1234 --num-processes 2 \\
      --process-id 1

The same three values can come from the environment
(``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), and
on clusters JAX detects itself (SLURM, Open MPI, Cloud TPU) ``jax.distributed
.initialize()`` needs no values at all: set ``HINT_JAX_DISTRIBUTED=1``.
"""

import os
from typing import Optional

import jax
import numpy as np
from jax.sharding import NamedSharding

from hint_jax.errors import ConfigError

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_COUNT = "JAX_NUM_PROCESSES"
ENV_ID = "JAX_PROCESS_ID"
ENV_AUTO = "HINT_JAX_DISTRIBUTED"


def _int(value, name):
  try:
    return int(value)
  except (TypeError, ValueError) as err:
    raise ConfigError(f"{name} must be a whole number, got {value!r}") from err


def wants_distributed(coordinator: Optional[str] = None,
                      environ: Optional[dict] = None) -> bool:
  """Whether a multi-host start was asked for, by argument or environment."""
  env = os.environ if environ is None else environ
  return bool(coordinator or env.get(ENV_ADDRESS) or env.get(ENV_AUTO))


def initialize(coordinator: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None,
               environ: Optional[dict] = None) -> bool:
  """Starts JAX's distributed runtime when a multi-host run is asked for.

  Arguments win over the environment variables ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; with only
  ``HINT_JAX_DISTRIBUTED=1`` set, JAX detects the cluster itself. Must run
  before any other JAX computation, once per process.

  Returns:
    True if the runtime was started, False if nothing asked for it (a
    single-host run; nothing is done).

  Raises:
    ConfigError: for an incomplete or impossible set of values.
  """
  env = os.environ if environ is None else environ
  if not wants_distributed(coordinator, env):
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise ConfigError("--num-processes/--process-id need --coordinator "
                        f"(or {ENV_ADDRESS})")
    return False
  address = coordinator or env.get(ENV_ADDRESS)
  count = num_processes if num_processes is not None else env.get(ENV_COUNT)
  pid = process_id if process_id is not None else env.get(ENV_ID)
  # Cross-process collectives on CPU devices need an implementation; GPUs
  # and TPUs use their own (this setting only concerns the CPU backend).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if address is None:  # cluster auto-detection (ENV_AUTO)
    if count is not None or pid is not None:
      raise ConfigError("a process count or id without a coordinator "
                        "address: give --coordinator HOST:PORT too")
    jax.distributed.initialize()
    return True
  if count is None or pid is None:
    raise ConfigError(f"a coordinator address ({address}) needs the number "
                      "of processes and this process's id too "
                      f"(--num-processes/--process-id or {ENV_COUNT}/"
                      f"{ENV_ID})")
  count, pid = _int(count, "the process count"), _int(pid, "the process id")
  if count < 1 or not 0 <= pid < count:
    raise ConfigError(f"process id {pid} is not in [0, {count})")
  if ":" not in address:
    raise ConfigError(f"the coordinator address must be HOST:PORT, got "
                      f"{address!r}")
  jax.distributed.initialize(coordinator_address=address,
                             num_processes=count, process_id=pid)
  return True


def process_rows(n: int, process_index: Optional[int] = None,
                 process_count: Optional[int] = None) -> slice:
  """The contiguous block of ``n`` rows this process keeps: process p of P
  gets rows ``[p n // P, (p + 1) n // P)`` (sizes differ by at most one)."""
  p = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= p < count:
    raise ConfigError(f"process index {p} is not in [0, {count})")
  return slice(p * n // count, (p + 1) * n // count)


def global_batch(local: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """One global array from every process's local rows, sharded by rows.

  Each process passes its own rows (the same number on every process); the
  global array has them stacked in process order. With one process this is
  a ``device_put``.
  """
  local = np.asarray(local)
  count = jax.process_count()
  global_shape = (local.shape[0] * count,) + local.shape[1:]
  return jax.make_array_from_process_local_data(sharding, local, global_shape)
