"""Gradient matching (Witches' Brew): a targeted attack for training from
scratch, through a surrogate model's parameter gradients (see
`hint_jax.attacks.targeted`)."""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.attacks._targeted_common import (_check_images, _check_opt,
                                               _finish, _project, _to_float)
from hint_jax.errors import ConfigError, NumericalError


@dataclasses.dataclass(frozen=True)
class GradientMatchingConfig:
  """Witches' Brew (Geiping et al. 2021) as the HINT paper sets it.

  Attributes:
    eps: L-inf budget (16/255).
    steps: signed-Adam steps per restart (250).
    restarts: independent random starts; the one with the lowest final
      objective is kept (8).
    lr: Adam step in [0, 1] pixel units. The original's 0.1 is in units of
      normalised pixels (CIFAR-10's channel std is about 0.25), which is
      0.025 here; divided by 10 at 3/8, 5/8 and 7/8 of the steps, as there.
    restart_batch: restarts optimised together in one vmapped step (memory
      against speed). None: one at a time on the CPU, where vmapping them
      turns 36 of the step's 82 convolutions into grouped ones that XLA's
      CPU backend runs slowly (2.6x slower per step for 4 restarts of
      resnet_tiny, experiments/bench_gradient_matching.py), all together
      elsewhere. The result does not depend on it.
  """
  eps: float = 16 / 255
  steps: int = 250
  restarts: int = 8
  lr: float = 0.025
  restart_batch: Optional[int] = None

  def validate(self):
    _check_opt(self.eps, self.steps, self.lr)
    if not isinstance(self.restarts, int) or self.restarts < 1:
      raise ConfigError(f"restarts must be >= 1, got {self.restarts}")
    if self.restart_batch is not None and self.restart_batch < 1:
      raise ConfigError("restart_batch must be >= 1 (or None for all)")
    return self


def _flat(tree):
  return jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(tree)])


def param_gradient(logits_apply, params, model_state, x, y) -> jax.Array:
  """The flattened gradient w.r.t. ``params`` of the mean cross-entropy of
  ``(x, y)`` in inference mode (BatchNorm running statistics)."""
  def loss(p):
    logits = logits_apply(p, model_state, x)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, y))
  return _flat(jax.grad(loss)(params))


def gradient_alignment(logits_apply, params, model_state, x_poison, y_poison,
                       target_grad) -> jax.Array:
  """``cos(grad of the poisons' loss, target_grad)`` over all parameters
  (the quantity gradient matching raises)."""
  g = param_gradient(logits_apply, params, model_state, x_poison, y_poison)
  return jnp.vdot(g, target_grad) / (
      jnp.linalg.norm(g) * jnp.linalg.norm(target_grad) + 1e-30)


@functools.partial(xla_options.jit, static_argnames=("augment", "opt", "logits_apply"),
                   donate_argnums=(5, 6))
def _gm_step(params, model_state, x0, y, target_grad, delta, opt_state, keys,
             eps, *, logits_apply, augment, opt):
  """One signed-Adam step of every restart in ``delta`` (R, n, H, W, C)."""
  def objective(d, key):
    x = jnp.clip(x0 + d, 0.0, 1.0)
    if augment is not None:
      x = augment(key, x)
    return 1.0 - gradient_alignment(logits_apply, params, model_state, x, y,
                                    target_grad)

  losses, grads = jax.vmap(jax.value_and_grad(objective))(delta, keys)
  updates, opt_state = opt.update(jnp.sign(grads), opt_state, delta)
  delta = _project(x0[None], delta + updates, eps)
  return delta, opt_state, losses


