"""Closed forms for a softmax cross-entropy top layer over fixed features.

With θ_top = {"kernel": W (d, K), "bias": b (K,)} and the features
φ_i = φ(x_i) held fixed, logits are z_i = φ_i W + b and p_i = softmax(z_i).
Writing φ̃_i = [1; φ_i] (bias first, the `ravel_pytree` order of the dict),

  ∇_θ ℓ_i = φ̃_i ⊗ (p_i − e_{y_i}),
  H = (1/n) Σ_i φ̃_i φ̃_iᵀ ⊗ (diag(p_i) − p_i p_iᵀ)   (+ L2 terms),

so H does not depend on the labels, a product H v costs two (n, d) × (d, K)
matrix products (O(n d K), no autodiff) and the dense H costs O(n d² K²)
as one ((d+1)K × chunk) × (chunk × (d+1)K) product per chunk. The L2 term of the training objective is (l2/2)‖W‖², plus
(l2/2)‖b‖² with `l2_bias`; it adds l2 to the matching diagonal entries.

All functions are pure and jit/vmap compatible.
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax

from hint_jax.errors import ConfigError
from hint_jax.influence import _chunks
from hint_jax.influence._closure import closure
from hint_jax.influence.operator import HessianOperator

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_top(top_params: Any) -> None:
  if not isinstance(top_params, dict) or set(top_params) != {"kernel", "bias"}:
    keys = (sorted(top_params) if isinstance(top_params, dict)
            else type(top_params).__name__)
    raise ConfigError('top-layer parameters must be a dict with exactly '
                      f'"kernel" (d, K) and "bias" (K,); got {keys}')
  kernel, bias = top_params["kernel"], top_params["bias"]
  if kernel.ndim != 2 or bias.shape != kernel.shape[1:]:
    raise ConfigError(f"kernel must be (d, K) and bias (K,); got "
                      f"{kernel.shape} and {bias.shape}")


def top_logits(top_params: Any, phi: jax.Array) -> jax.Array:
  """Returns φ W + b for features of shape (d,) or (n, d)."""
  return (jnp.matmul(phi, top_params["kernel"], precision=_HIGHEST)
          + top_params["bias"])


def top_loss_one(top_params: Any, phi: jax.Array, y: jax.Array) -> jax.Array:
  """Softmax cross-entropy of one example; follows the `loss_one` convention.

  Args:
    top_params: {"kernel": (d, K), "bias": (K,)}.
    phi: features of one example, shape (d,).
    y: integer label.

  Returns:
    Scalar loss.
  """
  return optax.losses.softmax_cross_entropy_with_integer_labels(
      top_logits(top_params, phi), y)


def _l2_penalty(top_params, l2, l2_bias):
  sq = jnp.sum(top_params["kernel"] ** 2)
  if l2_bias:
    sq = sq + jnp.sum(top_params["bias"] ** 2)
  return 0.5 * l2 * sq


def top_layer_objective(top_params: Any, phi: jax.Array, y: jax.Array, *,
                        l2: float | jax.Array = 0.0,
                        l2_bias: bool = False) -> jax.Array:
  """Mean cross-entropy over (φ, y) plus (l2/2)‖W‖² (and ‖b‖² with l2_bias).

  This is the training objective whose Hessian `top_layer_hessian` returns.

  Args:
    top_params: {"kernel": (d, K), "bias": (K,)}.
    phi: features (n, d).
    y: integer labels (n,).
    l2: L2 coefficient.
    l2_bias: whether the bias is penalised too.

  Returns:
    Scalar.
  """
  losses = optax.losses.softmax_cross_entropy_with_integer_labels(
      top_logits(top_params, phi), y)
  return jnp.mean(losses) + _l2_penalty(top_params, l2, l2_bias)


def add_l2(hv, v, l2, l2_bias):
  return {"kernel": hv["kernel"] + l2 * v["kernel"],
          "bias": hv["bias"] + (l2 * v["bias"] if l2_bias else 0.0)}


def _cast_top(v, dtype):
  return {"kernel": jnp.asarray(v["kernel"], dtype),
          "bias": jnp.asarray(v["bias"], dtype)}


def chunk_hvp(v, chunk, w):
  """Σ_i w_i H_i v over a chunk of (φ, p) rows (no L2 term)."""
  phi_c, p_c = chunk
  u = jnp.matmul(phi_c, v["kernel"], precision=_HIGHEST) + v["bias"]
  r = p_c * (u - jnp.sum(p_c * u, axis=-1, keepdims=True))  # J_i u_i
  r = r * w[:, None]
  return {"kernel": jnp.matmul(phi_c.T, r, precision=_HIGHEST),
          "bias": jnp.sum(r, axis=0)}


def _hvp_from_probs(phi, probs, l2, v, *, l2_bias, chunk_size):
  """H v from features and precomputed softmax probabilities."""
  v = _cast_top(v, phi.dtype)
  hv = _chunks.chunked_sum(lambda c, w: chunk_hvp(v, c, w), (phi, probs),
                           chunk_size, phi.dtype)
  return add_l2(hv, v, l2, l2_bias)


def _batch_hvp_from_probs(l2, batch, v, *, l2_bias):
  phi, probs = batch
  return _hvp_from_probs(phi, probs, l2, v, l2_bias=l2_bias, chunk_size=None)


def chunk_dense(chunk, w):
  """Σ_i w_i H_i over a chunk of (φ, p) rows, dense, in `ravel_pytree`
  order: bias entries first, then W row-major (no L2 term)."""
  # Σ_i w_i φ̃_i φ̃_iᵀ ⊗ (diag(p_i) − p_i p_iᵀ), split as the block-diagonal
  # part G_k = Σ_i w_i p_ik φ̃_i φ̃_iᵀ minus UᵀWU with U_i = φ̃_i ⊗ p_i: two
  # matrix products, with no (chunk, d, d) or (chunk, d, K, K) temporary.
  phi_c, p_c = chunk
  k = p_c.shape[1]
  size = (phi_c.shape[1] + 1) * k
  aug = jnp.concatenate([jnp.ones_like(phi_c[:, :1]), phi_c], axis=1)
  wp = p_c * w[:, None]
  blocks = jnp.einsum("nk,na,nb->kab", wp, aug, aug, precision=_HIGHEST)
  u = (aug[:, :, None] * p_c[:, None, :]).reshape(-1, size)
  outer = jnp.matmul((u * w[:, None]).T, u, precision=_HIGHEST)
  diag = jnp.einsum("kab,kl->akbl", blocks, jnp.eye(k, dtype=blocks.dtype))
  return diag.reshape(size, size) - outer


def add_dense_l2(h, d, k, l2, l2_bias):
  """``h`` plus the L2 term's Hessian (bias entries only if ``l2_bias``)."""
  penalised = jnp.concatenate([jnp.full((k,), 1.0 if l2_bias else 0.0),
                               jnp.ones((d * k,))]).astype(h.dtype)
  return h + jnp.diag(l2 * penalised)


