"""Influence functions with an inverse curvature: explicit, CG, LiSSA, and
Arnoldi's low-rank eigenbasis.

    score(z, z_i) = ∇f(z)ᵀ (C + λI)⁻¹ ∇ℓ(z_i)

C is the Hessian (``curvature="hessian"``) or its Gauss-Newton part
(``"ggn"``, positive semi-definite) of the mean training loss, over the
training set or a random subset of ``curvature_examples`` of it (drawn
from the key), at all of the parameters ``apply`` takes (restrict them
with `hint_jax.influence.restrict` for a subset). λ is ``damping``.

- ``explicit``: C formed densely (P × P, from P curvature products) and
  Cholesky-factored once; for small models (``max_parameters``).
- ``cg``: (C + λI)⁻¹∇f(z) by conjugate gradients per test example
  (`hint_jax.influence.cg_solve`, vmapped over a test block).
- ``lissa``: the same by the LiSSA recursion on random batches
  (`hint_jax.influence.lissa_solve`; Agarwal et al. 2017), λ = scale ×
  damp.
- ``arnoldi``: the top ``top_k`` eigenpairs (largest |eigenvalue|) of C
  from ``iterations`` steps of Lanczos with full re-orthogonalisation
  (the symmetric case of Arnoldi's iteration; Schioppa et al., "Scaling up
  influence functions", AAAI 2022), and score = Σ_j (u_jᵀ∇f(z))(u_jᵀ∇ℓ(z_i))
  / (θ_j + λ): the inverse restricted to that subspace.

References: Koh & Liang, "Understanding black-box predictions via influence
functions", ICML 2017; Martens, "New insights and perspectives on the
natural gradient method", JMLR 2020 (the GGN).
"""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from hint_jax import xla_options
from hint_jax.attribution import _host, functions
from hint_jax.attribution.core import Estimator, num_parameters, register
from hint_jax.errors import ConfigError, NumericalError
from hint_jax.influence.cg import cg_solve
from hint_jax.influence.lissa import lissa_solve

_CURVATURE_DEFAULTS = {"curvature": "ggn", "damping": 0.01,
                       "curvature_examples": None, "chunk_size": 256,
                       "test_function": "loss"}


def _curvature_data(train, key, settings):
  x, y = train
  n = x.shape[0]
  m = settings["curvature_examples"]
  if m is not None:
    if isinstance(m, bool) or not isinstance(m, int) or m <= 0:
      raise ConfigError(f"curvature_examples must be a count > 0 or None, "
                        f"got {m!r}")
    if int(m) < n:
      idx = jnp.sort(jax.random.choice(key, n, (int(m),), replace=False))
      x, y = x[idx], y[idx]
  return {"curvature_x": x, "curvature_y": y}


def _check_common(settings):
  functions.curvature_matvec(settings["curvature"])
  if not settings["damping"] >= 0:
    raise ConfigError(f"damping must be >= 0, got {settings['damping']}")
  if not int(settings["chunk_size"]) > 0:
    raise ConfigError("chunk_size must be > 0")


def _matvec(state, params):
  """v -> C v over the state's curvature data, at ``params``."""
  opts = state.options
  curv = functions.curvature_matvec(opts["curvature"])
  x, y = state.arrays["curvature_x"], state.arrays["curvature_y"]

  def mv(apply, v):
    return functions.chunked_matvec(curv, apply, params, x, y, v,
                                    int(opts["chunk_size"]))
  return mv


def _test_grads(state, apply, x, y):
  return functions.flat_grads(apply, state.members[0], x, y,
                              state.options["test_function"])


def _train_grads(state, extras, apply, x, y):
  del extras
  return functions.flat_grads(apply, state.members[0], x, y, "loss")[None]


# ------------------------------------------------------------------ explicit
def _explicit_prepare(apply, members, train, key, settings):
  _check_common(settings)
  params = members[0]
  p = num_parameters(params)
  if p > int(settings["max_parameters"]):
    raise ConfigError(f"explicit: {p} parameters would make a {p} x {p} "
                      f"matrix; raise max_parameters ({settings['max_parameters']})"
                      " or use cg, lissa, arnoldi")
  arrays = _curvature_data(train, key, settings)
  return dict(arrays, cholesky=_cholesky(apply, params, arrays, settings))


def _dense_curvature(apply, params, x, y, curvature, chunk_size,
                     column_chunk):
  """C as a dense (P, P) matrix: its columns C e_j, a block of
  ``column_chunk`` basis vectors per host-driven product, symmetrised."""
  p = num_parameters(params)
  dtype = jnp.result_type(*jax.tree.leaves(params))
  cols = []
  for start in range(0, p, column_chunk):
    basis = jax.nn.one_hot(jnp.arange(start, min(p, start + column_chunk)),
                           p, dtype=dtype)
    cols.append(_host.matvec_rows(apply, params, x, y, basis, curvature,
                                  chunk_size))
  c = jnp.concatenate(cols)
  return 0.5 * (c + c.T)


