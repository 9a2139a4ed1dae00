"""Every defence behind one small protocol, so a training job never asks
which defence it runs.

A `JobDefence` is built for one training set (`make_defence`) and is then
asked, in this order: `train_config` (a defence may change the training
configuration), `adversary` (a per-step attack for the trainer), `restore`
(after a checkpoint is loaded), `starting` / `before_epoch` / `note` (the hook of
`hint_jax.train.fit`), `active_indices` (the examples still trained on),
`checkpoint` (what a checkpoint must keep), `record` and `write_files`
(the result). The base class is "no defence".
"""

import dataclasses
import json
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import defenses
from hint_jax import hint as hint_lib
from hint_jax.errors import ConfigError

NOISE_FILE = "hint_noise.npz"


def _plain(cfg) -> dict:
  """A configuration as JSON-ready data (tuples as lists)."""
  return json.loads(json.dumps(dataclasses.asdict(cfg)))


def hint_poison_record(selected, x_orig, x_noised, poison_mask) -> dict:
  """How HINT treated the poisons of a poisoned training set: how many of
  them it selected, and the mean absolute change it made to the selected
  poisons' and the other selected images, in grey levels (the noised
  images as stored, uint8). ``selected``: row indices into ``x_orig`` /
  ``x_noised`` (the images as received / as now noised);
  ``poison_mask``: which rows are poisons. ``selected`` None (no update
  yet) counts as none selected."""
  selected = np.asarray([] if selected is None else selected, np.int64)
  poison_mask = np.asarray(poison_mask, bool)
  hit = poison_mask[selected]
  # Rows first, then the widening: the whole training set is never copied.
  change = np.abs(np.asarray(x_noised[selected], np.int16)
                  - np.asarray(x_orig[selected], np.int16))
  per_image = change.reshape(len(selected), -1).mean(axis=1) if len(
      selected) else np.zeros(0)
  mean = lambda v: float(v.mean()) if v.size else None
  return {"count": int(poison_mask.sum()), "selected": int(hit.sum()),
          "num_selected": len(selected),
          "levels_changed_mean_poisons": mean(per_image[hit]),
          "levels_changed_mean_others": mean(per_image[~hit])}


class JobDefence:
  """No defence; the base of the others. ``config`` is the resolved
  configuration (None here)."""

  name = "none"
  whole_training_set = False   # needs every training row on one host

  def __init__(self, config=None):
    self.config = config

  def settings(self) -> Optional[dict]:
    """The configuration as the checkpoint's identity keeps it."""
    return None if self.config is None else _plain(self.config)

  def train_config(self, cfg):
    return cfg

  def adversary(self, model):
    return None

  def before_epoch(self, epoch, state, x_train):
    """``fit``'s hook: ``(x_train, seconds)``."""
    return x_train, 0.0

  def starting(self, epoch) -> Optional[str]:
    """A line on what ``before_epoch(epoch)`` is about to do (None:
    nothing worth a line)."""
    return None

  def note(self, epoch) -> Optional[str]:
    """A line on what ``before_epoch(epoch)`` just did (None: nothing)."""
    return None

  active_indices = None   # or a callable giving the rows trained on

  def checkpoint(self):
    """``(arrays, meta)`` a checkpoint keeps for this defence."""
    return None, None

  def restore(self, arrays, meta, x_train):
    """Takes back the checkpoint's state; returns the images to train on."""
    return x_train

  def record(self, poison_mask=None, transfer=False) -> dict:
    """The defence's entries of result.json."""
    if self.config is None:
      return {}
    return {self.name: {"config": self.settings()}}

  def write_files(self, out, train_idx) -> None:
    """Writes the defence's own output files into ``out``."""


class HintDefence(JobDefence):
  name = "hint"
  whole_training_set = True

  def __init__(self, config, model, x_train, y_train, x_val, y_val, *,
               epochs, x_clean=None, mesh=None, on_stage=None):
    super().__init__(config)
    self.hint = hint_lib.Hint(
        model, config, x_train, y_train, x_val, y_val, epochs=epochs,
        on_progress=None if on_stage is None else
        (lambda s, d, t: on_stage(f"HINT {s}", d, t)),
        x_clean=x_clean, mesh=mesh)

  def before_epoch(self, epoch, state, x_train):
    return self.hint.before_epoch(epoch, state, x_train)

  def starting(self, epoch):
    if epoch not in self.config.schedule:
      return None
    return f"HINT: noise update before epoch {epoch + 1}"

  def note(self, epoch):
    if epoch not in self.config.schedule or not self.hint.updates:
      return None
    u = self.hint.updates[-1]
    return (f"HINT: {u.num_selected} examples; selection "
            f"{u.selection_seconds:.1f} s, s_test {u.s_test_seconds:.1f} s, "
            f"I_pert {u.pert_seconds:.1f} s, write {u.write_seconds:.2f} s; "
            f"mean |delta| {255 * u.delta_abs_mean:.2f}/255, "
            f"{100 * u.at_bound_fraction:.1f}% at the bound")

  def checkpoint(self):
    return self.hint.state_arrays(), {
        "hint": [dataclasses.asdict(u) for u in self.hint.updates]}

  def restore(self, arrays, meta, x_train):
    self.hint.load_state_arrays(arrays, (meta or {}).get("hint", []))
    return self.hint.current_images()

  def record(self, poison_mask=None, transfer=False):
    summary = self.hint.summary()
    entry = {"config": self.settings(), **summary}
    if not transfer:
      entry["noise_file"] = NOISE_FILE
    if poison_mask is not None:
      entry["poisons"] = hint_poison_record(
          self.hint.selected, self.hint.x_orig, self.hint.current_images(),
          poison_mask)
    out = {"hint": entry}
    if not transfer:
      out["num_selected"] = summary["num_selected"]
      for phase in ("selection", "s_test", "pert", "write"):
        out[f"hint_{phase}_seconds"] = summary[f"{phase}_seconds"]
    return out

  def write_files(self, out, train_idx):
    self.hint.save_noise(out / NOISE_FILE, train_idx)


