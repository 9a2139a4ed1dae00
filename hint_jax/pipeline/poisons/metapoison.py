"""MetaPoison (from scratch, over an ensemble of surrogate models at
staggered epochs), registered as ``mp``."""

import dataclasses

import jax

from hint_jax.attacks import targeted
from hint_jax.pipeline.poisons.base import TargetedKind, register_targeted
from hint_jax.pipeline.training import clean_train_config
from hint_jax.pipeline.victim import train_victim
from hint_jax.train.loop import Trainer
from hint_jax.train.presets import preset


def member_epochs(dataset, spec):
  """The clean epochs of MetaPoison's members for a `TargetSpec`: the
  victim's, then member i of M about i/M of them (at least one)."""
  epochs = spec.victim.epochs or preset(dataset).epochs
  return [epochs] + [max(1, round(epochs * i / spec.ensemble))
                     for i in range(1, spec.ensemble)]


def _surrogates(c):
  """The ensemble as train states: the victim's plus ``ensemble - 1``
  further models (seeds seed+1, ...) trained for the staggered epochs of
  `member_epochs`, each kept in the work folder."""
  states = [c.state]
  epochs = member_epochs(c.data.dataset, c.spec)
  for i, e in enumerate(epochs[1:], start=1):
    member = dataclasses.replace(c.spec.victim, seed=c.spec.seed + i,
                                 epochs=e)
    member_dir = c.work / f"member_{i}"
    member_dir.mkdir(exist_ok=True)
    _, st, _ = train_victim(c.data, c.splits, member, member_dir, c.reporter,
                            shape_epochs=epochs[0])
    states.append(st)
  return states


def _metapoison(c):
  states = _surrogates(c)
  c.state = None   # its buffers went to the members' training
  spec, victim = c.spec, c.spec.victim
  epochs = member_epochs(c.data.dataset, spec)
  # The members go on along the victim's run (scaled) or the preset's
  # schedule (absolute).
  trainer = Trainer(c.model, clean_train_config(
      c.data.dataset,
      epochs[0] if victim.epoch_schedule == "scaled" else None,
      victim.augment, victim.epoch_schedule), len(c.splits.x_train))
  member_steps = spec.member_steps or trainer.steps_per_epoch
  advance = targeted.trainer_advance(
      trainer, states, c.splits.x_train, c.splits.y_train, member_steps,
      jax.random.fold_in(c.key, 4))
  cfg = targeted.MetaPoisonConfig(
      eps=c.meta["eps"], steps=c.meta["steps"],
      lr=targeted.MetaPoisonConfig.lr if spec.lr is None else spec.lr)
  (base_x, base_y), (target_x, intended) = c.bases, c.target
  out = targeted.metapoison(
      c.model, [(st.params, st.model_state) for st in states], base_x,
      base_y, target_x, intended, c.splits.x_train, c.splits.y_train,
      jax.random.fold_in(c.key, 3), config=cfg, advance_fn=advance,
      on_progress=c.stage("mp"))
  cfg_meta = dataclasses.asdict(cfg)
  cfg_meta.pop("advance")
  c.meta.update(cfg_meta, ensemble=len(epochs), member_epochs=epochs,
                member_steps=member_steps, trajectory="clean",
                note="members advance on clean batches with their own "
                "optimizer; no ReColorAdv colour perturbation and no member "
                "re-initialisation (see targeted.metapoison)")
  return out


MP = register_targeted(TargetedKind(
    name="mp", label="MetaPoison", scenario="scratch", eps=8 / 255,
    steps=60, craft=_metapoison))
