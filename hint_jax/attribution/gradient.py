"""Gradient-similarity estimators: Grad-Dot, Grad-Cos and TracIn.

- ``grad_dot``: ∇f(z)ᵀ ∇ℓ(z_i).
- ``grad_cos``: the same over the product of the two norms.
- ``tracin``: Σ_t η_t ∇f(z; θ_t)ᵀ ∇ℓ(z_i; θ_t) over saved checkpoints θ_t
  with their learning rates η_t (``learning_rates``: one per checkpoint,
  one number for all, or None for 1) (Pruthi et al., "Estimating training data
  influence by tracing gradient descent", NeurIPS 2020). With one
  checkpoint it is η · Grad-Dot.

f is the test function (``test_function``: the loss, or the margin); ℓ the
training loss. Positive: a small SGD step on z_i lowers f(z).
"""

import jax
import jax.numpy as jnp

from hint_jax.attribution import functions
from hint_jax.attribution.core import Estimator, register
from hint_jax.errors import ConfigError


def _stack(members):
  return jax.tree.map(lambda *a: jnp.stack(a), *members)


def _grads(state, apply, x, y, function):
  """(M, n, P): per-example flat gradients at every member."""
  stacked = _stack(state.members)
  return jax.vmap(lambda p: functions.flat_grads(apply, p, x, y, function))(
      stacked)


def _no_arrays(apply, members, train, key, settings):
  del apply, members, train, key, settings
  return {}


def _test_grads(state, extras, apply, x, y):
  del extras
  return _grads(state, apply, x, y, state.options["test_function"])


def _train_grads(state, extras, apply, x, y):
  del extras
  return _grads(state, apply, x, y, "loss")


def _unit(g):
  norm = jnp.linalg.norm(g, axis=-1, keepdims=True)
  return g / jnp.where(norm > 0, norm, 1.0)


register(Estimator(
    name="grad_dot", summary="∇f(z)ᵀ∇ℓ(z_i)",
    defaults={"test_function": "loss"}, prepare=_no_arrays,
    test_features=_test_grads, train_features=_train_grads))

register(Estimator(
    name="grad_cos", summary="cosine of ∇f(z) and ∇ℓ(z_i)",
    defaults={"test_function": "loss"}, prepare=_no_arrays,
    test_features=lambda *a: _unit(_test_grads(*a)),
    train_features=lambda *a: _unit(_train_grads(*a))))


def _tracin_prepare(apply, members, train, key, settings):
  del apply, train, key
  lrs = settings["learning_rates"]
  if isinstance(lrs, (int, float)):     # one rate for every checkpoint
    return {}
  if lrs is not None and len(lrs) != len(members):
    raise ConfigError(f"tracin: {len(lrs)} learning rates for "
                      f"{len(members)} checkpoints")
  return {}


def _tracin_test(state, extras, apply, x, y):
  g = _test_grads(state, extras, apply, x, y)
  lrs = state.options["learning_rates"]
  eta = jnp.broadcast_to(jnp.asarray(1.0 if lrs is None else lrs, g.dtype),
                         (len(state.members),))
  return g * eta[:, None, None]


register(Estimator(
    name="tracin", summary="Σ_t η_t ∇f(z;θ_t)ᵀ∇ℓ(z_i;θ_t) over checkpoints",
    defaults={"test_function": "loss", "learning_rates": None},
    prepare=_tracin_prepare, test_features=_tracin_test,
    train_features=_train_grads, multi_member=True))
