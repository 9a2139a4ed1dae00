"""Conjugate gradients for (H + λI) x = v on pytrees."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import optax

from hint_jax.influence.info import SolveInfo, make_info


def cg_solve(matvec: Callable[[Any], Any], v: Any,
             damping: float | jax.Array = 0.0, *,
             tol: float | jax.Array = 1e-6, maxiter: int | None = None,
             x0: Any = None) -> tuple[Any, SolveInfo]:
  """Solves (H + λI) x = v by conjugate gradients, inside `lax.while_loop`.

  H must be symmetric and H + λI positive definite (true for the
  cross-entropy top layer with λ > 0). Iteration stops when the recursive
  residual satisfies ‖r‖ ≤ tol·‖v‖, after `maxiter` iterations, or on a
  breakdown (non-positive or non-finite curvature pᵀ(H + λI)p), which is
  flagged as `diverged`. Pure and jittable; never raises.

  Args:
    matvec: `matvec(p) -> H p`, the undamped operator on pytrees like `v`.
    v: right-hand side pytree.
    damping: λ ≥ 0.
    tol: relative residual tolerance.
    maxiter: iteration cap (static); None for 10 × the number of unknowns.
    x0: initial guess; None for zeros.

  Returns:
    `(x, info)`: x a pytree like `v` (always finite: the last finite
    iterate); info a `SolveInfo` whose `residual` is the true relative
    residual ‖(H + λI)x − v‖ / ‖v‖, recomputed at exit with one more product.

  References:
    Hestenes & Stiefel, "Methods of conjugate gradients for solving linear
    systems", J. Res. NBS 1952. Koh & Liang, "Understanding black-box
    predictions via influence functions", ICML 2017 (CG for s_test).
  """
  if maxiter is None:
    maxiter = 10 * ravel_pytree(v)[0].size
  dtype = jnp.result_type(*jax.tree.leaves(v))
  damped = lambda p: optax.tree.add_scale(matvec(p), damping, p)
  x = optax.tree.zeros_like(v) if x0 is None else optax.tree.cast_like(x0, v)
  r = v if x0 is None else optax.tree.sub(v, damped(x))
  rs = optax.tree.vdot(r, r)
  v_norm = optax.tree.norm(v)
  target = (tol * v_norm) ** 2

  def cond(state):
    _, _, _, rs, it, broke = state
    return (it < maxiter) & (rs > target) & ~broke

  def body(state):
    x, r, p, rs, it, _ = state
    ap = damped(p)
    curvature = optax.tree.vdot(p, ap)
    broke = ~(curvature > 0) | ~jnp.isfinite(curvature)
    alpha = rs / jnp.where(broke, 1.0, curvature)
    x_new = optax.tree.add_scale(x, alpha, p)
    r_new = optax.tree.add_scale(r, -alpha, ap)
    rs_new = optax.tree.vdot(r_new, r_new)
    p_new = optax.tree.add_scale(r_new, rs_new / rs, p)
    keep = lambda old, new: jax.tree.map(
        lambda a, b: jnp.where(broke, a, b), old, new)
    return (keep(x, x_new), keep(r, r_new), keep(p, p_new),
            jnp.where(broke, rs, rs_new), it + jnp.where(broke, 0, 1), broke)

  init = (x, r, r, rs, jnp.asarray(0, jnp.int32),
          ~jnp.isfinite(rs))
  x, _, _, rs, it, broke = jax.lax.while_loop(cond, body, init)
  finite = jnp.isfinite(optax.tree.norm(x))
  x = jax.tree.map(lambda a: jnp.where(finite, a, 0.0), x)
  safe_norm = jnp.where(v_norm > 0, v_norm, 1.0)
  residual = optax.tree.norm(optax.tree.sub(damped(x), v)) / safe_norm
  diverged = broke | ~finite
  info = make_info(dtype, iterations=it, residual=residual,
                   converged=(rs <= target) & ~diverged, diverged=diverged,
                   damping=damping)
  return x, info
