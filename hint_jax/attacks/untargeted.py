"""Untargeted poisoning attacks of the paper's Table II: PGD,
DAP and DURP (DeepConfuse is in `deepconfuse`).

Every attack maps uint8 images to uint8 images within an L-inf budget
``eps`` in [0, 1] pixel units, and the budget holds exactly after
quantisation: a stored pixel moves by at most ``budget_levels(eps)`` grey
levels (``floor(255 eps)``; 76 for eps = 0.3, 8 for 8/255).

The victim is ``logits_fn(x_float) -> logits`` in inference mode (e.g.
``Model.logits_fn(params, model_state)``). The per-example optimisation runs
on whole chunks of examples at once: one jitted signed-gradient step per
call, the steps dispatched from Python (XLA:CPU runs convolutions inside a
``lax`` loop about ten times slower, see the README's performance notes).
"""

import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import xla_options
from hint_jax.errors import ConfigError

LogitsFn = Callable[[jax.Array], jax.Array]


def budget_levels(eps: float) -> int:
  """The largest whole number of grey levels within ``eps`` (robust to
  8/255 * 255 = 7.999...)."""
  if not (math.isfinite(eps) and 0.0 <= eps <= 1.0):
    raise ConfigError(f"the budget eps must be in [0, 1] (pixel units), got "
                      f"{eps}")
  return int(math.floor(255.0 * eps + 1e-6))


def quantize_within_budget(x_orig_u8: jax.Array, x_adv: jax.Array,
                           eps: float) -> jax.Array:
  """Rounds float images ``x_adv`` in [0, 1] to uint8, then projects onto
  ``|x - x_orig| <= budget_levels(eps)`` grey levels (and [0, 255])."""
  levels = budget_levels(eps)
  orig = x_orig_u8.astype(jnp.int32)
  q = jnp.round(jnp.clip(x_adv, 0.0, 1.0) * 255.0).astype(jnp.int32)
  q = jnp.clip(q, orig - levels, orig + levels)
  return jnp.clip(q, 0, 255).astype(jnp.uint8)


@functools.partial(xla_options.jit, static_argnames=("descend",), donate_argnums=(2,))
def _signed_step(logits_fn, x0, delta, y, eps, step_size, *, descend):
  """One projected signed-gradient step on each example's cross-entropy:
  ascent (error-maximising) or descent (toward the labels ``y``).

  The input gradient is a vector-Jacobian product with the cross-entropy's
  logit gradient softmax(z) - e_y, rescaled per example to a maximum of 1
  (entries below 1e-20 set to 0). A positive per-example scale leaves the
  sign of that example's input gradient unchanged (examples are independent
  in inference mode) and keeps the backward pass in the normal float range
  when DAP drives an example's target probability to ~1 (raw logit
  gradients ~1e-39). Examples whose logit gradient is entirely below 1e-20
  have converged and stop moving. (Measured speed is the same as a plain
  ``jax.grad`` of the summed loss: ~2000 image-steps/s on the MNIST
  ConvNet, 2-core CPU.)
  """
  logits, vjp = jax.vjp(lambda d: logits_fn(jnp.clip(x0 + d, 0.0, 1.0)),
                        delta)
  g = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) - jax.nn.one_hot(
      y, logits.shape[-1], dtype=jnp.float32)
  g = jnp.where(jnp.abs(g) < 1e-20, 0.0, g)
  g = g / jnp.maximum(jnp.max(jnp.abs(g), axis=-1, keepdims=True), 1e-20)
  (grad,) = vjp(g.astype(logits.dtype))
  direction = -jnp.sign(grad) if descend else jnp.sign(grad)
  delta = jnp.clip(delta + step_size * direction, -eps, eps)
  return jnp.clip(x0 + delta, 0.0, 1.0) - x0   # stay a valid image


def as_partial(fn):
  """``fn`` as a ``jax.tree_util.Partial`` (a pytree, so jitted steps
  taking it do not retrace for new parameters)."""
  return fn if isinstance(fn, jax.tree_util.Partial) else (
      jax.tree_util.Partial(fn))


def _pgd(logits_fn, x_u8, labels, *, eps, steps, step_size, descend,
         key: Optional[jax.Array], chunk_size: int, on_progress=None):
  x_u8 = np.asarray(x_u8)
  labels = np.asarray(labels)
  n = len(x_u8)
  out = np.empty_like(x_u8)
  logits_fn = as_partial(logits_fn)
  for c, start in enumerate(range(0, n, chunk_size)):
    xb = x_u8[start:start + chunk_size]
    m = len(xb)
    pad = chunk_size - m   # pad the last chunk: one compiled shape
    xp = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
    yp = np.concatenate([labels[start:start + m], np.zeros(pad, labels.dtype)])
    x0 = jnp.asarray(xp, jnp.float32) / 255.0
    if key is not None:   # random start, uniform in the eps-ball
      delta = jax.random.uniform(jax.random.fold_in(key, c), x0.shape,
                                 jnp.float32, -eps, eps)
      delta = jnp.clip(x0 + delta, 0.0, 1.0) - x0
    else:
      delta = jnp.zeros_like(x0)
    y = jnp.asarray(yp, jnp.int32)
    for _ in range(steps):
      delta = _signed_step(logits_fn, x0, delta, y, jnp.float32(eps),
                           jnp.float32(step_size), descend=descend)
    out[start:start + m] = np.asarray(
        quantize_within_budget(jnp.asarray(xp), x0 + delta, eps))[:m]
    if on_progress is not None:
      on_progress(start + m, n)
  return out