def _cholesky(apply, params, arrays, settings):
  c = _dense_curvature(apply, params, arrays["curvature_x"],
                       arrays["curvature_y"], settings["curvature"],
                       int(settings["chunk_size"]),
                       int(settings["column_chunk"]))
  c = c + settings["damping"] * jnp.eye(c.shape[0], dtype=c.dtype)
  chol = jnp.linalg.cholesky(c)
  if not bool(jnp.all(jnp.isfinite(chol))):
    raise NumericalError("explicit: C + damping I is not positive definite "
                         "(a Hessian with negative curvature): raise "
                         "damping or use curvature='ggn'")
  return chol


def _explicit_test(state, extras, apply, x, y):
  del extras
  g = _test_grads(state, apply, x, y)
  chol = state.arrays["cholesky"]
  return jax.scipy.linalg.cho_solve((chol, True), g.T).T[None]


register(Estimator(
    name="explicit", summary="∇f(z)ᵀ(C+λI)⁻¹∇ℓ(z_i), C dense (small models)",
    defaults=dict(_CURVATURE_DEFAULTS, max_parameters=20000,
                  column_chunk=64),
    prepare=_explicit_prepare, test_features=_explicit_test,
    train_features=_train_grads))


# ------------------------------------------------------------------------ CG
def _solver_prepare(apply, members, train, key, settings):
  del apply, members
  _check_common(settings)
  arrays = _curvature_data(train, key, settings)
  arrays["key"] = jax.random.key_data(jax.random.fold_in(key, 1))
  return arrays


def _cg_test(state, extras, apply, x, y):
  del extras
  opts = state.options
  g = _test_grads(state, apply, x, y)
  mv = _matvec(state, state.members[0])

  def one(v):
    return cg_solve(lambda w: mv(apply, w), v, opts["damping"],
                    tol=opts["tol"], maxiter=int(opts["maxiter"]))[0]
  return jax.vmap(one)(g)[None]


_grads_jit = xla_options.jit(functions.flat_grads,
                             static_argnames=("function",))


def _host_matvec(state, apply):
  opts = state.options
  return lambda v: _host.matvec_rows(
      apply, state.members[0], state.arrays["curvature_x"],
      state.arrays["curvature_y"], v, opts["curvature"],
      int(opts["chunk_size"]))


def _cg_test_host(state, extras, apply, x, y):
  del extras
  opts = state.options
  g = _grads_jit(apply, state.members[0], x, y,
                 function=opts["test_function"])
  return _host.cg_rows(_host_matvec(state, apply), g, opts["damping"],
                       opts["tol"], opts["maxiter"])[None]


register(Estimator(
    name="cg", summary="∇f(z)ᵀ(C+λI)⁻¹∇ℓ(z_i) by conjugate gradients",
    defaults=dict(_CURVATURE_DEFAULTS, tol=1e-5, maxiter=100),
    prepare=_solver_prepare, test_features=_cg_test,
    train_features=_train_grads, host_test_features=_cg_test_host))


# --------------------------------------------------------------------- LiSSA
def _lissa_test(state, extras, apply, x, y):
  del extras
  opts = state.options
  g = _test_grads(state, apply, x, y)
  params = state.members[0]
  curv = functions.curvature_matvec(opts["curvature"])
  data = (state.arrays["curvature_x"], state.arrays["curvature_y"])
  key = jax.random.wrap_key_data(state.arrays["key"])
  scale = float(opts["scale"])
  batch_hvp = lambda batch, v: curv(apply, params, batch[0], batch[1], v)

  def one(v):
    batch = opts["batch_size"]
    return lissa_solve(batch_hvp, v, data, key,
                       batch_size=None if batch is None else int(batch),
                       depth=int(opts["depth"]),
                       damping=opts["damping"] / scale, scale=scale)[0]
  return jax.vmap(one)(g)[None]


def _lissa_test_host(state, extras, apply, x, y):
  del extras
  opts = state.options
  params = state.members[0]
  g = _grads_jit(apply, params, x, y, function=opts["test_function"])
  data = (state.arrays["curvature_x"], state.arrays["curvature_y"])
  scale = float(opts["scale"])
  batch = opts["batch_size"]
  batch_matvec = lambda b, v: _host.matvec_rows(
      apply, params, b[0], b[1], v, opts["curvature"], b[0].shape[0])
  return _host.lissa_rows(batch_matvec, g, data,
                          jax.random.wrap_key_data(state.arrays["key"]),
                          batch_size=None if batch is None else int(batch),
                          depth=int(opts["depth"]),
                          damping=float(opts["damping"]) / scale,
                          scale=scale)[None]


