"""MetaPoison: a targeted attack for training from scratch, through
unrolled training steps of an ensemble of surrogate models (see
`hint_jax.attacks.targeted`)."""

import dataclasses
import functools
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.attacks._targeted_common import (_check_images, _check_opt,
                                               _finish, _project, _to_float)
from hint_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class MetaPoisonConfig:
  """MetaPoison (Huang et al. 2020) as the HINT paper sets it, natively in JAX.

  Attributes:
    eps: L-inf budget (8/255).
    steps: craft steps (Adam on delta). The original runs 60.
    lr: Adam step on delta in [0, 1] pixel units.
    unroll: SGD steps unrolled through each surrogate (2).
    inner_lr: the surrogates' SGD learning rate, in the unrolled steps and
      when they advance.
    clean_batch: clean images joining all the poisons in every unrolled
      (and advancing) SGD step.
    kappa: Carlini-Wagner confidence margin. The authors' code clamps the
      margin at -100 (``carlini(..., clamp=-100)`` in their utils), so the
      loss keeps pushing the intended class's lead long after the target
      flips on the surrogates; 100 does the same here. kappa = 0 stops at
      the flip: in the cpu profile's trial 0 the ensemble's loss ended at
      0 (no gradient left) while a victim trained from scratch on those
      poisons still missed.
    advance: after every craft step, each surrogate takes one real SGD
      step on poisons + clean images, so the ensemble keeps training at its
      staggered stages as in the original.
  """
  eps: float = 8 / 255
  steps: int = 60
  lr: float = 0.01
  unroll: int = 2
  inner_lr: float = 0.1
  clean_batch: int = 64
  kappa: float = 100.0
  advance: bool = True
  members: str = "auto"

  def member_mode(self) -> str:
    """How the ensemble is evaluated: "vmap" (one batched program; the
    members' stacked kernels become grouped convolutions) or "loop" (one
    compiled program per member, run once for each; ordinary
    convolutions). "auto": "loop" on the CPU, where XLA's grouped
    convolutions are slow (6.3x slower per step for 4 resnet_tiny members,
    experiments/bench_metapoison.py), else "vmap"."""
    if self.members == "auto":
      return "loop" if jax.default_backend() == "cpu" else "vmap"
    return self.members

  def validate(self):
    _check_opt(self.eps, self.steps, self.lr)
    if not isinstance(self.unroll, int) or self.unroll < 1:
      raise ConfigError(f"unroll must be >= 1, got {self.unroll}")
    if not (self.inner_lr > 0 and self.clean_batch >= 0
            and self.kappa >= 0):
      raise ConfigError("inner_lr must be > 0, clean_batch and kappa >= 0")
    if self.members not in ("auto", "vmap", "loop"):
      raise ConfigError(f"members must be auto, vmap or loop, got "
                        f"{self.members!r}")
    return self


def cw_loss(logits: jax.Array, intended: jax.Array, kappa: float = 0.0):
  """Carlini-Wagner margin toward ``intended``: ``max(max_{j != c} z_j -
  z_c, -kappa)`` per example (0 or below once the class wins by kappa)."""
  z_c = jnp.take_along_axis(logits, intended[:, None], axis=-1)[:, 0]
  others = jnp.where(jax.nn.one_hot(intended, logits.shape[-1], dtype=bool),
                     -jnp.inf, logits)
  return jnp.maximum(jnp.max(others, axis=-1) - z_c, -kappa)


def _sgd_step(model, params, model_state, x, y, lr):
  def loss(p):
    logits, new_state = model.apply_train(p, model_state, x)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, y)), new_state
  g, new_state = jax.grad(loss, has_aux=True)(params)
  return jax.tree.map(lambda p, d: p - lr * d, params, g), new_state


