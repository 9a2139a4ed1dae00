"""The transfer-learning scenario of the targeted attacks (SPEC §4).

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


@functools.partial(jax.jit, static_argnames=("opt", "batch_size"))
def _top_epoch(top, opt_state, phi, y, key, *, opt, batch_size):
  steps = phi.shape[0] // batch_size
  order = jax.random.permutation(key, phi.shape[0])[:steps * batch_size]
  batches = order.reshape(steps, batch_size)

  def loss(t, idx):
    logits = phi[idx] @ t["kernel"] + t["bias"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        logits, y[idx]))

  def step(carry, idx):
    t, s = carry
    g = jax.grad(loss)(t, idx)
    updates, s = opt.update(g, s, t)
    return (optax.apply_updates(t, updates), s), None

  (top, opt_state), _ = jax.lax.scan(step, (top, opt_state), batches)
  return top, opt_state


def train_top_layer(model, params, model_state, x_u8: np.ndarray,
                    y: np.ndarray, key: jax.Array, *,
                    config: TopLayerConfig = TopLayerConfig(),
                    before_epoch: Optional[Callable] = None):
  """Trains theta_top of ``params`` on ``(x_u8, y)`` with the rest frozen.

  Args:
    model, params, model_state: the network; every parameter but
      ``params["head"]`` and all BatchNorm statistics stay as they are.
    x_u8, y: the fine-tuning set.
    key: PRNG key of the minibatch order (epoch e uses ``fold_in(key, e)``).
    config: see `TopLayerConfig`.
    before_epoch: optional ``(epoch, params, x_u8) -> x_u8`` run before
      every epoch (a defence rewriting the images); the features are
      recomputed whenever it returns a new array (returning the same
      object means the images did not change).

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
  phi = None
  for epoch in range(config.epochs):
    if before_epoch is not None:
      x_new = before_epoch(epoch, {**params, TOP_LAYER: top}, x_u8)
      if x_new is not x_u8:   # new images: their features are new too
        x_u8, phi = x_new, None
    if phi is None:
      phi = model.features_of_images(params, model_state, x_u8)
    top, opt_state = _top_epoch(top, opt_state, phi, yj,
                                jax.random.fold_in(key, epoch), opt=opt,
                                batch_size=config.batch_size)
  return {**params, TOP_LAYER: top}