def _lissa_prepare(apply, members, train, key, settings):
  if not settings["damping"] > 0 or not settings["scale"] >= settings[
      "damping"]:
    raise ConfigError("lissa needs damping > 0 and scale >= damping")
  return _solver_prepare(apply, members, train, key, settings)


register(Estimator(
    name="lissa", summary="∇f(z)ᵀ(C+λI)⁻¹∇ℓ(z_i) by the LiSSA recursion",
    defaults=dict(_CURVATURE_DEFAULTS, depth=500, batch_size=64,
                  scale=10.0),
    prepare=_lissa_prepare, test_features=_lissa_test,
    train_features=_train_grads, host_test_features=_lissa_test_host,
    nullable=frozenset({"batch_size"})))


# ------------------------------------------------------------------- Arnoldi
def lanczos(matvec, dim: int, iterations: int, key: jax.Array, dtype):
  """Eigenpairs of a symmetric operator from ``iterations`` Lanczos steps
  with full re-orthogonalisation. A breakdown (the Krylov space exhausted)
  restarts from a random vector orthogonal to the basis, so with
  ``iterations == dim`` the result is the full eigendecomposition. Pure and
  jittable.

  Returns:
    ``(eigenvalues (m,), eigenvectors (m, dim))``, ascending.
  """
  m = int(iterations)
  eps = jnp.finfo(dtype).eps
  q0 = jax.random.normal(key, (dim,), dtype)
  basis = jnp.zeros((m + 1, dim), dtype).at[0].set(q0 / jnp.linalg.norm(q0))

  def orth(q, w):
    w = w - q.T @ (q @ w)
    return w - q.T @ (q @ w)

  def body(j, carry):
    q, alpha, beta = carry
    w = matvec(q[j])
    a = q[j] @ w
    scale = jnp.linalg.norm(w)
    w = orth(q, w)
    b = jnp.linalg.norm(w)
    fresh = orth(q, jax.random.normal(jax.random.fold_in(key, j + 1), (dim,),
                                      dtype))
    broke = b <= 1e3 * eps * jnp.maximum(scale, 1e-30)
    nxt = jnp.where(broke, fresh / jnp.linalg.norm(fresh), w / b)
    return (q.at[j + 1].set(nxt), alpha.at[j].set(a),
            beta.at[j].set(jnp.where(broke, 0.0, b)))

  q, alpha, beta = jax.lax.fori_loop(
      0, m, body, (basis, jnp.zeros((m,), dtype), jnp.zeros((m,), dtype)))
  t = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
  theta, s = jnp.linalg.eigh(t)
  return theta, s.T @ q[:m]


def _arnoldi_prepare(apply, members, train, key, settings):
  _check_common(settings)
  params = members[0]
  p = num_parameters(params)
  iters = min(int(settings["iterations"]), p)
  top_k = int(settings["top_k"])
  if not 0 < top_k <= iters:
    raise ConfigError(f"arnoldi: top_k must be in [1, iterations = {iters}]")
  key_data, key_start = jax.random.split(key)
  arrays = _curvature_data(train, key_data, settings)
  x, y = arrays["curvature_x"], arrays["curvature_y"]
  mv = lambda v: _host.matvec_rows(apply, params, x, y, v,
                                   settings["curvature"],
                                   int(settings["chunk_size"]))
  dtype = jnp.result_type(*jax.tree.leaves(params))
  theta, u = _host.lanczos_host(mv, p, iters, key_start, dtype)
  order = jnp.argsort(-jnp.abs(theta))[:top_k]
  return {"eigenvalues": theta[order], "eigenvectors": u[order]}


def _arnoldi_project(state, apply, x, y, function):
  g = functions.flat_grads(apply, state.members[0], x, y, function)
  return g @ state.arrays["eigenvectors"].T


def _arnoldi_test(state, extras, apply, x, y):
  del extras
  proj = _arnoldi_project(state, apply, x, y, state.options["test_function"])
  return (proj / (state.arrays["eigenvalues"] + state.options["damping"]))[
      None]


def _arnoldi_train(state, extras, apply, x, y):
  del extras
  return _arnoldi_project(state, apply, x, y, "loss")[None]


register(Estimator(
    name="arnoldi",
    summary="(C+λI)⁻¹ on C's top-k eigenvectors (Lanczos/Arnoldi)",
    defaults=dict(_CURVATURE_DEFAULTS, damping=0.0, iterations=100,
                  top_k=20),
    prepare=_arnoldi_prepare, test_features=_arnoldi_test,
    train_features=_arnoldi_train))
