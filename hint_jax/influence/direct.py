"""Dense Hessians and direct solves of (H + λI) x = v for small subsets."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from hint_jax.influence.info import SolveInfo, make_info


def dense_hessian(loss_fn: Callable[..., jax.Array], params: Any,
                  *args: Any) -> jax.Array:
  """Returns the dense Hessian of `loss_fn(params, *args)` w.r.t. `params`.

  Args:
    loss_fn: scalar function `loss_fn(params, *args)`.
    params: parameter pytree with P entries in all.
    *args: further arguments of `loss_fn`.

  Returns:
    Array (P, P) in the order of `jax.flatten_util.ravel_pytree(params)`.
  """
  flat, unravel = ravel_pytree(params)
  return jax.hessian(lambda f: loss_fn(unravel(f), *args))(flat)


def dense_from_matvec(matvec: Callable[[Any], Any], like: Any,
                      chunk_size: int | None = None) -> jax.Array:
  """Materialises a symmetric linear operator on pytrees as a dense matrix.

  Applies `matvec` to the P basis vectors (vmapped, in chunks of
  `chunk_size`) and symmetrises the result.

  Args:
    matvec: linear map from pytrees like `like` to pytrees like `like`.
    like: pytree giving the structure, shapes and dtypes.
    chunk_size: basis vectors per vmapped chunk; None for all at once.

  Returns:
    Array (P, P) in the order of `ravel_pytree(like)`.
  """
  flat, unravel = ravel_pytree(like)
  column = lambda e: ravel_pytree(matvec(unravel(e)))[0]
  basis = jnp.eye(flat.size, dtype=flat.dtype)
  if chunk_size is None:
    columns = jax.vmap(column)(basis)
  else:
    columns = jax.lax.map(column, basis, batch_size=chunk_size)
  return 0.5 * (columns + columns.T)


def direct_solve_dense(hessian: jax.Array, v: Any,
                       damping: float | jax.Array = 0.0
                       ) -> tuple[Any, SolveInfo]:
  """Solves (H + λI) x = v with a dense H, by Cholesky (LU if not SPD).

  Args:
    hessian: array (P, P) in the order of `ravel_pytree(v)`.
    v: right-hand side pytree.
    damping: λ ≥ 0.

  Returns:
    `(x, info)`: x a pytree like `v`; info a `SolveInfo` with the relative
    residual. Non-finite solutions are replaced by zeros and flagged.
  """
  v_flat, unravel = ravel_pytree(v)
  a = hessian.astype(v_flat.dtype) + damping * jnp.eye(v_flat.size,
                                                       dtype=v_flat.dtype)
  factor = jnp.linalg.cholesky(a)
  x_flat = jax.lax.cond(
      jnp.all(jnp.isfinite(factor)),
      lambda: jax.scipy.linalg.cho_solve((factor, True), v_flat),
      lambda: jnp.linalg.solve(a, v_flat))
  finite = jnp.all(jnp.isfinite(x_flat))
  x_flat = jnp.where(finite, x_flat, 0.0)
  v_norm = jnp.linalg.norm(v_flat)
  residual = jnp.linalg.norm(a @ x_flat - v_flat) / jnp.where(
      v_norm > 0, v_norm, 1.0)
  info = make_info(v_flat.dtype, residual=residual, converged=finite,
                   diverged=~finite, damping=damping)
  return unravel(x_flat), info


def direct_solve(matvec: Callable[[Any], Any], v: Any,
                 damping: float | jax.Array = 0.0,
                 chunk_size: int | None = None) -> tuple[Any, SolveInfo]:
  """Solves (H + λI) x = v by materialising H from `matvec` (P products).

  Args:
    matvec: the undamped Hessian as a linear map on pytrees like `v`.
    v: right-hand side pytree.
    damping: λ ≥ 0.
    chunk_size: basis vectors per vmapped chunk when building H.

  Returns:
    `(x, info)` as `direct_solve_dense`.
  """
  return direct_solve_dense(dense_from_matvec(matvec, v, chunk_size), v,
                            damping)