def _mp_member_loss(model, cfg, params, model_state, x_p, y_p, clean_x,
                    clean_y, x_t, c_t):
  """The target's CW loss after each of ``cfg.unroll`` SGD steps of one
  surrogate on the poisons plus clean batches (``clean_x``: (unroll, b,
  ...)), averaged over the steps as the authors' code does (their meta-loss
  is the mean of the target losses after unrolled steps 1..K)."""
  total = 0.0
  for k in range(cfg.unroll):
    x = jnp.concatenate([x_p, clean_x[k]])
    y = jnp.concatenate([y_p, clean_y[k]])
    params, model_state = _sgd_step(model, params, model_state, x, y,
                                    cfg.inner_lr)
    logits = model.apply_eval(params, model_state, x_t)
    total = total + jnp.mean(cw_loss(logits, c_t, cfg.kappa))
  return total / cfg.unroll


def unrolled_target_loss(model, params, model_state, x_poison, y_poison,
                         clean_x, clean_y, target_x, intended, config:
                         MetaPoisonConfig) -> jax.Array:
  """MetaPoison's objective for one surrogate: the target's CW loss toward
  ``intended`` after each of ``config.unroll`` SGD steps (their mean) on
  the float poisons ``x_poison`` plus the clean batches ``clean_x[k]``
  (float, shape (unroll, b, H, W, C)). ``target_x``: float (1, H, W, C)."""
  return _mp_member_loss(model, config, params, model_state, x_poison,
                         jnp.asarray(y_poison, jnp.int32), clean_x,
                         jnp.asarray(clean_y, jnp.int32), target_x,
                         jnp.asarray(intended, jnp.int32).reshape(1))


@functools.partial(xla_options.jit, static_argnames=("model", "cfg", "opt"),
                   donate_argnums=(4, 5))
def _mp_step(ensemble, x0, y_p, x_t, delta, opt_state, clean_x, clean_y, c_t,
             *, model, cfg, opt):
  def objective(d):
    x_p = jnp.clip(x0 + d, 0.0, 1.0)
    per_member = jax.vmap(
        lambda p, s, cx, cy: _mp_member_loss(model, cfg, p, s, x_p, y_p, cx,
                                             cy, x_t, c_t))(
            ensemble[0], ensemble[1], clean_x, clean_y)
    return jnp.mean(per_member)

  loss, grad = jax.value_and_grad(objective)(delta)
  updates, opt_state = opt.update(grad, opt_state, delta)
  delta = _project(x0, delta + updates, cfg.eps)
  if cfg.advance:   # each member one real SGD step on the current poisons
    x_p = jnp.clip(x0 + delta, 0.0, 1.0)
    ensemble = jax.vmap(lambda p, s, cx, cy: _sgd_step(
        model, p, s, jnp.concatenate([x_p, cx[0]]),
        jnp.concatenate([y_p, cy[0]]), cfg.inner_lr))(
            ensemble[0], ensemble[1], clean_x, clean_y)
  return ensemble, delta, opt_state, loss


@functools.partial(xla_options.jit, static_argnames=("model", "cfg"))
def _mp_member_grad(params, model_state, x0, y_p, x_t, delta, clean_x,
                    clean_y, c_t, *, model, cfg):
  """One member's unrolled target loss and its gradient in delta (the
  "loop" mode's per-member program)."""
  return jax.value_and_grad(lambda d: _mp_member_loss(
      model, cfg, params, model_state, jnp.clip(x0 + d, 0.0, 1.0), y_p,
      clean_x, clean_y, x_t, c_t))(delta)


@functools.partial(xla_options.jit, static_argnames=("model", "cfg"))
def _mp_member_advance(params, model_state, x0, y_p, delta, clean_x,
                       clean_y, *, model, cfg):
  x_p = jnp.clip(x0 + delta, 0.0, 1.0)
  return _sgd_step(model, params, model_state,
                   jnp.concatenate([x_p, clean_x[0]]),
                   jnp.concatenate([y_p, clean_y[0]]), cfg.inner_lr)


@functools.partial(xla_options.jit, static_argnames=("opt",), donate_argnums=(1, 2))
def _mp_update(x0, delta, opt_state, grad, eps, *, opt):
  updates, opt_state = opt.update(grad, opt_state, delta)
  return _project(x0, delta + updates, eps), opt_state


