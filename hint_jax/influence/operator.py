"""The Hessian of a mean training loss, as the solvers consume it."""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from hint_jax.influence import _chunks
from hint_jax.influence._closure import as_pytree_callable, closure
from hint_jax.influence.direct import dense_hessian
from hint_jax.influence.hvp import hvp


class HessianOperator(NamedTuple):
  """H, the Hessian of a mean training loss (plus any L2 term), three ways.

  All fields are pytree callables (see `as_pytree_callable`), so the whole
  operator can be passed to jitted functions as an argument: new parameter or
  data values do not retrace.

  Attributes:
    matvec: `matvec(v) -> H v` over the full training set (CG, power iteration).
    batch_hvp: `batch_hvp(batch, v) -> H_B v`, the Hessian of the mean loss
      over a batch gathered from `data` by example index (LiSSA).
    data: pytree of arrays with a leading example axis, what `batch_hvp`
      indexes (for the closed-form top layer: features and probabilities).
    dense: `dense() -> H` as a (P, P) array in `ravel_pytree` order (direct
      solve); only sensible for small P.
  """
  matvec: Callable[[Any], Any]
  batch_hvp: Callable[[Any, Any], Any]
  data: Any
  dense: Callable[[], jax.Array]


def _add_l2(hv, v, l2):
  return optax.tree.add_scale(hv, l2, optax.tree.cast_like(v, hv))


def _full_hvp(loss_one, params, data, l2, v, *, chunk_size):
  v = optax.tree.cast_like(v, params)
  hv = _chunks.chunked_sum(
      lambda chunk, w: hvp(_chunks.weighted_loss, params, v, loss_one, chunk,
                           w),
      data, chunk_size, _chunks.tree_dtype(params))
  return _add_l2(hv, v, l2)


def _batch_hvp(loss_one, params, l2, batch, v):
  return _full_hvp(loss_one, params, batch, l2, v, chunk_size=None)


def _dense(loss_one, params, data, l2, *, chunk_size):
  h = _chunks.chunked_sum(
      lambda chunk, w: dense_hessian(_chunks.weighted_loss, params, loss_one,
                                     chunk, w),
      data, chunk_size, _chunks.tree_dtype(params))
  return h + l2 * jnp.eye(h.shape[0], dtype=h.dtype)


def loss_hessian(loss_one: Callable[..., jax.Array], params: Any, x: Any,
                 y: Any, *, l2: float | jax.Array = 0.0,
                 chunk_size: int | None = None) -> HessianOperator:
  """Returns the autodiff Hessian of (1/n) Σ_i ℓ(θ; x_i, y_i) + (l2/2)‖θ‖².

  Products are forward-over-reverse (`hvp`) and accumulated over chunks of
  the training set, so memory is bounded by `chunk_size` examples.

  Args:
    loss_one: per-example loss `loss_one(params, x, y)`; for θ_top use
      `restrict_loss` so derivatives are w.r.t. the subset only.
    params: parameter pytree θ at which H is taken.
    x: training inputs, leading axis n.
    y: training labels, shape (n,).
    l2: weight-decay coefficient of the training objective (all of θ).
    chunk_size: examples per chunk for the full-data product and the dense
      Hessian; None for one pass.

  Returns:
    A `HessianOperator`.

  Example:
    >>> top, rebuild = restrict(params, ["Dense_1"])
    >>> loss_top = restrict_loss(loss_one, rebuild)
    >>> op = loss_hessian(loss_top, top, x_train, y_train, chunk_size=512)
    >>> hv = op.matvec(top)
  """
  loss_one = as_pytree_callable(loss_one)
  l2 = jnp.asarray(l2, _chunks.tree_dtype(params))
  data = (x, y)
  _chunks.num_examples(data)
  return HessianOperator(
      matvec=closure(_full_hvp, loss_one, params, data, l2,
                     chunk_size=chunk_size),
      batch_hvp=closure(_batch_hvp, loss_one, params, l2),
      data=data,
      dense=closure(_dense, loss_one, params, data, l2, chunk_size=chunk_size))
