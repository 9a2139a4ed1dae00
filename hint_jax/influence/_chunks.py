"""Chunked sums and maps over the leading (example) axis."""

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from hint_jax.errors import ConfigError


def num_examples(data: Any) -> int:
  """Returns the common leading dimension of the leaves of `data`."""
  sizes = {leaf.shape[0] if leaf.ndim else None
           for leaf in jax.tree.leaves(data)}
  if len(sizes) != 1 or None in sizes or 0 in sizes:
    raise ConfigError("data leaves must share a non-empty leading (example) "
                      f"axis; got leading sizes {sorted(sizes, key=str)}")
  return sizes.pop()


def tree_dtype(tree: Any) -> jnp.dtype:
  """Returns the common floating dtype of a parameter pytree."""
  return jnp.result_type(*jax.tree.leaves(tree))


def weighted_loss(params: Any, loss_one: Callable[..., jax.Array],
                  data: tuple[Any, ...], weights: jax.Array) -> jax.Array:
  """Returns `sum_i weights[i] * loss_one(params, *data_i)`."""
  losses = jax.vmap(loss_one, in_axes=(None,) + (0,) * len(data))(params, *data)
  return jnp.sum(weights.astype(losses.dtype) * losses)


def chunked_sum(fn: Callable[[Any, jax.Array], Any], data: Any,
                chunk_size: int | None, dtype: jnp.dtype,
                weights: jax.Array | None = None) -> Any:
  """Sums `fn(chunk, weights)` over chunks of `data`, each example weighted 1/n
  (or by the given per-example `weights`).

  Chunks are dynamic slices of `data` (no copy, no padding): the last chunk is
  shifted back to end at example n, and the examples it shares with the
  previous chunk get weight 0, so every example counts exactly once. With
  `fn` linear in `weights` the result is the mean over all n examples.

  Args:
    fn: maps `(chunk, weights)` to a pytree; `chunk` is `data` restricted to
      `chunk_size` examples, `weights` an array of shape `(chunk_size,)`.
    data: pytree of arrays with a common leading dimension n.
    chunk_size: examples per chunk; None (or >= n) for a single chunk.
    dtype: dtype of the weights.
    weights: optional per-example weights, shape (n,), in place of 1/n
      (e.g. 0 for the padding rows of a sharded pass).

  Returns:
    The sum over chunks of `fn(chunk, weights)`.
  """
  n = num_examples(data)
  if weights is None:
    weights = jnp.full((n,), 1.0 / n, dtype)
  weights = jnp.asarray(weights, dtype)
  if weights.shape != (n,):
    raise ConfigError(f"weights must have shape ({n},), got {weights.shape}")
  if chunk_size is None or chunk_size >= n:
    return fn(data, weights)
  num_chunks = math.ceil(n / chunk_size)
  offsets = jnp.arange(chunk_size)

  def chunk_at(i):
    intended = i * chunk_size
    start = jnp.minimum(intended, n - chunk_size)
    chunk = jax.tree.map(
        lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk_size), data)
    w = jax.lax.dynamic_slice_in_dim(weights, start, chunk_size)
    return chunk, jnp.where(start + offsets >= intended, w, 0.0).astype(dtype)

  def body(total, i):
    return optax.tree.add(total, fn(*chunk_at(i))), None

  init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                      jax.eval_shape(lambda: fn(*chunk_at(0))))
  total, _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
  return total


def batched_map(fn: Callable[[Any], Any], data: Any,
                chunk_size: int | None) -> Any:
  """`jax.vmap(fn)(data)`, or `jax.lax.map` in chunks of `chunk_size`."""
  if chunk_size is None:
    return jax.vmap(fn)(data)
  return jax.lax.map(fn, data, batch_size=chunk_size)
