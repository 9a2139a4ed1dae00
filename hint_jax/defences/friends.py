"""FRIENDS (Liu et al., NeurIPS 2022), as the HINT paper describes it: friendly
noise plus fresh Bernoulli noise.

Once, before epoch ``begin_epoch``, every training example gets a friendly
perturbation e that is as large as possible while the model's prediction
barely moves:

  min_e  KL(f(x) || f(clip(x + clamp(e)))) - mu * mean(clamp(e)^2),

with clamp to +-``clamp`` (16/255), started uniform in +-``init`` (8/255)
and optimised by ``steps`` (30) steps of SGD (lr 100, Nesterov momentum
0.9, lr x0.1 after half and three quarters of the steps), per chunk of
``chunk_size`` examples with the KL averaged over the chunk (the original
averages over its loader's batch). The perturbed images replace the
training images from then on; they are stored as uint8, so the noise is
rounded to whole grey levels (at most half a level, 0.002, off).

The Bernoulli part, +-``bernoulli`` (8/255) per pixel drawn afresh each
time an example is used, is a training-step augmentation
(``TrainConfig.bernoulli_noise``), on from the first epoch.
"""

import dataclasses
import math
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class FriendsConfig:
  begin_epoch: int = 5
  steps: int = 30
  lr: float = 100.0
  momentum: float = 0.9
  mu: float = 1.0
  clamp: float = 16 / 255
  init: float = 8 / 255
  bernoulli: float = 8 / 255
  chunk_size: int = 128
  seed: int = 0

  def validate(self) -> "FriendsConfig":
    if self.begin_epoch < 0 or self.steps < 1 or self.chunk_size < 1:
      raise ConfigError("FRIENDS needs begin_epoch >= 0, steps >= 1 and "
                        "chunk_size >= 1")
    for name in ("lr", "clamp", "init"):
      v = getattr(self, name)
      if not (math.isfinite(v) and 0 < v):
        raise ConfigError(f"FRIENDS {name} must be > 0, got {v}")
    for name in ("mu", "bernoulli", "momentum"):
      v = getattr(self, name)
      if not (math.isfinite(v) and v >= 0):
        raise ConfigError(f"FRIENDS {name} must be >= 0, got {v}")
    if self.clamp > 1 or self.bernoulli > 1:
      raise ConfigError("FRIENDS clamp and bernoulli are in [0, 1] pixel "
                        "units")
    return self


def friendly_objective(logits_fn, x, log_p0, e, *, mu, clamp):
  """``KL(p0 || f(clip(x + clamp(e))))`` averaged over the chunk, minus
  ``mu`` times the mean squared clamped noise; also returns both terms."""
  e = jnp.clip(e, -clamp, clamp)
  log_q = jax.nn.log_softmax(logits_fn(jnp.clip(x + e, 0.0, 1.0)), axis=-1)
  kl = jnp.mean(jnp.sum(jnp.exp(log_p0) * (log_p0 - log_q), axis=-1))
  size = jnp.mean(jnp.square(e))
  return kl - mu * size, (kl, size)