def gradient_matching(model, params, model_state, base_u8: np.ndarray,
                      base_y: np.ndarray, target_u8: np.ndarray,
                      intended_class: int, key: jax.Array, *,
                      config: GradientMatchingConfig = GradientMatchingConfig(),
                      augment: Optional[Callable] = None, on_progress=None
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """Gradient matching ("Witches' Brew"): makes the training gradient of the
  poisons point where the gradient of the adversarial target loss points.

  Minimises ``1 - cos(grad_theta CE(f(A(b + delta)), y_b),
  grad_theta CE(f(t), y_adv))`` over ``|delta| <= eps`` with signed Adam, for
  ``config.restarts`` random starts (vmapped), keeping the restart with the
  lowest final objective. theta is every parameter of the victim ``model``
  trained on clean data, in inference mode; ``A`` is an optional
  differentiable augmentation drawn afresh every step (e.g.
  ``hint_jax.train.augment.random_shift_flip``), so the poisons work under
  the victim's own augmentation. All poisons enter one gradient (the
  original accumulates the same sum over batches).

  Args:
    model: a ``hint_jax.models.Model``; ``params``/``model_state`` its
      clean-trained weights.
    base_u8, base_y: the base images and their (kept) labels.
    target_u8: the target image; ``intended_class``: the class it should
      be given.
    key: PRNG key of the random starts and augmentations.
    config: see `GradientMatchingConfig`.
    augment: optional ``(key, x) -> x``, differentiable in ``x``.
    on_progress: optional ``(done, total)`` callback, once per step.

  Returns:
    ``(poisons_u8, losses)``: the kept restart's poisons and the objective
    of every restart at every step, shape (steps, restarts).
  """
  config.validate()
  base_u8, target_u8 = _check_images(base_u8, target_u8)
  base_y = np.asarray(base_y)
  if base_y.shape != (len(base_u8),):
    raise ConfigError(f"need one label per base image, got {base_y.shape}")
  logits_apply = model._logits_apply  # pylint: disable=protected-access
  x0 = _to_float(base_u8)
  y = jnp.asarray(base_y, jnp.int32)
  target_grad = xla_options.jit(param_gradient, static_argnums=0)(
      logits_apply, params, model_state, _to_float(target_u8)[None],
      jnp.asarray([intended_class], jnp.int32))
  n_batch = config.restart_batch or (
      1 if jax.default_backend() == "cpu" else config.restarts)
  steps = config.steps
  schedule = optax.piecewise_constant_schedule(
      config.lr, {int(steps * f): 0.1 for f in (3 / 8, 5 / 8, 7 / 8)})
  opt = optax.adam(schedule)
  k_init, k_aug = jax.random.split(key)
  best = (np.inf, None, None)
  all_losses = []
  done, total = 0, steps * config.restarts
  for r0 in range(0, config.restarts, n_batch):
    r = min(n_batch, config.restarts - r0)
    # Restart j's start and step-s augmentation keys depend on (j, s) only,
    # not on how the restarts are batched.
    ids = jnp.arange(r0, r0 + r)
    delta = jax.vmap(lambda j: jax.random.uniform(
        jax.random.fold_in(k_init, j), x0.shape, jnp.float32, -config.eps,
        config.eps))(ids)
    delta = _project(x0[None], delta, config.eps)
    opt_state = opt.init(delta)
    losses = []
    for s in range(steps):
      k_step = jax.random.fold_in(k_aug, s)
      keys = jax.vmap(lambda j: jax.random.fold_in(k_step, j))(ids)
      delta, opt_state, loss = _gm_step(
          params, model_state, x0, y, target_grad, delta, opt_state, keys,
          jnp.float32(config.eps), logits_apply=logits_apply,
          augment=augment, opt=opt)
      losses.append(loss)
      done += r
      if on_progress is not None:
        on_progress(done, total)
    # The kept restart is judged without augmentation, on the final delta.
    final = jax.vmap(lambda d: 1.0 - gradient_alignment(
        logits_apply, params, model_state, jnp.clip(x0 + d, 0.0, 1.0), y,
        target_grad))(delta)
    final = np.asarray(final)
    i = int(np.argmin(final))
    if final[i] < best[0]:
      best = (final[i], delta[i], r0 + i)
    all_losses.append(np.asarray(jnp.stack(losses)) if losses else
                      np.zeros((0, r)))
  if best[1] is None:
    raise NumericalError("gradient matching: every restart ended with a "
                         "non-finite objective")
  return _finish(base_u8, x0, best[1], config.eps,
                 np.concatenate(all_losses, axis=1))