def _check(eps, steps, step_size, chunk_size):
  budget_levels(eps)
  if steps < 0 or chunk_size < 1:
    raise ConfigError("steps must be >= 0 and chunk_size >= 1")
  if not (math.isfinite(step_size) and step_size > 0):
    raise ConfigError(f"step size must be > 0, got {step_size}")


def pgd_attack(logits_fn: LogitsFn, x_u8: np.ndarray, y: np.ndarray,
               key: jax.Array, *, eps: float = 0.3, steps: int = 40,
               step_size: float = 0.01, chunk_size: int = 500,
               on_progress=None) -> np.ndarray:
  """Error-maximising L-inf PGD against a clean-trained victim.

  From a uniform random start in the eps-ball, ``steps`` signed-gradient
  ascent steps of ``step_size`` on the victim's cross-entropy at the true
  labels, projected onto the ball and [0, 1]. The authors' generator is not
  public; these defaults (MNIST: eps 0.3, 40 steps of 0.01) follow the HINT paper.

  Args:
    logits_fn: the victim, float images -> logits (inference mode).
    x_u8: clean uint8 images (n, H, W, C).
    y: their labels.
    key: PRNG key of the random start (chunk c uses ``fold_in(key, c)``).
    eps: L-inf budget in [0, 1] units.
    steps, step_size: the optimisation.
    chunk_size: examples optimised together.
    on_progress: optional ``(done, total)`` callback.

  Returns:
    uint8 poisoned images, each within ``budget_levels(eps)`` grey levels.
  """
  _check(eps, steps, step_size, chunk_size)
  return _pgd(logits_fn, x_u8, y, eps=eps, steps=steps, step_size=step_size,
              descend=False, key=key, chunk_size=chunk_size,
              on_progress=on_progress)


def dap_attack(logits_fn: LogitsFn, x_u8: np.ndarray, y: np.ndarray, *,
               num_classes: int, eps: float = 0.3, steps: int = 100,
               step_size: Optional[float] = None, chunk_size: int = 500,
               on_progress=None) -> np.ndarray:
  """DAP (delusive adversarial perturbation, "P1"): targeted PGD that moves
  each image toward class ``(y + 1) mod num_classes`` — no random start,
  ``steps`` signed-gradient descent steps of ``step_size`` (default eps/5)
  on the cross-entropy at the shifted labels, projected, clipped to [0, 1].
  The poisoned images keep their true labels. Deterministic.
  """
  step_size = eps / 5 if step_size is None else step_size
  _check(eps, steps, step_size, chunk_size)
  target = (np.asarray(y) + 1) % num_classes
  return _pgd(logits_fn, x_u8, target, eps=eps, steps=steps,
              step_size=step_size, descend=True, key=None,
              chunk_size=chunk_size, on_progress=on_progress)


DURP_VALUES = ("sign", "uniform")


def durp_attack(x_u8: np.ndarray, y: np.ndarray, key: jax.Array, *,
                num_classes: int, eps: float = 0.3,
                values: str = "sign") -> np.ndarray:
  """DURP (delusive universal random perturbation, "P5"): one random
  perturbation per class, added to every image of that class and clipped
  to [0, 255]. Needs no victim.

  ``values``: "sign" draws every pixel of a class's perturbation as +eps
  or -eps with equal odds (the full budget, as a random sign vector);
  "uniform" draws it uniformly in [-eps, eps] (the HINT paper's wording). Both
  are whole grey levels, so the budget holds exactly. On MNIST the uniform
  draw is a weak poison (its mean |delta| is half the budget, and the clip
  at 0 removes the negative half on the black background): see
  experiments/results/attacks_mnist/README.md for the measured strengths.

  Returns:
    uint8 poisoned images; ``x_new - x_orig`` equals the class's
    perturbation wherever the clip is not active.
  """
  if values not in DURP_VALUES:
    raise ConfigError(f"DURP values must be one of {DURP_VALUES}, got "
                      f"{values!r}")
  levels = budget_levels(eps)
  x_u8, y = np.asarray(x_u8), np.asarray(y)
  if len(y) and (y.min() < 0 or y.max() >= num_classes):
    raise ConfigError(f"labels must be in [0, {num_classes})")
  shape = (num_classes,) + x_u8.shape[1:]
  if values == "sign":
    v = np.where(np.asarray(jax.random.bernoulli(key, 0.5, shape)), levels,
                 -levels).astype(np.int32)
  else:
    v = jax.random.uniform(key, shape, jnp.float32, -eps, eps)
    v = np.clip(np.round(np.asarray(v) * 255.0), -levels, levels).astype(
        np.int32)
  return np.clip(x_u8.astype(np.int32) + v[y], 0, 255).astype(np.uint8)