def _optimizer(cfg: FriendsConfig):
  sched = optax.piecewise_constant_schedule(
      cfg.lr, {cfg.steps // 2: 0.1, (cfg.steps // 4) * 3: 0.1})
  return optax.sgd(sched, momentum=cfg.momentum or None,
                   nesterov=cfg.momentum > 0)


def _make_step(cfg: FriendsConfig):
  tx = _optimizer(cfg)

  @xla_options.jit
  def step(logits_fn, x, log_p0, e, opt_state):
    (_, (kl, size)), g = jax.value_and_grad(
        friendly_objective, argnums=3, has_aux=True)(
            logits_fn, x, log_p0, e, mu=cfg.mu, clamp=cfg.clamp)
    updates, opt_state = tx.update(g, opt_state, e)
    return optax.apply_updates(e, updates), opt_state, kl, size

  return tx, step


def friendly_noise(logits_fn: Callable, x_u8: np.ndarray, key: jax.Array,
                   config: FriendsConfig, on_progress=None,
                   trace: Optional[list] = None) -> np.ndarray:
  """The friendly noise of every image, float32, clamped to +-clamp.

  Args:
    logits_fn: the current model, float images -> logits (inference mode).
    x_u8: uint8 images (n, H, W, C).
    key: the random start (chunk c uses ``fold_in(key, c)``).
    config: the settings.
    on_progress: optional ``(done, total)``.
    trace: optional list; each chunk appends its per-step (KL, mean e^2).
  """
  config.validate()
  x_u8 = np.asarray(x_u8)
  n, bs = len(x_u8), config.chunk_size
  tx, step = _make_step(config)
  logits_fn = logits_fn if isinstance(logits_fn, jax.tree_util.Partial) \
      else jax.tree_util.Partial(logits_fn)
  out = np.empty(x_u8.shape, np.float32)
  for c, start in enumerate(range(0, n, bs)):
    xb = x_u8[start:start + bs]
    m = len(xb)
    # Pad the last chunk to one compiled shape; padded rows are zeros and
    # only dilute the chunk mean of the last chunk.
    xp = np.concatenate([xb, np.zeros((bs - m,) + xb.shape[1:], xb.dtype)])
    x = jnp.asarray(xp, jnp.float32) / 255.0
    log_p0 = jax.nn.log_softmax(logits_fn(x), axis=-1)
    e = jax.random.uniform(jax.random.fold_in(key, c), x.shape, jnp.float32,
                           -config.init, config.init)
    opt_state = tx.init(e)
    steps = []
    for _ in range(config.steps):
      e, opt_state, kl, size = step(logits_fn, x, log_p0, e, opt_state)
      if trace is not None:
        steps.append((kl, size))
    if trace is not None:
      trace.append(np.asarray(jnp.asarray(steps)))
    out[start:start + m] = np.asarray(
        jnp.clip(e, -config.clamp, config.clamp))[:m]
    if on_progress is not None:
      on_progress(start + m, n)
  return out


def apply_friendly(x_u8: np.ndarray, e: np.ndarray) -> np.ndarray:
  """``clip(x + e)`` stored as uint8 (rounded to whole grey levels)."""
  x = np.asarray(x_u8, np.float32) + np.round(np.asarray(e) * 255.0)
  return np.clip(x, 0, 255).astype(np.uint8)


class Friends:
  """FRIENDS' friendly-noise part as pure functions over a state
  (``hint_jax.train.DefenceHook`` makes it ``fit``'s hook; the Bernoulli
  part is the trainer's ``bernoulli_noise`` augmentation).

  The state is a dict: ``"friends_levels"`` (the friendly noise in whole
  grey levels, int8 like the images, None before ``begin_epoch``) and
  ``"friends"`` (the JSON-ready record of that pass, or None).
  """

  def __init__(self, model, config: FriendsConfig, x_orig: np.ndarray,
               on_progress=None):
    self.model = model
    self.config = config.validate()
    self.x_orig = np.asarray(x_orig)
    self.on_progress = on_progress

  @staticmethod
  def init() -> dict:
    return {"friends_levels": None, "friends": None}

  def check(self, state: dict) -> dict:
    """``state`` (e.g. read back from a checkpoint) typed, after checking
    it fits this training set.

    Raises:
      DataError: it does not.
    """
    levels = state.get("friends_levels")
    if levels is None:
      return self.init()
    levels = np.asarray(levels, np.int8)
    if levels.shape != self.x_orig.shape:
      raise DataError("FRIENDS state does not match the training set")
    return {"friends_levels": levels, "friends": state.get("friends")}

  def before_epoch(self, state, epoch: int, train_state,
                   x_train: np.ndarray):
    """Returns ``(state, x_train, seconds)``."""
    if epoch != self.config.begin_epoch:
      return state, x_train, 0.0
    t0 = time.perf_counter()
    trace = []
    e = friendly_noise(
        self.model.logits_fn(train_state.params, train_state.model_state),
        x_train, jax.random.key(self.config.seed), self.config,
        on_progress=self.on_progress, trace=trace)
    x_new = apply_friendly(x_train, e)
    levels = (x_new.astype(np.int16) - x_train.astype(np.int16)).astype(
        np.int8)
    seconds = time.perf_counter() - t0
    t = np.stack(trace)   # (chunks, steps, 2)
    record = {"epoch": epoch, "seconds": seconds,
              "kl_first": float(t[:, 0, 0].mean()),
              "kl_last": float(t[:, -1, 0].mean()),
              "mean_sq_first": float(t[:, 0, 1].mean()),
              "mean_sq_last": float(t[:, -1, 1].mean()),
              "mean_abs_levels": float(np.abs(levels).mean())}
    return {"friends_levels": levels, "friends": record}, x_new, seconds

  def images(self, state) -> np.ndarray:
    """The received images with the state's friendly noise added."""
    levels = state["friends_levels"]
    if levels is None:
      return self.x_orig
    return np.clip(self.x_orig.astype(np.int16) + levels, 0,
                   255).astype(np.uint8)

  @staticmethod
  def summary(state) -> dict:
    record = state["friends"]
    return {"friends": record,
            "friends_seconds": 0.0 if record is None else record["seconds"]}
