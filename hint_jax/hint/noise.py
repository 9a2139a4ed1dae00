"""HINT's pure building blocks: selection and the healthy-noise update.

All functions are jittable and work on whole batches of examples at once.
Pixel conventions: images are stored as uint8; the noise ``delta`` lives in
[0, 1] pixel units, the scale the model sees, so ``beta = 16/255`` bounds it
by 16 grey levels.
"""

import functools

import jax
import jax.numpy as jnp

from hint_jax import xla_options
from hint_jax.errors import ConfigError


@functools.partial(xla_options.jit, static_argnames=("k",))
def select_top(scores: jax.Array, k: int) -> jax.Array:
  """Indices of the ``k`` largest ``|scores|``, in increasing index order.

  Ties are broken towards the lower index (``lax.top_k``), so the choice is
  deterministic.

  Args:
    scores: (n,) influence scores (I_up; only the magnitude matters).
    k: how many to keep, 0 <= k <= n.

  Returns:
    (k,) int32 indices, sorted.
  """
  if not 0 <= k <= scores.shape[0]:
    raise ConfigError(f"cannot select {k} of {scores.shape[0]} examples")
  _, idx = jax.lax.top_k(jnp.abs(scores), k)
  return jnp.sort(idx).astype(jnp.int32)


def random_signs(key: jax.Array, infl: jax.Array) -> jax.Array:
  """``|infl|`` with an independent random sign per entry (the
  random-direction control: the magnitude of each step kept, its direction
  replaced)."""
  flip = jax.random.bernoulli(key, 0.5, infl.shape)
  return jnp.where(flip, -1.0, 1.0).astype(infl.dtype) * jnp.abs(infl)


def with_signs_of(direction: jax.Array, magnitude: jax.Array) -> jax.Array:
  """``|magnitude|`` with the sign of ``direction`` per entry (+ where
  ``direction`` is 0), so the magnitudes are kept bit for bit."""
  return jnp.where(direction < 0, -1.0, 1.0).astype(magnitude.dtype) * (
      jnp.abs(magnitude))


def random_like_norm(key: jax.Array, tree, norm) -> object:
  """A standard Gaussian pytree shaped like ``tree`` (one independent draw
  per leaf from ``key``), scaled to L2 norm ``norm`` over all leaves."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  draws = [jax.random.normal(k, jnp.shape(a), jnp.asarray(a).dtype)
           for k, a in zip(keys, leaves)]
  total = jnp.sqrt(sum(jnp.sum(d.astype(jnp.float32) ** 2) for d in draws))
  return jax.tree.unflatten(treedef, [
      (d * (norm / total)).astype(d.dtype) for d in draws])


def noise_step(delta: jax.Array, infl: jax.Array, step: float | jax.Array,
               beta: float | jax.Array, sign: bool = False) -> jax.Array:
  """One healthy-noise step: ``clip(delta + step * infl, -beta, beta)``.

  Args:
    delta: accumulated noise, shaped like the images, [0, 1] units.
    infl: I_pert at the current images (same shape), the direction
      -grad_x <grad_theta l(x, y), s_test>.
    step: gamma (already decayed if due).
    beta: L-inf bound.
    sign: step along ``sign(infl)`` instead.

  Returns:
    The new delta; ``|delta| <= beta`` holds exactly (a clip).
  """
  direction = jnp.sign(infl) if sign else infl
  return jnp.clip(delta + step * direction.astype(delta.dtype), -beta, beta)


def noised_images(x_orig_u8: jax.Array, delta: jax.Array,
                  rounding: str = "truncate") -> jax.Array:
  """``clip(x_orig - delta, 0, 1)`` stored as uint8.

  The value is formed in grey levels, ``x_orig_u8 - 255 * delta``, which is
  the same number as ``255 * (x_orig_u8 / 255 - delta)`` but exact when
  ``delta`` is 0 (an unchanged pixel stays itself under truncation).

  Args:
    x_orig_u8: the images as received, uint8.
    delta: noise in [0, 1] units, same shape.
    rounding: "truncate" (floor, as the authors' ``.byte()``: a pixel moved
      by less than one grey level downwards drops a level, one moved upwards
      by less than a level stays) or "round" (to the nearest level).

  Returns:
    uint8 images.
  """
  levels = x_orig_u8.astype(jnp.float32) - 255.0 * delta.astype(jnp.float32)
  levels = jnp.clip(levels, 0.0, 255.0)
  if rounding == "truncate":
    levels = jnp.floor(levels)
  elif rounding == "round":
    levels = jnp.round(levels)
  else:
    raise ConfigError(f"rounding must be 'truncate' or 'round', got "
                      f"{rounding!r}")
  return levels.astype(jnp.uint8)


@functools.partial(xla_options.jit, static_argnames=("sign", "rounding"),
                   donate_argnums=(1,))
def noise_write(x_orig_u8: jax.Array, delta: jax.Array, infl: jax.Array,
                step: jax.Array, beta: jax.Array, *, sign: bool,
                rounding: str) -> tuple[jax.Array, jax.Array]:
  """`noise_step` then `noised_images` for a batch; returns
  ``(delta, images_u8)``. ``delta``'s buffer is donated."""
  delta = noise_step(delta, infl, step, beta, sign)
  return delta, noised_images(x_orig_u8, delta, rounding)
