"""What the targeted attacks share: input checks, the projection onto the
budget, and the uint8 round trip (see `hint_jax.attacks.targeted`)."""

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax.attacks.untargeted import budget_levels
from hint_jax.attacks.untargeted import quantize_within_budget
from hint_jax.errors import ConfigError

FeaturesFn = Callable[[jax.Array], jax.Array]


def _check_images(base_u8, target_u8):
  base_u8, target_u8 = np.asarray(base_u8), np.asarray(target_u8)
  if base_u8.dtype != np.uint8 or target_u8.dtype != np.uint8:
    raise ConfigError("base and target images must be uint8")
  if base_u8.ndim != 4 or len(base_u8) == 0:
    raise ConfigError(f"base images must be a non-empty (n, H, W, C) batch, "
                      f"got shape {base_u8.shape}")
  if target_u8.shape != base_u8.shape[1:]:
    raise ConfigError(f"the target must be one image of shape "
                      f"{base_u8.shape[1:]}, got {target_u8.shape}")
  return base_u8, target_u8


def _check_opt(eps, steps, lr):
  budget_levels(eps)
  if not isinstance(steps, int) or steps < 0:
    raise ConfigError(f"steps must be a whole number >= 0, got {steps}")
  if not (math.isfinite(lr) and lr > 0):
    raise ConfigError(f"learning rate must be > 0, got {lr}")


def _project(x0, delta, eps):
  """Onto ``|delta| <= eps`` and ``0 <= x0 + delta <= 1``."""
  delta = jnp.clip(delta, -eps, eps)
  return jnp.clip(x0 + delta, 0.0, 1.0) - x0


def _to_float(x_u8):
  return jnp.asarray(x_u8, jnp.float32) / 255.0


def _finish(base_u8, x0, delta, eps, losses):
  x = quantize_within_budget(jnp.asarray(base_u8), x0 + delta, eps)
  return np.asarray(x), np.asarray(losses, np.float32)
