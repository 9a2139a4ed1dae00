"""On-device data augmentation for CIFAR: random shift + horizontal flip."""

import jax
import jax.numpy as jnp


def random_shift_flip(key, x_BHWC, max_shift: int = 4, flip: bool = True):
  """Random translation by up to ``max_shift`` pixels (zero fill) and random
  horizontal flip, independently per image.

  This is torchvision's ``RandomCrop(32, padding=4)`` followed by
  ``RandomHorizontalFlip()``: zero-pad by ``max_shift`` on each side and crop
  the original size at a random offset.

  Args:
    key: a ``jax.random`` key.
    x_BHWC: float images.
    max_shift: the largest shift in pixels.
    flip: whether to flip horizontally with probability 1/2.

  Returns:
    Augmented images with the shape of ``x_BHWC``.
  """
  b, h, w, _ = x_BHWC.shape
  k_shift, k_flip = jax.random.split(key)
  offsets = jax.random.randint(k_shift, (b, 2), 0, 2 * max_shift + 1)
  padded = jnp.pad(x_BHWC, ((0, 0), (max_shift, max_shift),
                            (max_shift, max_shift), (0, 0)))

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0),
                                 (h, w, img.shape[-1]))

  out = jax.vmap(crop)(padded, offsets)
  if flip:
    do_flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
    out = jnp.where(do_flip, out[:, :, ::-1, :], out)
  return out


def bernoulli_noise(key, x, amplitude):
  """``clip(x + amplitude * s, 0, 1)`` with s = +-1 per element, equally
  likely (FRIENDS' Bernoulli noise)."""
  s = jnp.where(jax.random.bernoulli(key, 0.5, x.shape), 1.0, -1.0)
  return jnp.clip(x + amplitude * s.astype(x.dtype), 0.0, 1.0)
