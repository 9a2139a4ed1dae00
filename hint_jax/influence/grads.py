"""Per-example and mean gradients, gradient-vector products, mixed derivatives.

All functions take a per-example loss `loss_one(params, x, y) -> scalar`
(x one example without batch axis, y its label) and a batch `x, y` with a
leading example axis. `chunk_size` bounds memory: examples are processed in
vmapped chunks of that size (`jax.lax.map(..., batch_size=chunk_size)`);
None processes the whole batch in one vmap.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from hint_jax.errors import ConfigError
from hint_jax.influence import _chunks

Loss = Callable[..., jax.Array]


def per_example_grads(loss_one: Loss, params: Any, x: Any, y: Any,
                      chunk_size: int | None = None) -> Any:
  """Returns ∇_θ ℓ(x_i, y_i) for every example.

  Args:
    loss_one: per-example loss `loss_one(params, x, y)`.
    params: parameter pytree θ.
    x: inputs with a leading example axis of size n.
    y: labels, shape (n,).
    chunk_size: examples per vmapped chunk; None for one vmap.

  Returns:
    A pytree like `params` whose leaves have a leading axis of size n.
  """
  grad_one = jax.grad(loss_one)
  return _chunks.batched_map(lambda ex: grad_one(params, *ex), (x, y),
                             chunk_size)


def per_example_grad_dot(loss_one: Loss, params: Any, x: Any, y: Any, v: Any,
                         chunk_size: int | None = None) -> jax.Array:
  """Returns ⟨∇_θ ℓ(x_i, y_i), v⟩ for every example, by forward mode.

  The product is the directional derivative d/dt ℓ(x_i, θ + t v) at t = 0, one
  `jax.jvp` per example: about the cost of a forward pass, and no per-example
  gradient is materialised.

  Args:
    loss_one: per-example loss `loss_one(params, x, y)`.
    params: parameter pytree θ.
    x: inputs with a leading example axis of size n.
    y: labels, shape (n,).
    v: pytree like `params` (cast to its dtypes).
    chunk_size: examples per vmapped chunk; None for one vmap.

  Returns:
    Array of shape (n,).
  """
  v = optax.tree.cast_like(v, params)

  def dot_one(ex):
    xi, yi = ex
    return jax.jvp(lambda p: loss_one(p, xi, yi), (params,), (v,))[1]

  return _chunks.batched_map(dot_one, (x, y), chunk_size)


def mixed_input_grad(loss_one: Loss, params: Any, x: jax.Array, y: Any,
                     v: Any, chunk_size: int | None = None) -> jax.Array:
  """Returns ∇_x ⟨∇_θ ℓ(x_i, y_i, θ), v⟩ for every example.

  Computed as the forward-mode derivative of ∇_x ℓ along θ + t v (mixed
  partials commute, so this equals the gradient of the dot product), which
  costs about one gradient w.r.t. x per example.

  Args:
    loss_one: per-example loss `loss_one(params, x, y)`, differentiable in x.
    params: parameter pytree θ (for HINT, θ_top with the rest of the network
      closed over by `restrict_loss`, so ∇_x runs through the whole network).
    x: floating-point inputs with a leading example axis of size n.
    y: labels, shape (n,).
    v: pytree like `params` (cast to its dtypes).
    chunk_size: examples per vmapped chunk; None for one vmap.

  Returns:
    Array with the shape and dtype of `x`.

  Raises:
    ConfigError: if `x` is not floating point (e.g. uint8 images).
  """
  if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact):
    raise ConfigError(f"inputs must be floating point to differentiate, got "
                      f"{jnp.asarray(x).dtype}")
  v = optax.tree.cast_like(v, params)

  def mixed_one(ex):
    xi, yi = ex
    grad_x = lambda p: jax.grad(loss_one, argnums=1)(p, xi, yi)
    return jax.jvp(grad_x, (params,), (v,))[1]

  return _chunks.batched_map(mixed_one, (x, y), chunk_size)


def mean_grad(loss_one: Loss, params: Any, x: Any, y: Any,
              chunk_size: int | None = None) -> Any:
  """Returns ∇_θ (1/n) Σ_i ℓ(x_i, y_i), accumulated over chunks.

  Args:
    loss_one: per-example loss `loss_one(params, x, y)`.
    params: parameter pytree θ.
    x: inputs with a leading example axis of size n.
    y: labels, shape (n,).
    chunk_size: examples per chunk; None for one pass.

  Returns:
    A pytree like `params`.
  """
  grad_fn = jax.grad(_chunks.weighted_loss)
  return _chunks.chunked_sum(
      lambda chunk, w: grad_fn(params, loss_one, chunk, w), (x, y),
      chunk_size, _chunks.tree_dtype(params))