def _mp_step_loop(members, x0, y_p, x_t, delta, opt_state, clean_x, clean_y,
                  c_t, *, model, cfg, opt):
  """`_mp_step` with the members one after another: the same objective
  (the mean of the members' losses; its gradient the mean of theirs), the
  same Adam update and advance. ``members``: a list of (params, state)."""
  losses, grads = [], []
  for i, (p, s) in enumerate(members):
    loss, g = _mp_member_grad(p, s, x0, y_p, x_t, delta, clean_x[i],
                              clean_y[i], c_t, model=model, cfg=cfg)
    losses.append(loss)
    grads.append(g)
  grad = sum(grads[1:], grads[0]) / len(grads)
  delta, opt_state = _mp_update(x0, delta, opt_state, grad,
                                jnp.float32(cfg.eps), opt=opt)
  if cfg.advance:
    members = [_mp_member_advance(p, s, x0, y_p, delta, clean_x[i],
                                  clean_y[i], model=model, cfg=cfg)
               for i, (p, s) in enumerate(members)]
  return members, delta, opt_state, jnp.mean(jnp.stack(losses))


def trainer_advance(trainer, states: Sequence, clean_x_u8: np.ndarray,
                    clean_y: np.ndarray, steps: int, key: jax.Array):
  """An ``advance_fn`` for `metapoison` that continues each member's own
  clean training: after every craft step, member i takes ``steps`` real
  training steps of ``trainer`` (its optimizer, momentum and schedule
  state carried in ``states[i]``, a ``TrainState``) on batches of the clean
  images drawn without replacement. This is the original's "clean"
  trajectory, where every member trains on clean data between
  meta-gradients (there a whole epoch per craft step).

  ``states`` are the members' train states in `metapoison`'s order; their
  buffers are donated to the training steps, so the caller must not use
  them afterwards. The returned function's ``states`` attribute holds the
  members' current train states."""
  if not isinstance(steps, int) or steps < 1:
    raise ConfigError(f"member steps must be an int >= 1, got {steps!r}")
  bs = trainer.config.batch_size
  n = len(clean_x_u8)
  if steps * bs > n:
    raise ConfigError(f"{steps} member steps of {bs} images exceed the {n} "
                      "clean images (at most one epoch per craft step)")
  states = list(states)
  x_dev, y_dev = jnp.asarray(clean_x_u8), jnp.asarray(clean_y)

  def advance(i, params, model_state, step):
    st = states[i].replace(params=params, model_state=model_state)
    perm = jax.random.permutation(
        jax.random.fold_in(jax.random.fold_in(key, step), i), n)
    idx = np.asarray(perm[:steps * bs]).reshape(steps, bs).astype(np.int32)
    st, _ = trainer.train_steps(st, x_dev, y_dev, jnp.asarray(idx))
    states[i] = st
    return st.params, st.model_state

  advance.states = states
  return advance


