"""Gradient matching (Witches' Brew, from scratch), registered as
``gm``."""

import jax

from hint_jax.attacks import targeted
from hint_jax.pipeline.poisons.base import TargetedKind, register_targeted
from hint_jax.train.augment import random_shift_flip


def _gradient_matching(c):
  """Witches' Brew on the victim, with the differentiable shift-and-flip
  augmentation on CIFAR-10 unless the victim trains without it."""
  cfg = targeted.GradientMatchingConfig(
      eps=c.meta["eps"], steps=c.meta["steps"], restarts=c.spec.restarts,
      lr=targeted.GradientMatchingConfig.lr if c.spec.lr is None
      else c.spec.lr)
  augment = (random_shift_flip if c.data.dataset == "cifar10"
             and c.spec.victim.augment is not False else None)
  (base_x, base_y), (target_x, intended) = c.bases, c.target
  poisons, losses = targeted.gradient_matching(
      c.model, c.state.params, c.state.model_state, base_x, base_y,
      target_x, intended, jax.random.fold_in(c.key, 3), config=cfg,
      augment=augment, on_progress=c.stage("gm"))
  c.meta.update(restarts=cfg.restarts, lr=cfg.lr, optimizer="signed adam",
                augmentation=augment is not None)
  return poisons, losses.min(axis=1)


GM = register_targeted(TargetedKind(
    name="gm", label="gradient matching", scenario="scratch", eps=16 / 255,
    steps=250, craft=_gradient_matching))
