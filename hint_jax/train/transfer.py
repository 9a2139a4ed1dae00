"""The transfer-learning scenario of the targeted attacks, as the HINT paper
sets it.

Pre-train the whole network on 90% of the clean training set, freeze the
feature extractor, re-initialise the top layer (theta_top, ``params["head"]``)
and train only it on the remaining 10%, of which the poisons are a part.

With the extractor frozen (inference-mode BatchNorm), training the top
layer is softmax regression on the fixed features phi(x): the features are
computed once per call (and again whenever a hook changes the images)
and the epoch runs as one jitted ``lax.scan`` over minibatches.
"""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.errors import ConfigError
from hint_jax.models import TOP_LAYER


def transfer_split(n: int, key: jax.Array, pretrain_fraction: float = 0.9
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """A keyed split of ``range(n)`` into (pre-training, fine-tuning) indices,
  ``round(pretrain_fraction n)`` of them for pre-training (CIFAR-10: 49000
  -> 44100 + 4900)."""
  if not 0.0 < pretrain_fraction < 1.0:
    raise ConfigError(f"pretrain_fraction must be in (0, 1), got "
                      f"{pretrain_fraction}")
  m = int(round(pretrain_fraction * n))
  if m == 0 or m == n:
    raise ConfigError(f"{n} examples leave one side of the transfer split "
                      "empty")
  perm = np.asarray(jax.random.permutation(key, n))
  return np.sort(perm[:m]), np.sort(perm[m:])


def reinit_top_layer(model, params, key: jax.Array):
  """``params`` with theta_top replaced by a fresh initialisation (the
  model's own initialiser; every other layer kept as it is)."""
  fresh, _ = model.init(key)
  return {**params, TOP_LAYER: fresh[TOP_LAYER]}


@dataclasses.dataclass(frozen=True)
class TopLayerConfig:
  """SGD on theta_top alone.

  Attributes:
    epochs: passes over the fine-tuning set.
    batch_size: examples per step (the last partial batch is dropped, a
      different one each epoch).
    lr, momentum: SGD.
    weight_decay: L2 on theta_top, added to the gradient.
  """
  epochs: int = 20
  batch_size: int = 128
  lr: float = 0.1
  momentum: float = 0.9
  weight_decay: float = 5e-4

  def validate(self):
    if not isinstance(self.epochs, int) or self.epochs < 0:
      raise ConfigError(f"epochs must be a whole number >= 0, got "
                        f"{self.epochs}")
    if self.batch_size < 1 or not self.lr > 0:
      raise ConfigError("batch_size must be >= 1 and lr > 0")
    if not 0 <= self.momentum < 1 or self.weight_decay < 0:
      raise ConfigError("momentum must be in [0, 1), weight_decay >= 0")
    return self


def _optimizer(cfg: TopLayerConfig):
  sgd = optax.sgd(cfg.lr, momentum=cfg.momentum or None)
  if cfg.weight_decay:
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), sgd)
  return sgd


def _batches(key, n: int, batch_size: int):
  """The epoch's minibatches: a keyed permutation of ``range(n)`` cut into
  whole batches (the last partial one dropped)."""
  steps = n // batch_size
  order = jax.random.permutation(key, n)[:steps * batch_size]
  return order.reshape(steps, batch_size)


def _head_step(top, opt_state, phi, y, opt):
  """One SGD step of theta_top on the features ``phi`` of a batch."""
  def loss(t):
    logits = phi @ t["kernel"] + t["bias"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, y))

  updates, opt_state = opt.update(jax.grad(loss)(top), opt_state, top)
  return optax.apply_updates(top, updates), opt_state


@functools.partial(xla_options.jit, static_argnames=("opt", "batch_size"))
def _top_epoch(top, opt_state, phi, y, key, *, opt, batch_size):
  def step(carry, idx):
    return _head_step(*carry, phi[idx], y[idx], opt), None

  (top, opt_state), _ = jax.lax.scan(
      step, (top, opt_state), _batches(key, phi.shape[0], batch_size))
  return top, opt_state


@functools.partial(xla_options.jit, static_argnames=("opt", "adversary"))
def _top_step_adversarial(top, opt_state, body, model_state, features, xb,
                          yb, key, *, opt, adversary):
  """One adversarial-training step of theta_top: crafts ``adversary``
  examples of the batch against the current theta_top and the frozen body,
  then takes the SGD step on their features."""
  scale = 255.0 if jnp.issubdtype(xb.dtype, jnp.integer) else 1.0
  xb = xb.astype(jnp.float32) / scale
  x_adv = adversary({**body, TOP_LAYER: top}, model_state, key, xb, yb)
  phi = jax.lax.stop_gradient(features(x_adv))
  return _head_step(top, opt_state, phi, yb, opt)


