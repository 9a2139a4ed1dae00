"""ATDA: adversarial training against delusive adversaries (Tao et al.,
2021), as the HINT paper describes it, with the paper's FAT-style early stop
(Zhang et al., 2020).

Every training step replaces its batch by adversarial examples of the
current model: PGD on the cross-entropy at the true labels from a random
start in the budget's ball, ``steps`` steps of ``step_size``, projected
onto the ball and [0, 1]. The norm is L2 by default (the HINT paper: the
reference code the paper cites defaults to L2, and the paper's numbers only
fit it): the start is uniform in the L2 ball, each step moves along the
per-example L2-normalised gradient, and the projection rescales delta onto
the ball. ``norm="linf"``: uniform start in the L-inf cube, signed steps,
a clip. With ``tau`` set (FAT), an example stops
moving once it has been misclassified and ``tau`` more steps were taken
while it stayed misclassified: each check that finds it misclassified
spends one of ``tau`` extra steps, and a check that finds it misclassified
with none left freezes it for the rest of the attack. ``tau=None`` is plain
PGD adversarial training.

The attack runs the network in inference mode (BatchNorm with running
statistics, so examples are independent) and is unrolled inside the jitted
training step: XLA:CPU runs convolutions in a ``lax`` loop body about ten
times slower (see the README's performance notes).
"""

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from hint_jax.errors import ConfigError

NORMS = ("l2", "linf")
# The L2 projection lands at eps * (1 - _L2_SHRINK): float32 rounding of the
# rescaled delta then never leaves the ball.
_L2_SHRINK = 1e-6


@dataclasses.dataclass(frozen=True)
class AtdaConfig:
  """Attributes:
    eps: budget in the chosen norm, [0, 1] pixel units (the HINT paper: 0.25
      against untargeted attacks, 0.062 against targeted ones).
    norm: "l2" (the default, as the reference code) or "linf".
    steps: PGD steps (7-10 in the paper).
    step_size: step length; None: eps / 5.
    tau: FAT's extra steps after the first misclassification; None: plain
      PGD adversarial training (no early stop).
  """
  eps: float = 0.25
  norm: str = "l2"
  steps: int = 10
  step_size: Optional[float] = None
  tau: Optional[int] = 0

  def validate(self) -> "AtdaConfig":
    if not (math.isfinite(self.eps) and 0 < self.eps <= 1):
      raise ConfigError(f"ATDA eps must be in (0, 1], got {self.eps}")
    if self.norm not in NORMS:
      raise ConfigError(f"ATDA norm must be one of {NORMS}, got "
                        f"{self.norm!r}")
    if self.steps < 1:
      raise ConfigError(f"ATDA needs steps >= 1, got {self.steps}")
    if self.step_size is not None and not (
        math.isfinite(self.step_size) and self.step_size > 0):
      raise ConfigError(f"ATDA step size must be > 0, got {self.step_size}")
    if self.tau is not None and self.tau < 0:
      raise ConfigError(f"FAT tau must be >= 0, got {self.tau}")
    return self

  @property
  def alpha(self) -> float:
    return self.eps / 5 if self.step_size is None else self.step_size


def _l2_norms(v):
  """Per-example L2 norms, shaped to broadcast against ``v``."""
  flat = v.reshape(v.shape[0], -1).astype(jnp.float32)
  return jnp.sqrt(jnp.sum(flat * flat, axis=1)).reshape(
      (v.shape[0],) + (1,) * (v.ndim - 1))


def _l2_normalized(g):
  """``g / ||g||_2`` per example (0 where the gradient is 0)."""
  norm = _l2_norms(g)
  return jnp.where(norm > 0, g / jnp.maximum(norm, 1e-30), 0.0).astype(g.dtype)


def l2_project(delta, eps):
  """Rescales each example's ``delta`` onto the L2 ball of radius ``eps``
  (just inside it, see ``_L2_SHRINK``) where it lies outside."""
  norm = _l2_norms(delta)
  scale = jnp.where(norm > eps, eps * (1.0 - _L2_SHRINK) / norm, 1.0)
  return (delta * scale).astype(delta.dtype)


def l2_ball_uniform(key, shape, eps, dtype=jnp.float32):
  """Per example, a point uniform in the L2 ball of radius ``eps``: a
  Gaussian direction times ``eps * U^(1/d)``."""
  k_dir, k_rad = jax.random.split(key)
  direction = _l2_normalized(jax.random.normal(k_dir, shape, jnp.float32))
  d = math.prod(shape[1:])
  radius = eps * (1.0 - _L2_SHRINK) * jax.random.uniform(
      k_rad, (shape[0],) + (1,) * (len(shape) - 1)) ** (1.0 / d)
  return (direction * radius).astype(dtype)


def early_stopped_pgd(logits_fn, x, y, key, config: AtdaConfig):
  """The inner attack on a batch of float images in [0, 1].

  Returns:
    ``(x_adv, moved, first_mis)``: the adversarial images, how many steps
    each example moved, and the check (0-based) at which each was first
    misclassified (``config.steps`` if never).
  """
  eps, alpha = config.eps, config.alpha
  n = x.shape[0]
  if config.norm == "l2":
    delta = l2_ball_uniform(key, x.shape, eps, x.dtype)
  else:
    delta = jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
  delta = jnp.clip(x + delta, 0.0, 1.0) - x
  left = jnp.full((n,), 0 if config.tau is None else config.tau, jnp.int32)
  frozen = jnp.zeros((n,), bool)
  moved = jnp.zeros((n,), jnp.int32)
  first_mis = jnp.full((n,), config.steps, jnp.int32)

  def loss(d):
    logits = logits_fn(jnp.clip(x + d, 0.0, 1.0))
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
        logits, y)), logits

  shape = (n,) + (1,) * (x.ndim - 1)
  for k in range(config.steps):   # unrolled on purpose (see module doc)
    (_, logits), g = jax.value_and_grad(loss, has_aux=True)(delta)
    mis = jnp.argmax(logits, -1) != y
    first_mis = jnp.where(mis & (first_mis == config.steps), k, first_mis)
    if config.tau is not None:
      frozen = frozen | (mis & (left == 0))
      left = jnp.where(mis & ~frozen, left - 1, left)
    go = ~frozen
    if config.norm == "l2":
      stepped = l2_project(delta + alpha * _l2_normalized(g), eps)
    else:
      stepped = jnp.clip(delta + alpha * jnp.sign(g), -eps, eps)
    # Clipping x + delta to [0, 1] only shrinks |delta| coordinate-wise, so
    # it keeps delta in either ball.
    delta = jnp.where(go.reshape(shape), stepped, delta)
    delta = jnp.clip(x + delta, 0.0, 1.0) - x
    moved = moved + go.astype(jnp.int32)
  return jax.lax.stop_gradient(x + delta), moved, first_mis


def make_adversary(model, config: AtdaConfig):
  """``(params, model_state, key, x, y) -> x_adv`` for the trainer."""
  config.validate()

  def adversary(params, model_state, key, x, y):
    return early_stopped_pgd(model.logits_fn(params, model_state), x, y, key,
                             config)[0]

  return adversary
