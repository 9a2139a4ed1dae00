"""Host-driven loops for the curvature solvers, used by the streaming path.

XLA:CPU compiles convolutions inside ``lax.scan`` / ``while`` bodies far
slower than at top level (a ConvNet's Gauss-Newton product measured 7-11x
slower inside a loop), so `scores` and the preparation phases run their
iterations from Python, each step one top-level jitted call over a block
of vectors. They compute the same iterations as the pure, loop-in-XLA
versions (`hint_jax.influence.cg_solve`, `lissa_solve`, `inverse.lanczos`)
that `score_block` uses; tests compare the two.
"""

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import xla_options
from hint_jax.attribution import functions


def _rows_impl(apply, params, x, y, v, curvature):
  mv = functions.curvature_matvec(curvature)
  return jax.vmap(lambda r: mv(apply, params, x, y, r))(v)


_rows = xla_options.jit(_rows_impl, static_argnames=("curvature",))


def matvec_rows(apply, params, x, y, v, curvature, chunk_size):
  """C v for each row of ``v`` (r, P): C the curvature over ``(x, y)``,
  summed chunk by chunk (each chunk one top-level call)."""
  n = x.shape[0]
  total = None
  for start in range(0, n, chunk_size):
    xc, yc = x[start:start + chunk_size], y[start:start + chunk_size]
    part = _rows(apply, params, xc, yc, v, curvature) * (xc.shape[0] / n)
    total = part if total is None else total + part
  return total


@xla_options.jit
def _cg_update(x, r, p, ap, rs, active):
  curv = jnp.sum(p * ap, axis=1)
  broke = ~(curv > 0) | ~jnp.isfinite(curv)
  step = active & ~broke
  alpha = jnp.where(step, rs / jnp.where(broke, 1.0, curv), 0.0)
  x = x + alpha[:, None] * p
  r = r - alpha[:, None] * ap
  rs_new = jnp.where(step, jnp.sum(r * r, axis=1), rs)
  beta = jnp.where(step, rs_new / rs, 0.0)
  p = jnp.where(step[:, None], r + beta[:, None] * p, p)
  return x, r, p, rs_new, active & ~broke


def cg_rows(matvec, g, damping, tol, maxiter):
  """(C + λI)⁻¹ g for each row of ``g`` (r, P) by conjugate gradients,
  every row its own iteration (stopping at ‖r‖ ≤ tol ‖g‖ or on a
  breakdown, as `hint_jax.influence.cg_solve`); ``matvec`` maps a block
  of rows."""
  x = jnp.zeros_like(g)
  r, p = g, g
  rs = jnp.sum(r * r, axis=1)
  target = (tol ** 2) * rs
  active = rs > target
  for _ in range(int(maxiter)):
    if not bool(jnp.any(active)):
      break
    ap = matvec(p) + damping * p
    x, r, p, rs, active = _cg_update(x, r, p, ap, rs, active)
    active = active & (rs > target)
  return x


def lissa_rows(batch_matvec, g, data, key, *, batch_size, depth, damping,
               scale, blowup=10.0):
  """LiSSA for each row of ``g``, the recursion of
  `hint_jax.influence.lissa_solve` with one repeat and the same batches:
  h ← g + (1 − damp) h − C_B h / scale, x = h / scale; a row whose norm
  leaves the convergent bound becomes zeros (diverged)."""
  n = jax.tree.leaves(data)[0].shape[0]
  run_key = jax.random.split(key, 1)[0]
  steps_bound = (-np.expm1((depth + 1) * np.log1p(-damping)) / damping
                 if damping > 0 else depth + 1.0)
  bound = blowup * jnp.linalg.norm(g, axis=1) * steps_bound
  h = g
  alive = jnp.ones(g.shape[0], bool)
  for step in range(int(depth)):
    if batch_size is None:
      batch = data
    else:
      idx = jax.random.randint(jax.random.fold_in(run_key, step),
                               (batch_size,), 0, n)
      batch = jax.tree.map(lambda a, i=idx: a[i], data)
    h = g + (1.0 - damping) * h - batch_matvec(batch, h) / scale
    norm = jnp.linalg.norm(h, axis=1)
    alive = alive & jnp.isfinite(norm) & (norm <= bound)
  return jnp.where(alive[:, None], h, 0.0) / scale


def lanczos_host(matvec, dim, iterations, key, dtype):
  """`hint_jax.attribution.inverse.lanczos` with the loop on the host:
  the same steps, restarts and result."""
  m = int(iterations)
  eps = float(jnp.finfo(dtype).eps)
  q0 = jax.random.normal(key, (dim,), dtype)
  q = jnp.zeros((m + 1, dim), dtype).at[0].set(q0 / jnp.linalg.norm(q0))
  alpha = np.zeros(m)
  beta = np.zeros(m)
  for j in range(m):
    w = matvec(q[j][None])[0]
    a = float(q[j] @ w)
    scale = float(jnp.linalg.norm(w))
    w = _orth(q, w)
    b = float(jnp.linalg.norm(w))
    if b <= 1e3 * eps * max(scale, 1e-30):
      fresh = _orth(q, jax.random.normal(jax.random.fold_in(key, j + 1),
                                         (dim,), dtype))
      nxt, b = fresh / jnp.linalg.norm(fresh), 0.0
    else:
      nxt = w / b
    q = q.at[j + 1].set(nxt)
    alpha[j], beta[j] = a, b
  t = np.diag(alpha) + np.diag(beta[:-1], 1) + np.diag(beta[:-1], -1)
  theta, s = np.linalg.eigh(t)
  return (jnp.asarray(theta, dtype),
          jnp.asarray(s.T, dtype) @ q[:m])


@xla_options.jit
def _orth(q, w):
  w = w - q.T @ (q @ w)
  return w - q.T @ (q @ w)