def _top_epoch_adversarial(top, opt_state, body, model_state, features,
                           x_u8, y, key, *, opt, batch_size, adversary):
  """One epoch of `_top_step_adversarial`. The steps are dispatched from
  Python, not scanned: XLA:CPU runs convolutions slowly inside a loop body
  (README, performance notes), and every step here runs the whole network
  (measured for resnet_tiny: 8.3 s against 26.3 s per 256-image epoch)."""
  # The minibatches are `_top_epoch`'s (same key), so an adversary that
  # returns its input trains exactly as plain fine-tuning does.
  batches = np.asarray(_batches(key, len(x_u8), batch_size))
  keys = jax.random.split(jax.random.fold_in(key, 1), len(batches))
  for idx, k in zip(batches, keys):
    top, opt_state = _top_step_adversarial(
        top, opt_state, body, model_state, features, x_u8[idx], y[idx], k,
        opt=opt, adversary=adversary)
  return top, opt_state


def train_top_layer(model, params, model_state, x_u8: np.ndarray,
                    y: np.ndarray, key: jax.Array, *,
                    config: TopLayerConfig = TopLayerConfig(),
                    before_epoch: Optional[Callable] = None,
                    rows: Optional[Callable] = None,
                    adversary: Optional[Callable] = None):
  """Trains theta_top of ``params`` on ``(x_u8, y)`` with the rest frozen.

  Args:
    model, params, model_state: the network; every parameter but
      ``params["head"]`` and all BatchNorm statistics stay as they are.
    x_u8, y: the fine-tuning set (uint8 images, or float ones in [0, 1]).
    key: PRNG key of the minibatch order (epoch e uses ``fold_in(key, e)``,
      which also drives ``adversary``).
    config: see `TopLayerConfig`.
    before_epoch: optional ``(epoch, params, x_u8) -> x_u8`` run before
      every epoch (a defence rewriting the images); the features are
      recomputed whenever it returns a new array (returning the same
      object means the images did not change).
    rows: optional ``() -> indices``, called after ``before_epoch``: the
      examples trained on in this epoch (EPIC's kept examples); all of
      them if not given.
    adversary: optional ``(params, model_state, key, x, y) -> x_adv`` on
      float batches (`hint_jax.defences.make_adversary`): adversarial
      training, each step on the adversarial images of its batch, crafted
      against the current theta_top (ATDA). The features are then computed
      per step rather than once.

  Returns:
    ``params`` with the trained theta_top (the other entries are the same
    objects that were passed in).
  """
  config.validate()
  x_u8, y = np.asarray(x_u8), np.asarray(y)
  if len(x_u8) != len(y):
    raise ConfigError(f"{len(x_u8)} images but {len(y)} labels")
  if config.epochs and len(x_u8) < config.batch_size:
    raise ConfigError(f"{len(x_u8)} fine-tuning examples are fewer than one "
                      f"batch of {config.batch_size}")
  opt = _optimizer(config)
  top = params[TOP_LAYER]
  opt_state = opt.init(top)
  yj = jnp.asarray(y, jnp.int32)
  body = {k: v for k, v in params.items() if k != TOP_LAYER}
  features = model.features_fn(params, model_state)
  phi = None
  for epoch in range(config.epochs):
    if before_epoch is not None:
      x_new = before_epoch(epoch, {**params, TOP_LAYER: top}, x_u8)
      if x_new is not x_u8:   # new images: their features are new too
        x_u8, phi = np.asarray(x_new), None
    keep = None if rows is None else rows()
    keep = None if keep is None else np.asarray(keep)
    batch_size = config.batch_size
    if keep is not None:
      if not len(keep):
        raise ConfigError("no fine-tuning example is left to train on")
      # Fewer kept examples than a batch (EPIC on a small set): the epoch
      # is one step on all of them.
      batch_size = min(batch_size, len(keep))
    ekey = jax.random.fold_in(key, epoch)
    ys = yj if keep is None else yj[keep]
    if adversary is not None:
      top, opt_state = _top_epoch_adversarial(
          top, opt_state, body, model_state, features,
          x_u8 if keep is None else x_u8[keep], np.asarray(ys), ekey,
          opt=opt, batch_size=batch_size, adversary=adversary)
      continue
    if phi is None:
      phi = model.features_of_images(params, model_state, x_u8)
    top, opt_state = _top_epoch(
        top, opt_state, phi if keep is None else phi[keep], ys, ekey,
        opt=opt, batch_size=batch_size)
  return {**params, TOP_LAYER: top}
