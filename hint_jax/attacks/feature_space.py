"""Feature Collision (Poison Frogs) and Bullseye Polytope: targeted attacks
for transfer learning, in the feature space of a frozen extractor phi (see
`hint_jax.attacks.targeted`)."""

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.attacks._targeted_common import FeaturesFn
from hint_jax.attacks._targeted_common import (_check_images, _check_opt,
                                               _finish, _project, _to_float)
from hint_jax.attacks.untargeted import as_partial


def _fc_objective(features_fn, x0, delta, phi_t):
  """Sum over poisons of ``|phi(x_i) - phi(t)|^2 / |phi(t)|^2``: each
  poison's own distance, so its gradient does not depend on the others."""
  phi = features_fn(jnp.clip(x0 + delta, 0.0, 1.0))
  return jnp.sum((phi - phi_t) ** 2) / jnp.sum(phi_t ** 2)


def _bp_objective(features_fn, x0, delta, phi_t):
  """``|mean_i phi(x_i) - phi(t)|^2 / |phi(t)|^2``: the polytope's centre
  (equal coefficients, the "bullseye") on the target's feature."""
  phi = features_fn(jnp.clip(x0 + delta, 0.0, 1.0))
  return jnp.sum((jnp.mean(phi, axis=0) - phi_t) ** 2) / jnp.sum(phi_t ** 2)


_FEATURE_OBJECTIVES = {"fc": _fc_objective, "bp": _bp_objective}


@functools.partial(xla_options.jit, static_argnames=("kind", "opt"),
                   donate_argnums=(3, 4))
def _feature_step(features_fn, x0, phi_t, delta, opt_state, eps, *, kind,
                  opt):
  loss, grad = jax.value_and_grad(
      lambda d: _FEATURE_OBJECTIVES[kind](features_fn, x0, d, phi_t))(delta)
  updates, opt_state = opt.update(grad, opt_state, delta)
  delta = _project(x0, delta + updates, eps)
  return delta, opt_state, loss


def _feature_attack(kind, features_fn, base_u8, target_u8, *, eps, steps, lr,
                    on_progress):
  base_u8, target_u8 = _check_images(base_u8, target_u8)
  _check_opt(eps, steps, lr)
  features_fn = as_partial(features_fn)
  x0 = _to_float(base_u8)
  phi_t = features_fn(_to_float(target_u8)[None])[0]
  opt = optax.adam(lr)
  delta = jnp.zeros_like(x0)
  opt_state = opt.init(delta)
  losses = []
  for s in range(steps):
    delta, opt_state, loss = _feature_step(
        features_fn, x0, phi_t, delta, opt_state, jnp.float32(eps),
        kind=kind, opt=opt)
    losses.append(loss)
    if on_progress is not None:
      on_progress(s + 1, steps)
  losses = np.asarray(jnp.stack(losses)) if losses else np.zeros(0)
  return _finish(base_u8, x0, delta, eps, losses)


def feature_collision(features_fn: FeaturesFn, base_u8: np.ndarray,
                      target_u8: np.ndarray, *, eps: float = 16 / 255,
                      steps: int = 200, lr: float = 0.01, on_progress=None
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """Feature Collision ("Poison Frogs", Shafahi et al. 2018): moves every
  base image's feature onto the target's.

  Minimises ``sum_i |phi(b_i + delta_i) - phi(t)|^2 / |phi(t)|^2`` over
  ``|delta_i| <= eps``. The original keeps the poison near its base with a
  proximal ``beta |x - b|^2`` term and no hard budget; the L-inf ball used
  here (as in the paper's setting, eps = 16/255) plays that role, so there
  is no beta.

  Args:
    features_fn: the frozen feature extractor, float images -> phi
      (e.g. ``Model.features_fn(params, model_state)``).
    base_u8: uint8 base images (n, H, W, C) of the poison class.
    target_u8: the uint8 target image (H, W, C).
    eps: L-inf budget in [0, 1] units.
    steps, lr: Adam on delta.
    on_progress: optional ``(done, total)`` callback, once per step.

  Returns:
    ``(poisons_u8, losses)``: the poisons and the objective at each step.
  """
  return _feature_attack("fc", features_fn, base_u8, target_u8, eps=eps,
                         steps=steps, lr=lr, on_progress=on_progress)


def bullseye_polytope(features_fn: FeaturesFn, base_u8: np.ndarray,
                      target_u8: np.ndarray, *, eps: float = 16 / 255,
                      steps: int = 200, lr: float = 0.01, on_progress=None
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """Bullseye Polytope (Aghakhani et al. 2021): moves the *mean* feature of
  the poisons onto the target's, so the target sits at the centre of their
  convex hull in feature space.

  Minimises ``|mean_i phi(b_i + delta_i) - phi(t)|^2 / |phi(t)|^2`` over
  ``|delta_i| <= eps``: one feature extractor (the original can also
  average over an ensemble of extractors; pass an ensemble's concatenated
  features as ``features_fn`` for that). Arguments and result as
  `feature_collision`.
  """
  return _feature_attack("bp", features_fn, base_u8, target_u8, eps=eps,
                         steps=steps, lr=lr, on_progress=on_progress)
