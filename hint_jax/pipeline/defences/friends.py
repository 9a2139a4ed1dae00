"""FRIENDS as a registered defence: its configuration serves as its spec
(no dataset-dependent defaults); the friendly noise is the epoch hook, the
Bernoulli noise the trainer's augmentation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import defences
from hint_jax.errors import ConfigError
from hint_jax.pipeline.defences.base import (AlgorithmDefence, DefenceKind,
                                             register)
from hint_jax.pipeline.options import Option, number, whole_number


def resolve_friends(cfg: defences.FriendsConfig,
                    epochs: int) -> defences.FriendsConfig:
  """``cfg`` checked for an ``epochs``-epoch run."""
  cfg = cfg.validate()
  if cfg.begin_epoch >= epochs:
    raise ConfigError(f"FRIENDS begin epoch {cfg.begin_epoch} is not "
                      f"before the end of a {epochs}-epoch run")
  return cfg



class FriendsDefence(AlgorithmDefence):
  """FRIENDS: the friendly noise as the epoch hook, the Bernoulli noise as
  the trainer's augmentation (`train_config`)."""
  name = "friends"

  def __init__(self, config, model, x_train, on_stage=None):
    super().__init__(config)
    self.friends = self.algorithm = defences.Friends(
        model, config, x_train,
        on_progress=None if on_stage is None else
        (lambda d, t: on_stage("FRIENDS friendly noise", d, t)))

  def train_config(self, cfg):
    return dataclasses.replace(cfg, bernoulli_noise=self.config.bernoulli)

  def images(self, state, x_train):
    return self.friends.images(state)

  def note(self, state, epoch):
    r = state["friends"]
    if epoch != self.config.begin_epoch or r is None:
      return None
    return (f"FRIENDS before epoch {epoch + 1}: friendly noise in "
            f"{r['seconds']:.1f} s, mean |noise| {r['mean_abs_levels']:.2f}"
            f"/255, KL {r['kl_last']:.4f}")

  def record(self, state, poison_mask=None, transfer=False):
    out = {"friends": {"config": self.settings(),
                       **self.friends.summary(state)}}
    if not transfer:
      out["friends_seconds"] = out["friends"]["friends_seconds"]
    return out

  def transfer_hook(self, hook, train_state, seed):
    # In full training the trainer adds fresh Bernoulli noise every
    # epoch; on the top layer this hook does, to the friendly images.
    view = lambda p: train_state.replace(params=p)
    noise_key = jax.random.fold_in(jax.random.key(seed), 2)

    def top_hook(epoch, p, _x):
      base = hook(epoch, view(p), self.friends.images(hook.state))[0]
      return np.asarray(defences.bernoulli_noise(
          jax.random.fold_in(noise_key, epoch),
          jnp.asarray(base, jnp.float32) / 255.0, self.config.bernoulli))
    return top_hook


_D = defences.FriendsConfig()

OPTIONS = (
    Option("--friends-begin-epoch", "begin_epoch", whole_number(0),
           _D.begin_epoch, help="epoch (0-based) before which the friendly "
           "noise is computed, once"),
    Option("--friends-steps", "steps", whole_number(1), _D.steps),
    Option("--friends-lr", "lr", number, _D.lr),
    Option("--friends-mu", "mu", number, _D.mu),
    Option("--friends-clamp", "clamp", number, _D.clamp,
           help="friendly noise bound, [0,1] units (16/255)"),
    Option("--friends-bernoulli", "bernoulli", number, _D.bernoulli,
           help="Bernoulli noise amplitude, [0,1] units (8/255); 0 turns "
           "it off"),
)

KIND = register(DefenceKind(
    name="friends", label="FRIENDS", spec_type=defences.FriendsConfig,
    resolve=lambda spec, dataset, epochs, _schedule: resolve_friends(
        spec, epochs),
    build=lambda config, model, splits, on_stage=None, **_: FriendsDefence(
        config, model, splits.x_train, on_stage=on_stage),
    options=OPTIONS,
    help="FRIENDS (--defence friends; defaults are the paper's)",
    whole_training_set=True))
