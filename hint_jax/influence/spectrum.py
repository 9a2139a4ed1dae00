"""Largest-eigenvalue estimates by power iteration."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from hint_jax.influence import _chunks


def power_iteration(matvec: Callable[[Any], Any], like: Any, key: jax.Array,
                    num_iters: int = 50) -> jax.Array:
  """Estimates the largest-magnitude eigenvalue of a symmetric operator.

  Starts from a Gaussian pytree, repeats v ← Av / ‖Av‖ and returns the
  Rayleigh quotient vᵀAv. For a positive semi-definite A this is λ_max from
  below; for an indefinite A it is the eigenvalue of largest magnitude (it can
  be negative). Convergence is geometric in |λ₂/λ₁|.

  Args:
    matvec: symmetric linear map on pytrees like `like`.
    like: pytree giving the structure, shapes and dtypes.
    key: PRNG key for the starting vector.
    num_iters: number of products (plus one for the quotient).

  Returns:
    Scalar estimate.
  """
  v = optax.tree.random_like(key, like)

  def normalise(w):
    norm = optax.tree.norm(w)
    return optax.tree.scale(jnp.where(norm > 0, 1.0 / norm, 0.0), w)

  v = jax.lax.fori_loop(0, num_iters, lambda _, w: normalise(matvec(w)),
                        normalise(v))
  return optax.tree.vdot(v, matvec(v))


def batch_lambda_max(batch_hvp: Callable[[Any, Any], Any], data: Any,
                     like: Any, key: jax.Array, *,
                     batch_size: int | None = 50, num_batches: int = 4,
                     num_iters: int = 30) -> jax.Array:
  """Largest power-iteration estimate of λ_max(H_B) over sampled batches.

  This is the quantity that bounds LiSSA's stability: its recursion uses a
  fresh batch Hessian H_B at every step, and one with too large an
  eigenvalue is enough to make it diverge. Batches are drawn with
  replacement, as LiSSA draws them.

  Args:
    batch_hvp: `batch_hvp(batch, v) -> H_B v`.
    data: pytree with a leading example axis that batches are gathered from.
    like: pytree like v.
    key: PRNG key.
    batch_size: examples per batch; None for the whole of `data`.
    num_batches: batches to try (1 when `batch_size` is None).
    num_iters: power iterations per batch.

  Returns:
    Scalar, the largest estimate.
  """
  n = _chunks.num_examples(data)
  if batch_size is None:
    return power_iteration(lambda v: batch_hvp(data, v), like, key, num_iters)

  def one_batch(k):
    k_idx, k_vec = jax.random.split(k)
    idx = jax.random.randint(k_idx, (batch_size,), 0, n)
    batch = jax.tree.map(lambda a: a[idx], data)
    return power_iteration(lambda v: batch_hvp(batch, v), like, k_vec,
                           num_iters)

  return jnp.max(jax.lax.map(one_batch, jax.random.split(key, num_batches)))