def metapoison(model, surrogates: Sequence[Tuple[object, object]],
               base_u8: np.ndarray, base_y: np.ndarray, target_u8: np.ndarray,
               intended_class: int, clean_x_u8: np.ndarray,
               clean_y: np.ndarray, key: jax.Array, *,
               config: MetaPoisonConfig = MetaPoisonConfig(),
               advance_fn: Optional[Callable] = None,
               on_progress=None) -> Tuple[np.ndarray, np.ndarray]:
  """MetaPoison: poisons that, once trained on, make the target look like
  the intended class to models at every stage of training.

  For an ensemble of surrogate models at staggered stages of clean training
  (``surrogates``: e.g. clean-trained models stopped at different epochs), every craft step
  unrolls ``config.unroll`` SGD steps of each member on the poisons together
  with fresh clean images, takes the Carlini-Wagner loss of the target
  toward ``intended_class`` under the updated weights, averages it over the
  ensemble (vmapped: one compiled step for all members) and moves delta by
  Adam, differentiating through the unrolled steps. The members then
  advance: by ``advance_fn`` if given (`trainer_advance`: each continues
  its own clean training, as in the original), else by one SGD step on the
  poisons plus clean images (``config.advance``). No augmentation, as the
  HINT paper's attack settings say. Not reproduced from the original: its ReColorAdv colour
  perturbation, the periodic re-initialisation of members that reach the
  end of their schedule, and its meta-gradients per craft step (there
  every member adds one for each batch of its epoch that holds poisons,
  the poisons at their natural share of the batch; here each member gives
  one, on all the poisons together with ``clean_batch`` clean images).

  Args:
    model: a ``hint_jax.models.Model`` (BatchNorm runs in train mode inside
      the unrolled steps, as in real training).
    surrogates: ``(params, model_state)`` pairs, all of ``model``.
    base_u8, base_y: the base images and their labels.
    target_u8, intended_class: the target and the class it should get.
    clean_x_u8, clean_y: clean training images the unrolled batches draw
      from.
    key: PRNG key of the clean-batch draws.
    config: see `MetaPoisonConfig`.
    advance_fn: optional ``(member, params, model_state, step) ->
      (params, model_state)`` that replaces ``config.advance``'s built-in
      SGD step: after craft step ``step`` each member ``member`` (its index
      in ``surrogates``) advances by it, e.g. `trainer_advance` (members
      continuing their own clean training, as the original does).
    on_progress: optional ``(done, total)`` callback, once per step.

  Returns:
    ``(poisons_u8, losses)``: the poisons and the ensemble's mean CW loss
    at each step (before that step's update).
  """
  config.validate()
  base_u8, target_u8 = _check_images(base_u8, target_u8)
  base_y = np.asarray(base_y)
  if base_y.shape != (len(base_u8),):
    raise ConfigError(f"need one label per base image, got {base_y.shape}")
  if not surrogates:
    raise ConfigError("MetaPoison needs at least one surrogate model")
  clean_x_u8, clean_y = np.asarray(clean_x_u8), np.asarray(clean_y)
  b = config.clean_batch
  if b > len(clean_x_u8):
    raise ConfigError(f"clean_batch {b} is larger than the {len(clean_x_u8)} "
                      "clean images given")
  m = len(surrogates)
  mode = config.member_mode()
  if mode == "vmap":
    ensemble = jax.tree.map(lambda *a: jnp.stack(a),
                            *[(p, s) for p, s in surrogates])
    step = _mp_step
  else:
    ensemble = [(p, s) for p, s in surrogates]
    step = _mp_step_loop
  if advance_fn is not None:   # the members move by advance_fn only
    config = dataclasses.replace(config, advance=False)
  x0 = _to_float(base_u8)
  y_p = jnp.asarray(base_y, jnp.int32)
  x_t = _to_float(target_u8)[None]
  c_t = jnp.asarray([intended_class], jnp.int32)
  opt = optax.adam(config.lr)
  delta = jnp.zeros_like(x0)
  opt_state = opt.init(delta)
  losses = []
  for s in range(config.steps):
    idx = np.asarray(jax.random.randint(
        jax.random.fold_in(key, s), (m, config.unroll, b), 0,
        len(clean_x_u8)))
    clean_x = _to_float(clean_x_u8[idx])
    cy = jnp.asarray(clean_y[idx], jnp.int32)
    ensemble, delta, opt_state, loss = step(
        ensemble, x0, y_p, x_t, delta, opt_state, clean_x, cy, c_t,
        model=model, cfg=config, opt=opt)
    losses.append(loss)
    if advance_fn is not None:
      ensemble = _advance_members(ensemble, advance_fn, s, mode)
    if on_progress is not None:
      on_progress(s + 1, config.steps)
  losses = np.asarray(jnp.stack(losses)) if losses else np.zeros(0)
  return _finish(base_u8, x0, delta, config.eps, losses)


def _advance_members(ensemble, advance_fn, step, mode):
  """Moves every member by ``advance_fn``; the "vmap" mode's stacked
  ensemble is taken apart and stacked again around it."""
  if mode != "vmap":
    return [advance_fn(i, p, s, step) for i, (p, s) in enumerate(ensemble)]
  m = len(jax.tree.leaves(ensemble)[0])
  moved = [advance_fn(i, *jax.tree.map(lambda a: a[i], ensemble), step)
           for i in range(m)]
  return jax.tree.map(lambda *a: jnp.stack(a), *moved)
