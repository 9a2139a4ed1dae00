"""The functions attribution differentiates, and their curvature.

Everything takes ``apply(params, x) -> logits``: a classifier's logits for a
batch ``x`` (leading example axis) in inference mode, as a pure function of
a parameter pytree (any linen or nnx model through `hint_jax.models.adapt`,
or ``functools.partial(model.apply_eval, model_state=...)`` style closures).
Per-example functions take one example without its batch axis.

- ``loss``: the cross-entropy ℓ(z) = −log softmax(logits)_y, the training
  objective and the default test function;
- ``margin``: log(p_y / (1 − p_y)) = logit_y − logsumexp of the other
  logits, TRAK's output function.

Per-example gradients are returned flat, (n, P) in the order of
``jax.flatten_util.ravel_pytree(params)``, so estimators work with plain
matrices; the curvature products work on flat vectors too.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from hint_jax.errors import ConfigError

Apply = Callable[[Any, jax.Array], jax.Array]
TEST_FUNCTIONS = ("loss", "margin")
CURVATURES = ("hessian", "ggn")


def example_loss(apply: Apply, params: Any, x: jax.Array,
                 y: jax.Array) -> jax.Array:
  """Cross-entropy of one example (``x`` without batch axis)."""
  logits = apply(params, x[None])[0]
  return jax.nn.logsumexp(logits) - logits[y]


def example_margin(apply: Apply, params: Any, x: jax.Array,
                   y: jax.Array) -> jax.Array:
  """log(p_y / (1 − p_y)) of one example: logit_y minus the logsumexp of
  the other logits (TRAK's output function)."""
  logits = apply(params, x[None])[0]
  others = jnp.where(jnp.arange(logits.shape[0]) == y, -jnp.inf, logits)
  return logits[y] - jax.nn.logsumexp(others)


def _function(name: str):
  if name == "loss":
    return example_loss
  if name == "margin":
    return example_margin
  raise ConfigError(f"test function must be one of {TEST_FUNCTIONS}, got "
                    f"{name!r}")


def flat_grads(apply: Apply, params: Any, x: jax.Array, y: jax.Array,
               function: str = "loss") -> jax.Array:
  """Per-example gradients of ``function`` ("loss" or "margin"), flat:
  (n, P) in ``ravel_pytree(params)`` order. Pure, jittable, vmapped over
  the examples of ``x``."""
  fn = _function(function)

  def one(xi, yi):
    return ravel_pytree(jax.grad(fn, argnums=1)(apply, params, xi, yi))[0]

  return jax.vmap(one)(x, y)


def probabilities(apply: Apply, params: Any, x: jax.Array,
                  y: jax.Array) -> jax.Array:
  """p_y, the probability the model gives each example's label, (n,)."""
  logits = apply(params, x)
  return jnp.take_along_axis(jax.nn.softmax(logits), y[:, None], 1)[:, 0]


def _mean_loss(apply, params, x, y):
  return jnp.mean(jax.vmap(example_loss, in_axes=(None, None, 0, 0))(
      apply, params, x, y))


def hessian_matvec(apply: Apply, params: Any, x: jax.Array, y: jax.Array,
                   v: jax.Array) -> jax.Array:
  """H v for the flat vector ``v``: H the Hessian of the mean cross-entropy
  over the batch ``(x, y)`` (forward-over-reverse)."""
  flat, unravel = ravel_pytree(params)
  grad = lambda f: ravel_pytree(jax.grad(
      lambda p: _mean_loss(apply, p, x, y))(unravel(f)))[0]
  return jax.jvp(grad, (flat,), (v.astype(flat.dtype),))[1]


def ggn_matvec(apply: Apply, params: Any, x: jax.Array, y: jax.Array,
               v: jax.Array) -> jax.Array:
  """G v for the flat vector ``v``: G = (1/n) Σ_i J_iᵀ (diag(p_i) − p_i
  p_iᵀ) J_i, the Gauss-Newton part of the Hessian of the mean
  cross-entropy (J_i the Jacobian of example i's logits; positive
  semi-definite). One jvp and one vjp through the network."""
  del y   # the cross-entropy's curvature in the logits does not use labels
  flat, unravel = ravel_pytree(params)
  logits_of = lambda f: apply(unravel(f), x)
  logits, jv = jax.jvp(logits_of, (flat,), (v.astype(flat.dtype),))
  p = jax.nn.softmax(logits)
  hjv = p * jv - p * jnp.sum(p * jv, axis=1, keepdims=True)
  _, vjp = jax.vjp(logits_of, flat)
  return vjp(hjv / x.shape[0])[0]


def curvature_matvec(curvature: str) -> Callable:
  """``hessian_matvec`` or ``ggn_matvec`` by name."""
  if curvature == "hessian":
    return hessian_matvec
  if curvature == "ggn":
    return ggn_matvec
  raise ConfigError(f"curvature must be one of {CURVATURES}, got "
                    f"{curvature!r}")


def chunked_matvec(matvec: Callable, apply: Apply, params: Any,
                   x: jax.Array, y: jax.Array, v: jax.Array,
                   chunk_size: int) -> jax.Array:
  """``matvec`` over all of ``(x, y)`` as the example-weighted mean of its
  value on chunks of ``chunk_size`` examples (the last chunk may be
  shorter; ``lax.scan`` over the full chunks), so memory is bounded by the
  chunk. Jittable; n and ``chunk_size`` are static."""
  n = x.shape[0]
  full = n // chunk_size
  total = jnp.zeros_like(v)
  if full:
    xs = x[:full * chunk_size].reshape((full, chunk_size) + x.shape[1:])
    ys = y[:full * chunk_size].reshape((full, chunk_size))

    def body(acc, batch):
      return acc + matvec(apply, params, batch[0], batch[1], v), None

    total, _ = jax.lax.scan(body, total, (xs, ys))
    total = total * (chunk_size / n)
  rest = n - full * chunk_size
  if rest:
    total = total + matvec(apply, params, x[full * chunk_size:],
                           y[full * chunk_size:], v) * (rest / n)
  return total
