"""TRAK (Park et al., "TRAK: Attributing model behavior at scale", ICML
2023).

For each member m of an ensemble (models trained on random halves of the
training set, or one model): φ_m(z) = R_mᵀ ∇θ margin(z; θ_m), with R_m a
P × k Gaussian projection (entries N(0, 1/k), drawn from the key: rebuilt
when scoring, never stored) or no projection (``proj_dim`` None);
K_m = (Φ_mᵀ Φ_m + ridge·I)⁻¹ over the training set Φ_m; then

    score(z, z_i) = [ (1/M) Σ_m φ_m(z)ᵀ K_m φ_m(z_i) ] · Q̄_i,
    Q̄_i = (1/M) Σ_m (1 − p_m(z_i)),

with margin(z) = log(p_y / (1 − p_y)) and p_m(z_i) the probability member
m gives z_i's label. Positive: z_i raises z's margin (helps it).

Memory: the M projections are kept while scoring when they take at most
``STORED_PROJECTION_BYTES`` together; above that (many members of a large
model: 50 MLP members at k = 512 would hold 11 GB) each member's
projection is rebuilt from its key inside a sequential loop over the
members, so memory holds one member's projection and gradients at a time.
Both ways use the same keys and give the same scores.
"""

import jax
import jax.numpy as jnp

from hint_jax import xla_options
from hint_jax.attribution import functions
from hint_jax.attribution.core import Estimator, num_parameters, register
from hint_jax.attribution.state import make_state
from hint_jax.errors import ConfigError


STORED_PROJECTION_BYTES = 512 * 2 ** 20


def _projection(key, p, k, dtype):
  return jax.random.normal(key, (p, k), dtype) / jnp.sqrt(
      jnp.asarray(k, dtype))


def _projections(state):
  """The members' projections from the stored key: ``{"projections":
  (M, P, k)}``, or, above ``STORED_PROJECTION_BYTES``, ``{"keys": (M, 2)
  key data, "shape": (0, k)}`` to rebuild them one member at a time; {}
  without projection."""
  k = state.options["proj_dim"]
  if k is None:
    return {}
  p = num_parameters(state.members[0])
  key = jax.random.wrap_key_data(state.arrays["key"])
  dtype = jnp.result_type(*jax.tree.leaves(state.members[0]))
  keys = jax.random.split(key, len(state.members))
  if len(state.members) * p * int(k) * jnp.dtype(dtype).itemsize > \
      STORED_PROJECTION_BYTES:
    return {"keys": jax.random.key_data(keys),
            "shape": jnp.zeros((0, int(k)), dtype)}
  return {"projections": jax.vmap(
      lambda kk: _projection(kk, p, int(k), dtype))(keys)}


def _features(members, extras, apply, x, y):
  """(M, n, k) projected margin gradients (or (M, n, P) without)."""
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *members)
  if "keys" in extras:       # one member at a time, projection rebuilt
    k = extras["shape"].shape[1]

    def one(args):
      params, key_data = args
      g = functions.flat_grads(apply, params, x, y, "margin")
      return g @ _projection(jax.random.wrap_key_data(key_data),
                             g.shape[1], k, g.dtype)
    return jax.lax.map(one, (stacked, extras["keys"]))
  g = jax.vmap(lambda p: functions.flat_grads(apply, p, x, y, "margin"))(
      stacked)
  if "projections" in extras:
    return jnp.einsum("mnp,mpk->mnk", g, extras["projections"])
  return g


@xla_options.jit
def _gram_block(members, extras, apply, x, y):
  phi = _features(members, extras, apply, x, y)
  return jnp.einsum("mnk,mnl->mkl", phi, phi)


def _prepare(apply, members, train, key, settings):
  k = settings["proj_dim"]
  if k is not None and not int(k) > 0:
    raise ConfigError(f"trak: proj_dim must be > 0 or None, got {k}")
  if not settings["ridge"] >= 0:
    raise ConfigError("trak: ridge must be >= 0")
  arrays = {"key": jax.random.key_data(key)}
  probe = make_state("trak", settings, members, arrays)
  extras = _projections(probe)
  x, y = train
  block = int(settings["block_size"])
  gram = None
  for start in range(0, x.shape[0], block):
    part = _gram_block(members, extras, apply, x[start:start + block],
                       y[start:start + block])
    gram = part if gram is None else gram + part
  dim = gram.shape[-1]
  gram = gram + settings["ridge"] * jnp.eye(dim, dtype=gram.dtype)
  eig = jnp.linalg.eigvalsh(gram)
  if not bool(jnp.all(eig[:, 0] > dim * jnp.finfo(gram.dtype).eps
                      * eig[:, -1])):
    raise ConfigError("trak: ΦᵀΦ is singular (fewer training examples than "
                      "features, or a flat direction): set ridge > 0 or a "
                      "smaller proj_dim")
  arrays["kernels"] = jnp.linalg.inv(gram)
  return arrays


def _test(state, extras, apply, x, y):
  phi = _features(state.members, extras, apply, x, y)
  return jnp.einsum("mnk,mkl->mnl", phi, state.arrays["kernels"])


def _train(state, extras, apply, x, y):
  return _features(state.members, extras, apply, x, y)


def _weights(state, extras, apply, x, y):
  del extras
  p = jnp.stack([functions.probabilities(apply, m, x, y)
                 for m in state.members])
  return jnp.mean(1.0 - p, axis=0)


register(Estimator(
    name="trak", summary="projected margin gradients, ensemble kernel "
    "(TRAK)",
    defaults={"proj_dim": 512, "ridge": 0.0, "block_size": 256},
    prepare=_prepare, test_features=_test, train_features=_train,
    reduce="mean", train_weights=_weights, expand=_projections,
    multi_member=True, nullable=frozenset({"proj_dim"})))