def _dense_from_probs(phi, probs, l2, *, l2_bias, chunk_size):
  """Dense H in `ravel_pytree` order: bias entries first, then W row-major."""
  h = _chunks.chunked_sum(chunk_dense, (phi, probs), chunk_size, phi.dtype)
  return add_dense_l2(h, phi.shape[1], probs.shape[1], l2, l2_bias)


def probs_of(top_params, phi):
  return jax.nn.softmax(top_logits(top_params, phi), axis=-1)


def top_layer_hvp(top_params: Any, phi: jax.Array, v: Any, *,
                  l2: float | jax.Array = 0.0, l2_bias: bool = False,
                  chunk_size: int | None = None) -> Any:
  """Returns H v for the top-layer objective, in closed form.

  The cross-entropy Hessian does not depend on the labels, so none are taken.

  Args:
    top_params: {"kernel": (d, K), "bias": (K,)} at which H is taken.
    phi: training features (n, d).
    v: {"kernel": (d, K), "bias": (K,)}.
    l2: L2 coefficient of the objective (see `top_layer_objective`).
    l2_bias: whether the bias is penalised.
    chunk_size: examples per chunk (bounds the (chunk, K) intermediates).

  Returns:
    H v, a dict like `top_params`.
  """
  _check_top(top_params)
  return _hvp_from_probs(phi, probs_of(top_params, phi), l2, v,
                         l2_bias=l2_bias, chunk_size=chunk_size)


