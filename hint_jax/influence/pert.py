"""Batched I_pert when θ is the top layer.

With θ = θ_top = (W, b) and logits = Wᵀφ(x) + b, the parameter-gradient dot
⟨∇_θ ℓ(x, y), s⟩ = (p(x) − e_y)ᵀ (s_Wᵀ φ(x) + s_b) is a scalar function of x
through φ alone (see `top_layer_up_scores`). Its input gradient is therefore
one reverse-mode pass through the feature extractor, instead of the
forward-over-reverse mixed derivative of the generic `influence_pert` (about
half the work). And since every example's value depends on its own input only
(the network in inference mode), the gradient of the *sum* over a batch w.r.t.
the batch of inputs is exactly the per-example gradient: the batch runs
through the network as one batch, with no vmap over single examples.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

from hint_jax import xla_options
from hint_jax.influence._closure import as_pytree_callable
from hint_jax.influence.top_layer import _check_top, top_logits

Features = Callable[[jax.Array], jax.Array]


def _grad_dot_sum(features_fn, top, s, x, y):
  phi = features_fn(x)
  probs = jax.nn.softmax(top_logits(top, phi), axis=-1)
  residual = probs - jax.nn.one_hot(y, probs.shape[-1], dtype=probs.dtype)
  direction = phi @ s["kernel"] + s["bias"]
  return jnp.sum(residual * direction)


@xla_options.jit
def _pert_chunk(features_fn, top, s, x, y):
  return -jax.grad(_grad_dot_sum, argnums=3)(features_fn, top, s, x, y)


def top_layer_pert(features_fn: Features, top_params: Any, x: jax.Array,
                   y: jax.Array, s: Any, *, chunk_size: int = 500
                   ) -> jax.Array:
  """Returns I_pert(z_i) = −∇_x ⟨∇_θtop ℓ(z_i), s⟩ for every example.

  Equals `influence_pert(loss_top, top_params, x, y, s)` (tested), at the
  cost of one batched gradient.

  Args:
    features_fn: ``phi = features_fn(x_batch)``, the network below the top
      layer in inference mode (examples must not interact: no batch
      statistics). Pass the same function object (or a
      `jax.tree_util.Partial`) each call to avoid recompiling.
    top_params: {"kernel": (d, K), "bias": (K,)}.
    x: float inputs (n, ...).
    y: integer labels (n,).
    s: s_test, a dict like `top_params` (treated as a constant).
    chunk_size: examples per batch through the network; the last chunk is
      padded to this size so everything compiles once.

  Returns:
    Array shaped like `x`.
  """
  _check_top(top_params)
  features_fn = as_pytree_callable(features_fn)
  s = jax.lax.stop_gradient(s)
  x, y = jnp.asarray(x), jnp.asarray(y)
  n = x.shape[0]
  outs = []
  for start in range(0, n, chunk_size):
    xb, yb = x[start:start + chunk_size], y[start:start + chunk_size]
    m = xb.shape[0]
    if m < chunk_size:  # pad: padded rows get their own (unused) gradients
      xb = jnp.concatenate([xb, jnp.zeros((chunk_size - m,) + xb.shape[1:],
                                          xb.dtype)])
      yb = jnp.concatenate([yb, jnp.zeros((chunk_size - m,), yb.dtype)])
    outs.append(_pert_chunk(features_fn, top_params, s, xb, yb)[:m])
  return jnp.concatenate(outs) if outs else jnp.zeros_like(x)