class EpicDefence(JobDefence):
  name = "epic"
  whole_training_set = True

  def __init__(self, config, model, y_train):
    super().__init__(config)
    self.epic = defenses.Epic(model, config, y_train)
    self.active_indices = self.epic.active_indices

  def before_epoch(self, epoch, state, x_train):
    return self.epic.before_epoch(epoch, state, x_train)

  def note(self, epoch):
    if not self.config.selects_before(epoch) or not self.epic.records:
      return None
    r = self.epic.records[-1]
    return (f"EPIC before epoch {epoch + 1}: {r['medoids']} medoids, "
            f"dropped {r['dropped']}, {r['active']} of {len(self.epic.y)} "
            f"left ({r['seconds']:.1f} s)")

  def checkpoint(self):
    return self.epic.state_arrays(), {"epic": self.epic.records}

  def restore(self, arrays, meta, x_train):
    self.epic.load_state(arrays["epic_active"], (meta or {}).get("epic", []))
    return x_train

  def record(self, poison_mask=None, transfer=False):
    out = {"epic": {"config": self.settings(), **self.epic.summary()}}
    if not transfer:
      out["num_train_kept"] = int(self.epic.active.sum())
      out["epic_seconds"] = out["epic"]["epic_seconds"]
    return out


class FriendsDefence(JobDefence):
  """FRIENDS: the friendly noise as the epoch hook, the Bernoulli noise as
  the trainer's augmentation (`train_config`)."""
  name = "friends"
  whole_training_set = True

  def __init__(self, config, model, x_train, on_stage=None):
    super().__init__(config)
    self.friends = defenses.Friends(
        model, config, x_train,
        on_progress=None if on_stage is None else
        (lambda d, t: on_stage("FRIENDS friendly noise", d, t)))

  def train_config(self, cfg):
    return dataclasses.replace(cfg, bernoulli_noise=self.config.bernoulli)

  def before_epoch(self, epoch, state, x_train):
    return self.friends.before_epoch(epoch, state, x_train)

  def note(self, epoch):
    r = self.friends.record
    if epoch != self.config.begin_epoch or r is None:
      return None
    return (f"FRIENDS before epoch {epoch + 1}: friendly noise in "
            f"{r['seconds']:.1f} s, mean |noise| {r['mean_abs_levels']:.2f}"
            f"/255, KL {r['kl_last']:.4f}")

  def checkpoint(self):
    return self.friends.state_arrays(), {"friends": self.friends.record}

  def restore(self, arrays, meta, x_train):
    self.friends.load_state(arrays, (meta or {}).get("friends"))
    return self.friends.current_images()

  def current_images(self):
    return self.friends.current_images()

  def record(self, poison_mask=None, transfer=False):
    out = {"friends": {"config": self.settings(), **self.friends.summary()}}
    if not transfer:
      out["friends_seconds"] = out["friends"]["friends_seconds"]
    return out


class AtdaDefence(JobDefence):
  """ATDA: adversarial examples inside every training step (its time is in
  the training time)."""
  name = "atda"

  def adversary(self, model):
    return defenses.make_adversary(model, self.config)


def defence_class(name: str) -> type:
  """The `JobDefence` class of a defence name ("none", "hint", ...)."""
  for cls in (JobDefence, HintDefence, EpicDefence, FriendsDefence,
              AtdaDefence):
    if cls.name == name:
      return cls
  raise ConfigError(f"unknown defence {name!r}")


def make_defence(config, model, splits, *, epochs, x_clean=None, mesh=None,
                 on_stage=None) -> JobDefence:
  """The `JobDefence` of a resolved configuration (None: no defence) for
  ``splits``' training set. ``on_stage(name, done, total)`` hears the
  defence's long passes."""
  if config is None:
    return JobDefence()
  if isinstance(config, hint_lib.HintConfig):
    return HintDefence(config, model, splits.x_train, splits.y_train,
                       splits.x_val, splits.y_val, epochs=epochs,
                       x_clean=x_clean, mesh=mesh, on_stage=on_stage)
  if isinstance(config, defenses.EpicConfig):
    return EpicDefence(config, model, splits.y_train)
  if isinstance(config, defenses.FriendsConfig):
    return FriendsDefence(config, model, splits.x_train, on_stage=on_stage)
  if isinstance(config, defenses.AtdaConfig):
    return AtdaDefence(config)
  raise TypeError(f"no defence for {type(config).__name__}")


def transfer_hook(defence: JobDefence, state, seed: int):
  """The ``before_epoch(epoch, params, x)`` hook of
  `hint_jax.train.transfer.train_top_layer` for ``defence`` (None when it
  has none): the defence sees the frozen body's state with the current
  top layer. FRIENDS adds fresh Bernoulli noise every epoch to its
  friendly images (in full training, the trainer does that)."""
  view = lambda p: state.replace(params=p)
  if isinstance(defence, (HintDefence, EpicDefence)):
    return lambda epoch, p, x: defence.before_epoch(epoch, view(p), x)[0]
  if isinstance(defence, FriendsDefence):
    noise_key = jax.random.fold_in(jax.random.key(seed), 2)

    def hook(epoch, p, _x):
      base = defence.before_epoch(epoch, view(p),
                                  defence.current_images())[0]
      return np.asarray(defenses.bernoulli_noise(
          jax.random.fold_in(noise_key, epoch),
          jnp.asarray(base, jnp.float32) / 255.0, defence.config.bernoulli))
    return hook
  return None
