"""A one-axis device mesh over the example axis, and placing rows on it.

Every sharded computation in hint_jax uses the same layout: a mesh with one
axis, ``"data"``, over the devices taking part; arrays with an example axis
are split along it in contiguous blocks (``P("data")``, device d holding
rows ``[d n/D, (d+1) n/D)``), parameters and other small arrays are
replicated (``P()``). The mesh's axis is of type ``Auto``, so jitted code
written for one device (convolutions over a batch, gathers) is partitioned
by XLA's sharding propagation; the reductions over examples that matter for
exactness are written explicitly with ``jax.shard_map`` and ``psum``
(``hint_jax.parallel.influence``).

On a CPU, more devices than cores can be forced for testing: set
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (or call
``use_cpu_devices(8)``) before JAX starts its backend.
"""

import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from hint_jax.errors import ConfigError

DATA = "data"

_FORCE_HINT = ("on a CPU, start Python with XLA_FLAGS=--xla_force_host_"
               "platform_device_count=N (or call hint_jax.parallel."
               "use_cpu_devices(N) before any JAX computation) to simulate N "
               "devices")


def use_cpu_devices(count: int) -> None:
  """Asks JAX's CPU backend for ``count`` devices (simulated on the host's
  cores, for testing the sharded paths). Must run before the backend starts,
  i.e. before the first JAX computation or ``jax.devices()`` call.

  Raises:
    ConfigError: if the backend has already started with fewer devices.
  """
  if count < 1:
    raise ConfigError(f"device count must be >= 1, got {count}")
  try:
    jax.config.update("jax_num_cpu_devices", int(count))
  except RuntimeError as err:  # the backend is already initialised
    have = len(jax.devices("cpu"))
    if have < count:
      raise ConfigError(f"JAX's CPU backend already started with {have} "
                        f"device(s); {_FORCE_HINT}") from err


def make_data_mesh(num_devices: Optional[int] = None,
                   devices: Optional[Sequence[Any]] = None) -> Mesh:
  """Returns a mesh with the one axis ``"data"`` over ``num_devices``
  devices (the first of ``devices``, default ``jax.devices()``; all of them
  when ``num_devices`` is None). Across hosts, ``jax.devices()`` lists every
  process's devices, so the mesh spans them all.

  Raises:
    ConfigError: if fewer devices exist than asked for.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices) if num_devices is None else int(num_devices)
  if n < 1:
    raise ConfigError(f"a mesh needs at least one device, got {n}")
  if n > len(devices):
    raise ConfigError(f"asked for {n} devices but only {len(devices)} "
                      f"{jax.default_backend()} device(s) exist; "
                      f"{_FORCE_HINT}")
  return jax.make_mesh((n,), (DATA,), axis_types=(AxisType.Auto,),
                       devices=devices[:n])


def rows(mesh: Mesh) -> NamedSharding:
  """The sharding of an array split along its leading (example) axis."""
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of an array held whole by every device of ``mesh``."""
  return NamedSharding(mesh, P())


def padded_size(n: int, multiple: int) -> int:
  """``n`` rounded up to a multiple of ``multiple`` (at least one)."""
  return max(multiple, int(math.ceil(n / multiple)) * multiple)


def pad_rows(tree: Any, size: int) -> Any:
  """Pads every leaf's leading axis with zeros up to ``size`` rows."""
  def pad(a):
    a = jnp.asarray(a) if not isinstance(a, np.ndarray) else a
    extra = size - a.shape[0]
    if extra < 0:
      raise ConfigError(f"cannot pad {a.shape[0]} rows down to {size}")
    if extra == 0:
      return a
    widths = [(0, extra)] + [(0, 0)] * (a.ndim - 1)
    return (np.pad(a, widths) if isinstance(a, np.ndarray)
            else jnp.pad(a, widths))
  return jax.tree.map(pad, tree)


def shard_rows(tree: Any, mesh: Mesh, weight_dtype: Any = jnp.float32
               ) -> tuple[Any, jax.Array, int]:
  """Places a pytree of example-major arrays on ``mesh``, split by rows.

  The rows are zero-padded up to a multiple of the device count (every
  device gets the same number), and a weight per row says which are real.

  Args:
    tree: pytree of arrays sharing a leading axis of n rows.
    mesh: from `make_data_mesh`.
    weight_dtype: dtype of the weights (that of the sums they weight, so
      1/n is not rounded to a lower precision).

  Returns:
    ``(sharded, weights, n)``: the padded tree with `rows` sharding,
    ``weights`` (padded rows 0, real rows 1/n; sharded the same) and the
    number of real rows.

  Raises:
    ConfigError: if the leaves do not share a non-empty leading axis.
  """
  sizes = {np.shape(a)[0] if np.ndim(a) else None
           for a in jax.tree.leaves(tree)}
  if len(sizes) != 1 or None in sizes or 0 in sizes:
    raise ConfigError("arrays to shard must share a non-empty leading "
                      f"(example) axis; got {sorted(sizes, key=str)}")
  n = sizes.pop()
  size = padded_size(n, mesh.size)
  sharding = rows(mesh)
  padded = jax.device_put(pad_rows(tree, size), sharding)
  weights = jnp.where(jnp.arange(size) < n, 1.0 / n, 0.0).astype(
      weight_dtype)
  return padded, jax.device_put(weights, sharding), n


def put_global(value: Any, sharding: NamedSharding) -> jax.Array:
  """One global array laid out by ``sharding`` from a value every process
  holds whole (each process fills its own devices' pieces; with several
  processes ``jax.device_put`` cannot reach the others' devices). Arrays
  already laid out so are returned as they are; PRNG key arrays are
  supported."""
  if (isinstance(value, jax.Array)
      and value.sharding.is_equivalent_to(sharding, value.ndim)):
    return value
  if (isinstance(value, jax.Array)
      and jnp.issubdtype(value.dtype, jax.dtypes.prng_key)):
    data = put_global(np.asarray(jax.random.key_data(value)), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
  host = np.asarray(value)
  return jax.make_array_from_callback(host.shape, sharding,
                                      lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places a pytree whole on every device of ``mesh`` (every process
  passing the same values)."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda a: put_global(a, sharding), tree)
