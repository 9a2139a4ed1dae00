"""DeepConfuse (Feng et al., NeurIPS 2019), as the HINT paper describes it.

An autoencoder generator g turns a clean image into its poison
x~ = clip(x + eps * tanh(g(x)), 0, 1). It is trained against a classifier f
of its own, alternating

1. one SGD step of f on the poisons: theta <- theta - lr grad CE(f(x~), y);
2. one Adam step of g that *maximises* the clean-data loss of f after a
   one-step unrolled update on the poisons:
   max_g CE(f_theta'(x), y),  theta' = theta - lr grad_theta CE(f_theta(x~(g)), y),
   the gradient flowing through theta' into g (a second-order term).

Both networks here are small (no BatchNorm, so the unrolled step is a plain
function of theta). The original trains a larger U-Net generator for many
epochs; the defaults below are reduced so that MNIST fits a CPU budget, and
`DeepConfuseConfig` records them for the file's metadata.
"""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.attacks.untargeted import budget_levels, quantize_within_budget
from hint_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DeepConfuseConfig:
  """Training settings of the generator.

  Attributes:
    eps: L-inf budget, [0, 1] units.
    steps: alternating (classifier, generator) steps.
    batch_size: examples per step.
    classifier_lr: SGD step of f and of the unrolled update (paper: 0.01).
    generator_lr: Adam step of g (paper: 1e-4).
    width: channels of the generator's first layer (doubled in the second).
  """
  eps: float = 0.3
  steps: int = 1000
  batch_size: int = 128
  classifier_lr: float = 0.01
  generator_lr: float = 1e-4
  width: int = 16

  def validate(self):
    budget_levels(self.eps)
    if self.steps < 1 or self.batch_size < 1 or self.width < 1:
      raise ConfigError("DeepConfuse steps, batch_size and width must be "
                        ">= 1")
    for name in ("classifier_lr", "generator_lr"):
      v = getattr(self, name)
      if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"DeepConfuse {name} must be > 0, got {v}")
    return self


class Generator(nn.Module):
  """Conv autoencoder: two stride-2 convolutions down, two transposed
  convolutions up, to an unbounded map of the input's shape (for inputs
  whose height and width are divisible by 4)."""
  width: int = 16

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    h = nn.relu(nn.Conv(self.width, (3, 3), strides=2)(x))
    h = nn.relu(nn.Conv(2 * self.width, (3, 3), strides=2)(h))
    h = nn.relu(nn.ConvTranspose(self.width, (3, 3), strides=(2, 2))(h))
    return nn.ConvTranspose(c, (3, 3), strides=(2, 2))(h)


class Classifier(nn.Module):
  """DeepConfuse's own small CNN (no BatchNorm)."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = nn.max_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
    x = nn.max_pool(nn.relu(nn.Conv(64, (3, 3))(x)), (2, 2), (2, 2))
    x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


def _poison(gen, g_params, x, eps):
  return jnp.clip(x + eps * jnp.tanh(gen.apply(g_params, x)), 0.0, 1.0)


def _ce(clf, params, x, y):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      clf.apply(params, x), y))


@functools.partial(xla_options.jit, static_argnames=("gen", "clf", "tx"))
def _step(gen, clf, tx, f_params, g_params, g_opt, x, y, eps, lr):
  # 1. The classifier learns from the current poisons.
  x_tilde = _poison(gen, g_params, x, eps)
  f_params = jax.tree.map(lambda p, g: p - lr * g, f_params,
                          jax.grad(_ce, argnums=1)(clf, f_params, x_tilde, y))

  # 2. The generator maximises the clean loss after an unrolled step.
  def neg_clean_loss(gp):
    grads = jax.grad(_ce, argnums=1)(clf, f_params,
                                     _poison(gen, gp, x, eps), y)
    unrolled = jax.tree.map(lambda p, g: p - lr * g, f_params, grads)
    return -_ce(clf, unrolled, x, y)

  loss, g_grads = jax.value_and_grad(neg_clean_loss)(g_params)
  updates, g_opt = tx.update(g_grads, g_opt, g_params)
  return f_params, optax.apply_updates(g_params, updates), g_opt, -loss


def train_generator(x_u8: np.ndarray, y: np.ndarray, key: jax.Array, *,
                    num_classes: int, config: DeepConfuseConfig,
                    on_progress=None):
  """Trains the generator on ``(x_u8, y)``.

  Returns:
    ``(generator_params, classifier_params, losses)``: the generator, its
    adversary at the end, and each step's clean loss after the unrolled
    update (the quantity the generator maximises while f keeps learning).
  """
  config.validate()
  x_u8, y = np.asarray(x_u8), np.asarray(y)
  gen, clf = Generator(config.width), Classifier(num_classes)
  k_gen, k_clf, k_data = jax.random.split(key, 3)
  sample = jnp.zeros((1,) + x_u8.shape[1:], jnp.float32)
  g_params = gen.init(k_gen, sample)
  f_params = clf.init(k_clf, sample)
  tx = optax.adam(config.generator_lr)
  g_opt = tx.init(g_params)
  n, bs = len(x_u8), min(config.batch_size, len(x_u8))
  losses = []
  for step in range(config.steps):
    idx = np.asarray(jax.random.choice(jax.random.fold_in(k_data, step), n,
                                       (bs,), replace=False))
    xb = jnp.asarray(x_u8[idx], jnp.float32) / 255.0
    f_params, g_params, g_opt, loss = _step(
        gen, clf, tx, f_params, g_params, g_opt, xb, jnp.asarray(y[idx]),
        jnp.float32(config.eps), jnp.float32(config.classifier_lr))
    losses.append(loss)
    if on_progress is not None and (step + 1) % 50 == 0:
      on_progress(step + 1, config.steps)
  return g_params, f_params, np.asarray(jnp.stack(losses))


def unrolled_clean_loss(g_params, f_params, x_u8, y, *, num_classes: int,
                        config: DeepConfuseConfig) -> float:
  """The generator's objective at given networks: f's clean loss after one
  SGD step on the poisons of ``x_u8``."""
  gen, clf = Generator(config.width), Classifier(num_classes)
  x = jnp.asarray(x_u8, jnp.float32) / 255.0
  y = jnp.asarray(y)
  grads = jax.grad(_ce, argnums=1)(clf, f_params,
                                   _poison(gen, g_params, x, config.eps), y)
  unrolled = jax.tree.map(lambda p, g: p - config.classifier_lr * g,
                          f_params, grads)
  return float(_ce(clf, unrolled, x, y))


@functools.partial(xla_options.jit, static_argnames=("gen", "eps"))
def _apply(gen, g_params, x_u8, eps):
  x = x_u8.astype(jnp.float32) / 255.0
  return quantize_within_budget(x_u8, _poison(gen, g_params, x, eps), eps)


def deepconfuse_poison(g_params, x_u8: np.ndarray, *, config:
                       DeepConfuseConfig, chunk_size: int = 1000
                       ) -> np.ndarray:
  """Poisons uint8 images with a trained generator (budget exact)."""
  gen = Generator(config.width)
  x_u8 = np.asarray(x_u8)
  out = [np.asarray(_apply(gen, g_params, jnp.asarray(x_u8[i:i + chunk_size]),
                           float(config.eps)))
         for i in range(0, len(x_u8), chunk_size)]
  return np.concatenate(out) if out else x_u8.copy()