def top_layer_dense_hessian(top_params: Any, phi: jax.Array, *,
                            l2: float | jax.Array = 0.0, l2_bias: bool = False,
                            chunk_size: int | None = None) -> jax.Array:
  """Returns the dense Hessian of the top-layer objective, in closed form.

  Memory is ((d+1) K)² entries: meant for small d (e.g. the direct solve in
  tests and the logistic-regression study).

  Args:
    top_params: {"kernel": (d, K), "bias": (K,)}.
    phi: training features (n, d).
    l2: L2 coefficient of the objective.
    l2_bias: whether the bias is penalised.
    chunk_size: examples per chunk.

  Returns:
    Array ((d+1) K, (d+1) K) in `ravel_pytree(top_params)` order.
  """
  _check_top(top_params)
  return _dense_from_probs(phi, probs_of(top_params, phi), l2, l2_bias=l2_bias,
                           chunk_size=chunk_size)


def top_layer_hessian(top_params: Any, phi: jax.Array, *,
                      l2: float | jax.Array = 0.0, l2_bias: bool = False,
                      chunk_size: int | None = None) -> HessianOperator:
  """Returns the closed-form top-layer Hessian as a `HessianOperator`.

  The softmax probabilities are computed once here; `matvec`, `batch_hvp`
  (on batches of (φ, p) rows, for LiSSA) and `dense` reuse them.

  Args:
    top_params: {"kernel": (d, K), "bias": (K,)} at which H is taken.
    phi: training features (n, d), precomputed once in inference mode.
    l2: L2 coefficient of the objective (see `top_layer_objective`).
    l2_bias: whether the bias is penalised.
    chunk_size: examples per chunk for the full-data product and dense H.

  Returns:
    A `HessianOperator`; its `data` is `(phi, probs)`.

  Example:
    >>> op = top_layer_hessian(top, phi_train)
    >>> s, info = s_test(op, top_loss_one, top, phi_val, y_val, method="cg")
  """
  _check_top(top_params)
  probs = probs_of(top_params, phi)
  l2 = jnp.asarray(l2, phi.dtype)
  return HessianOperator(
      matvec=closure(_hvp_from_probs, phi, probs, l2, l2_bias=l2_bias,
                     chunk_size=chunk_size),
      batch_hvp=closure(_batch_hvp_from_probs, l2, l2_bias=l2_bias),
      data=(phi, probs),
      dense=closure(_dense_from_probs, phi, probs, l2, l2_bias=l2_bias,
                    chunk_size=chunk_size))


def top_layer_up_scores(top_params: Any, phi: jax.Array, y: jax.Array,
                        s: Any) -> jax.Array:
  """Returns I_up(z_i) = −⟨∇_θ ℓ_i, s⟩ for all examples, in closed form.

  Since ∇_θ ℓ_i = φ̃_i ⊗ (p_i − e_{y_i}), ⟨∇_θ ℓ_i, s⟩ = (p_i − e_{y_i})ᵀ
  (s_Wᵀ φ_i + s_b): one forward pass over the features, no autodiff. Equals
  `influence_up(top_loss_one, top_params, phi, y, s)`.

  Args:
    top_params: {"kernel": (d, K), "bias": (K,)}.
    phi: features (n, d).
    y: integer labels (n,).
    s: s_test, a dict like `top_params`.

  Returns:
    Array (n,) of I_up values (see `influence_up` for the sign convention).
  """
  _check_top(top_params)
  residual = probs_of(top_params, phi) - jax.nn.one_hot(
      y, top_params["bias"].shape[0], dtype=phi.dtype)
  direction = (jnp.matmul(phi, jnp.asarray(s["kernel"], phi.dtype),
                          precision=_HIGHEST)
               + jnp.asarray(s["bias"], phi.dtype))
  return -jnp.sum(residual * direction, axis=-1)
