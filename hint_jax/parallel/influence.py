"""The influence engine over a device mesh, rows split across devices.

Each function mirrors one of `hint_jax.influence` and returns the same value
up to float reassociation (tested against the one-device functions). Data
with an example axis is zero-padded to a multiple of the device count and
split by rows (`mesh.shard_rows`); every device runs the one-device code on
its own rows inside ``jax.shard_map`` (with ``check_vma=False``: the one-device code's
scans start from replicated zeros, which the varying-axis check rejects;
every output here is either ``psum``-reduced or split by rows, as declared):

- sums over examples (the validation gradient, the Hessian's products, the
  dense Hessian) weight each row (1/n for real rows, 0 for padding) and are
  reduced across devices with ``psum``, so the Hessian work of CG and power
  iteration is split evenly and only a parameter-sized vector is
  communicated per product;
- per-example outputs (I_up, I_pert, features) stay split by rows: they
  come back sharded ``P("data")`` when n is a multiple of the device count;
  otherwise they are cut back to the n real rows, which XLA returns
  replicated (a gather of the outputs only).

LiSSA draws a batch of 50 rows per step; its `batch_hvp` gathers that batch
from the sharded rows and runs the one-device product (XLA partitions it as
it sees fit): the per-step work is too small to be worth splitting, and LiSSA
is not HINT's default solver.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from hint_jax import xla_options
from hint_jax.influence import _chunks, grads, pert, top_layer
from hint_jax.influence._closure import as_pytree_callable, closure
from hint_jax.influence.direct import dense_hessian
from hint_jax.influence.hvp import hvp
from hint_jax.influence.info import SolveInfo
from hint_jax.influence import operator
from hint_jax.influence.operator import HessianOperator
from hint_jax.influence.solve import solve
from hint_jax.parallel.mesh import DATA, rows, shard_rows

Loss = Callable[..., jax.Array]


def _sharded_sum(fn, extra, data, weights, *, mesh, chunk_size, dtype):
  """``psum`` over devices of each device's ``chunked_sum`` of
  ``fn(extra, chunk, w)`` over its rows, with the given row weights."""

  def local(extra, data, weights):
    total = _chunks.chunked_sum(lambda c, w: fn(extra, c, w), data,
                                chunk_size, dtype, weights)
    return jax.lax.psum(total, DATA)

  return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(DATA), P(DATA)),
                       out_specs=P(), check_vma=False)(extra, data, weights)


def _sharded_map(fn, extra, data, *, mesh):
  """``fn(extra, local_rows)`` on every device, outputs split by rows."""
  return jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(DATA)),
                       out_specs=P(DATA), check_vma=False)(extra, data)


# ----------------------------------------------------------------- gradient
def _grad_term(extra, chunk, w):
  loss_one, params = extra
  return jax.grad(_chunks.weighted_loss)(params, loss_one, chunk, w)


@functools.partial(xla_options.jit, static_argnames=("mesh", "chunk_size"))
def _mean_grad(loss_one, params, data, weights, *, mesh, chunk_size):
  return _sharded_sum(_grad_term, (loss_one, params), data, weights,
                      mesh=mesh, chunk_size=chunk_size,
                      dtype=_chunks.tree_dtype(params))


def mean_grad(loss_one: Loss, params: Any, x: Any, y: Any, mesh: Mesh, *,
              chunk_size: int | None = None) -> Any:
  """`hint_jax.influence.mean_grad` with the examples split over ``mesh``:
  ∇_θ (1/n) Σ_i ℓ(x_i, y_i), replicated on every device."""
  data, weights, _ = shard_rows((x, y), mesh, _chunks.tree_dtype(params))
  return _mean_grad(as_pytree_callable(loss_one), params, data, weights,
                    mesh=mesh, chunk_size=chunk_size)


# ------------------------------------------------------------------ Hessian
def _hvp_term(extra, chunk, w):
  loss_one, params, v = extra
  return hvp(_chunks.weighted_loss, params, v, loss_one, chunk, w)


def _sharded_hvp(loss_one, params, data, weights, l2, v, *, mesh,
                 chunk_size):
  v = jax.tree.map(lambda a, p: jnp.asarray(a, p.dtype), v, params)
  hv = _sharded_sum(_hvp_term, (loss_one, params, v), data, weights,
                    mesh=mesh, chunk_size=chunk_size,
                    dtype=_chunks.tree_dtype(params))
  return jax.tree.map(lambda h, a: h + l2 * a, hv, v)


def _dense_term(extra, chunk, w):
  loss_one, params = extra
  return dense_hessian(_chunks.weighted_loss, params, loss_one, chunk, w)


def _sharded_dense(loss_one, params, data, weights, l2, *, mesh, chunk_size):
  h = _sharded_sum(_dense_term, (loss_one, params), data, weights, mesh=mesh,
                   chunk_size=chunk_size, dtype=_chunks.tree_dtype(params))
  return h + l2 * jnp.eye(h.shape[0], dtype=h.dtype)


def loss_hessian(loss_one: Loss, params: Any, x: Any, y: Any, mesh: Mesh, *,
                 l2: float = 0.0,
                 chunk_size: int | None = None) -> HessianOperator:
  """`hint_jax.influence.loss_hessian` with the training rows split over
  ``mesh``: each product ``matvec(v)`` runs forward-over-reverse on every
  device's rows and is summed across devices. ``data`` holds the n real
  rows only (LiSSA samples from it), sharded when n divides evenly."""
  loss_one = as_pytree_callable(loss_one)
  l2 = jnp.asarray(l2, _chunks.tree_dtype(params))
  (xs, ys), weights, n = shard_rows((x, y), mesh, l2.dtype)
  real = (x, y) if xs.shape[0] != n else (xs, ys)
  return HessianOperator(
      matvec=closure(_sharded_hvp, loss_one, params, (xs, ys), weights, l2,
                     mesh=mesh, chunk_size=chunk_size),
      batch_hvp=closure(operator._batch_hvp, loss_one, params, l2),  # pylint: disable=protected-access
      data=real,
      dense=closure(_sharded_dense, loss_one, params, (xs, ys), weights, l2,
                    mesh=mesh, chunk_size=chunk_size))


# ---------------------------------------------------- closed-form top layer
def _top_hvp(phi, probs, weights, l2, v, *, mesh, chunk_size, l2_bias):
  v = top_layer._cast_top(v, phi.dtype)
  hv = _sharded_sum(lambda v, c, w: top_layer.chunk_hvp(v, c, w), v,
                    (phi, probs), weights, mesh=mesh, chunk_size=chunk_size,
                    dtype=phi.dtype)
  return top_layer.add_l2(hv, v, l2, l2_bias)


def _top_dense(phi, probs, weights, l2, *, mesh, chunk_size, l2_bias):
  h = _sharded_sum(lambda _, c, w: top_layer.chunk_dense(c, w), (),
                   (phi, probs), weights, mesh=mesh, chunk_size=chunk_size,
                   dtype=phi.dtype)
  return top_layer.add_dense_l2(h, phi.shape[1], probs.shape[1], l2, l2_bias)


@functools.partial(xla_options.jit, static_argnames=("mesh",))
def _probs_sharded(top_params, phi, *, mesh):
  return _sharded_map(top_layer.probs_of, top_params, phi, mesh=mesh)


def top_layer_hessian(top_params: Any, phi: jax.Array, mesh: Mesh, *,
                      l2: float = 0.0, l2_bias: bool = False,
                      chunk_size: int | None = None) -> HessianOperator:
  """`hint_jax.influence.top_layer_hessian` with the feature rows split over
  ``mesh``: the softmax probabilities are computed where the rows live and
  every product is a per-device closed-form sum reduced with ``psum``."""
  top_layer._check_top(top_params)
  phi_s, weights, n = shard_rows(phi, mesh, jnp.asarray(phi).dtype)
  probs = _probs_sharded(top_params, phi_s, mesh=mesh)
  l2 = jnp.asarray(l2, phi_s.dtype)
  real = (phi_s, probs) if phi_s.shape[0] == n else (phi_s[:n], probs[:n])
  return HessianOperator(
      matvec=closure(_top_hvp, phi_s, probs, weights, l2, mesh=mesh,
                     chunk_size=chunk_size, l2_bias=l2_bias),
      batch_hvp=closure(top_layer._batch_hvp_from_probs, l2,
                        l2_bias=l2_bias),
      data=real,
      dense=closure(_top_dense, phi_s, probs, weights, l2, mesh=mesh,
                    chunk_size=chunk_size, l2_bias=l2_bias))


@functools.partial(xla_options.jit, static_argnames=("mesh",))
def _up_scores(top_params, s, phi, y, *, mesh):
  return _sharded_map(
      lambda ex, d: top_layer.top_layer_up_scores(ex[0], d[0], d[1], ex[1]),
      (top_params, s), (phi, y), mesh=mesh)


def top_layer_up_scores(top_params: Any, phi: jax.Array, y: jax.Array, s: Any,
                        mesh: Mesh) -> jax.Array:
  """`hint_jax.influence.top_layer_up_scores` over rows split by ``mesh``;
  the (n,) scores come back split by rows."""
  (phi_s, y_s), _, n = shard_rows((phi, y), mesh)
  out = _up_scores(top_params, s, phi_s, y_s, mesh=mesh)
  return out if out.shape[0] == n else out[:n]


def _pert_local(extra, data, *, chunk_size):
  features_fn, top, s = extra
  x, y = data

  def one(ex):
    xi, yi = ex
    return jax.grad(lambda xx: pert._grad_dot_sum(
        features_fn, top, s, xx[None], yi[None]))(xi)

  return -jax.lax.map(one, (x, y), batch_size=chunk_size)


@functools.partial(xla_options.jit, static_argnames=("mesh", "chunk_size"))
def _top_pert(features_fn, top, s, x, y, *, mesh, chunk_size):
  return _sharded_map(functools.partial(_pert_local, chunk_size=chunk_size),
                      (features_fn, top, s), (x, y), mesh=mesh)


def top_layer_pert(features_fn: Callable[[jax.Array], jax.Array],
                   top_params: Any, x: jax.Array, y: jax.Array, s: Any,
                   mesh: Mesh, *, chunk_size: int = 500) -> jax.Array:
  """`hint_jax.influence.top_layer_pert` with the examples split over
  ``mesh``: each device takes the input gradient of its own rows, in
  vmapped chunks of ``chunk_size`` (one batched reverse pass through the
  network per chunk); the result comes back split by rows."""
  top_layer._check_top(top_params)
  (xs, ys), _, n = shard_rows((x, y), mesh)
  out = _top_pert(as_pytree_callable(features_fn), top_params,
                  jax.lax.stop_gradient(s), xs, ys, mesh=mesh,
                  chunk_size=chunk_size)
  return out if out.shape[0] == n else out[:n]


# --------------------------------------------------------- generic scores
def _dot_local(extra, data, *, chunk_size):
  loss_one, params, v = extra
  return grads.per_example_grad_dot(loss_one, params, *data, v,
                                    chunk_size=chunk_size)


def _mixed_local(extra, data, *, chunk_size):
  loss_one, params, v = extra
  return grads.mixed_input_grad(loss_one, params, *data, v,
                                chunk_size=chunk_size)


@functools.partial(xla_options.jit, static_argnames=("mesh", "chunk_size", "mixed"))
def _per_example(loss_one, params, v, x, y, *, mesh, chunk_size, mixed):
  local = _mixed_local if mixed else _dot_local
  return _sharded_map(functools.partial(local, chunk_size=chunk_size),
                      (loss_one, params, v), (x, y), mesh=mesh)


def _scores(loss_one, params, x, y, s, mesh, chunk_size, mixed):
  (xs, ys), _, n = shard_rows((x, y), mesh)
  out = -_per_example(as_pytree_callable(loss_one), params,
                      jax.lax.stop_gradient(s), xs, ys, mesh=mesh,
                      chunk_size=chunk_size, mixed=mixed)
  return out if out.shape[0] == n else out[:n]


def influence_up(loss_one: Loss, params: Any, x: Any, y: Any, s: Any,
                 mesh: Mesh, *, chunk_size: int | None = None) -> jax.Array:
  """`hint_jax.influence.influence_up` (forward mode, per example) with the
  examples split over ``mesh``; the (n,) scores come back split by rows."""
  return _scores(loss_one, params, x, y, s, mesh, chunk_size, mixed=False)


def influence_pert(loss_one: Loss, params: Any, x: jax.Array, y: Any, s: Any,
                   mesh: Mesh, *, chunk_size: int | None = None) -> jax.Array:
  """`hint_jax.influence.influence_pert` (the vmapped mixed derivative) with
  the examples split over ``mesh``; the result comes back split by rows."""
  return _scores(loss_one, params, x, y, s, mesh, chunk_size, mixed=True)


def s_test(hessian: HessianOperator, loss_one: Loss, params: Any,
           x_val: Any, y_val: Any, mesh: Mesh, *,
           chunk_size: int | None = None,
           **solver_options: Any) -> tuple[Any, SolveInfo]:
  """`hint_jax.influence.s_test` with the validation gradient taken over
  rows split by ``mesh``; pass a sharded ``hessian`` (`loss_hessian` or
  `top_layer_hessian` of this module) to split the solve's products too."""
  g_val = mean_grad(loss_one, params, x_val, y_val, mesh,
                    chunk_size=chunk_size)
  return solve(hessian, g_val, **solver_options)


def features_of_images(model, params, model_state, x_u8, mesh: Mesh, *,
                       batch_size: int = 256) -> jax.Array:
  """``model.features_of_images`` with each batch split over ``mesh``
  (``batch_size`` rounded up to a multiple of the device count; the
  network runs on each device's rows, as XLA partitions the batched
  forward pass); the features come back split by rows."""
  per = max(1, -(-batch_size // mesh.size)) * mesh.size
  n = len(x_u8)
  sharding = rows(mesh)
  out = []
  for start in range(0, n, per):
    xb = jnp.asarray(x_u8[start:start + per])
    m = xb.shape[0]
    if m < per:
      xb = jnp.concatenate([xb, jnp.zeros((per - m,) + xb.shape[1:],
                                          xb.dtype)])
    phi = model._features_u8(params, model_state,  # pylint: disable=protected-access
                             jax.device_put(xb, sharding))
    out.append(phi if m == per else phi[:m])
  return jnp.concatenate(out) if out else jnp.zeros((0,))
