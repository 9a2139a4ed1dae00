"""The poisoning jobs: craft a (mixed) untargeted poisoned training set, or a
targeted one against one test image, and write the poisoned-dataset file.

Both train a clean victim on the same split a training job uses (so the
training job can check the file against it). What is finished (the victim,
each attack's chunks, MetaPoison's surrogates) is kept in ``OUT.work/``: an
interrupted job resumes there, and the folder is removed once the file is
written. ``victim_dir`` keeps the victim in the shared clean-model cache
instead, for reuse by later jobs.

Targeted jobs (`run_target_poison`): a target test image and an intended
class are drawn from the seed unless given (a drawn intended class is one
that can supply the poisons). The poisons are ``budget`` of the training
set, drawn from the intended class and keeping their labels:

* from scratch (gm, mp): the victim (or MetaPoison's surrogates) is trained
  on the whole clean training split; the poisons come from all of it.
* transfer (bp, fc): the feature extractor is pre-trained on a keyed 90% of
  the training split (`hint_jax.train.transfer.transfer_split`, seed in the
  file's metadata); the poisons come from the other 10%, the part the top
  layer is later trained on.
"""

import dataclasses
import hashlib
import shutil
from typing import Any, Optional, Tuple

import jax
import numpy as np

from hint_jax import attacks
from hint_jax.errors import ConfigError
from hint_jax.pipeline import files, poisons
from hint_jax.pipeline.poisons import (AttackContext, Crafting,
                                       TargetCrafting, member_epochs)
from hint_jax.pipeline.specs import DataSpec
from hint_jax.pipeline.training import (Reporter, load_splits,
                                        target_outcome)
from hint_jax.pipeline.victim import VictimSpec, train_victim
from hint_jax.train import transfer
from hint_jax.train.presets import preset_key

# The untargeted mix of the paper's Table II; `poisons.attack_names()` is
# every registered attack.
ATTACKS = poisons.DEFAULT_MIX
# Budgets of the untargeted attacks, [0, 1] pixel units, by preset key
# (`hint_jax.train.presets.preset_key`: "generic" is the user's own data,
# folder: / npz:, where 8/255 is the field's usual L-infinity budget for
# natural images; a start, not tuned).
DEFAULT_EPS = {"mnist": 0.3, "cifar10": 8 / 255, "digits": 0.3,
               "generic": 8 / 255}
CHUNK = 2000   # examples per saved chunk
PRETRAIN_FRACTION = 0.9

__all__ = ["ATTACKS", "CHUNK", "DEFAULT_EPS", "PRETRAIN_FRACTION",
           "PoisonSpec", "TargetSpec", "VictimSpec", "choose_target",
           "member_epochs", "run_poison", "run_target_poison",
           "train_victim"]


@dataclasses.dataclass(frozen=True)
class PoisonSpec:
  """An untargeted poisoning job: ``attacks`` share a fraction ``ratio`` of
  the training examples equally. Each entry of ``attacks`` is a registered
  attack's name (its default settings) or its spec (e.g.
  ``poisons.PgdSpec(steps=10)``); the settings' ``None`` fields take the
  dataset's defaults, as does ``eps`` (``DEFAULT_EPS``). ``seed`` also
  seeds the victim."""
  attacks: Tuple[Any, ...] = ATTACKS
  ratio: float = 1.0
  eps: Optional[float] = None
  seed: int = 0
  victim: VictimSpec = VictimSpec()


@dataclasses.dataclass(frozen=True)
class TargetSpec:
  """A targeted poisoning job (one of ``TARGETED``). ``None`` takes the
  attack's default (``DEFAULT_TARGETED_EPS``, ``DEFAULT_TARGETED_STEPS``,
  its step size); the target and intended class are drawn from ``seed``
  unless given. ``ensemble`` and ``member_steps`` are MetaPoison's,
  ``restarts`` gradient matching's. ``seed`` also seeds the victim."""
  attack: str
  target_index: Optional[int] = None
  intended_class: Optional[int] = None
  budget: float = 0.01
  eps: Optional[float] = None
  steps: Optional[int] = None
  lr: Optional[float] = None
  restarts: int = 8
  ensemble: int = 4
  member_steps: Optional[int] = None
  seed: int = 0
  victim: VictimSpec = VictimSpec()


def _check_file(out):
  """The output file and its ``.work`` folder beside it can be written."""
  return files.check_file(out, sibling=".work")


def _clean_sha(splits):
  return hashlib.sha256(np.ascontiguousarray(splits.x_train).tobytes()
                        ).hexdigest()


# ----------------------------------------------------------- untargeted
def _resolve(data: DataSpec, spec: PoisonSpec):
  """``(eps, [(kind, config)])``: the budget and each attack's checked
  settings, with the dataset's defaults."""
  try:
    chosen = [poisons.attack_of(item) for item in spec.attacks]
  except ConfigError as e:
    raise ConfigError(f"attacks: {e}") from None
  names = [kind.name for kind, _ in chosen]
  if not names or len(set(names)) != len(names):
    raise ConfigError(f"attacks must be distinct, from "
                      f"{', '.join(poisons.attack_names())}; got "
                      f"{','.join(names)!r}")
  eps = (DEFAULT_EPS[preset_key(data.dataset)] if spec.eps is None
         else spec.eps)
  attacks.budget_levels(eps)   # checks eps
  if not 0.0 < spec.ratio <= 1.0:
    raise ConfigError(f"ratio must be in (0, 1] (0 would poison nothing), "
                      f"got {spec.ratio}")
  ctx = AttackContext(data.dataset, preset_key(data.dataset), eps,
                      data.data_dir)
  return eps, [(kind, kind.resolve(sp, ctx)) for kind, sp in chosen]


def _craft_rows(kind, c: Crafting, rows, x_out, reporter):
  """Writes the attack's images of ``rows`` into ``x_out``, chunk by
  chunk, each chunk saved in the work folder (and reused when present)."""
  for chunk, start in enumerate(range(0, len(rows), CHUNK)):
    part = rows[start:start + CHUNK]
    chunk_file = c.work / f"{kind.name}_{chunk:05d}.npy"
    if chunk_file.exists():
      x_out[part] = np.load(chunk_file)
      continue
    report = (lambda d, t, s=start: reporter.stage(kind.name, s + d,
                                                   len(rows)))
    adv = np.asarray(kind.craft(c, c.x_train[part], c.y_train[part], chunk,
                                report))
    if adv.shape != c.x_train[part].shape or adv.dtype != np.uint8:
      raise ConfigError(f"attack {kind.name!r} returned {adv.dtype} images "
                        f"of shape {adv.shape}; uint8 of "
                        f"{c.x_train[part].shape} were given")
    np.save(chunk_file, adv)
    x_out[part] = adv
  reporter.pause()


def _settings(data, dataset, splits, spec, eps, chosen):
  """Everything that determines an untargeted job's result: a work folder
  from other settings is refused rather than mixed in."""
  v = spec.victim
  return {"dataset": data.dataset, "source": dataset.source,
          "split_seed": data.split_seed, "num_val": len(splits.x_val),
          "subset": data.subset, "num_train": len(splits.x_train),
          "ratio": spec.ratio, "eps": eps,
          "attacks": [[k.name, poisons.plain(cfg)] for k, cfg in chosen],
          "model": v.model, "victim_epochs": v.epochs, "seed": spec.seed,
          "epoch_schedule": v.epoch_schedule}


def _craft_all(data, spec, splits, eps, chosen, work, reporter):
  """Crafts every attack's share: ``(images, attack ids, the attacks'
  entries, the victim's entry or None)``."""
  n = len(splits.x_train)
  key = jax.random.key(spec.seed)
  ids = attacks.assign_attacks(n, spec.ratio, len(chosen),
                               jax.random.fold_in(key, 1))
  logits_fn, victim_meta = None, None
  if any(kind.uses_victim for kind, _ in chosen):
    model, state, victim_meta = train_victim(
        data, splits, dataclasses.replace(spec.victim, seed=spec.seed), work,
        reporter)
    logits_fn = model.logits_fn(state.params, state.model_state)
  x_out = splits.x_train.copy()
  entries = []
  for a, (kind, config) in enumerate(chosen):
    rows = np.flatnonzero(ids == a)
    meta = {"name": kind.name, "eps": eps, "count": int(len(rows)),
            **kind.record(config)}
    c = Crafting(kind.name, config, eps, jax.random.fold_in(key, 100 + a),
                 splits.num_classes, splits.x_train, splits.y_train, work,
                 logits_fn if kind.uses_victim else None, reporter.stage,
                 reporter.note)
    if kind.prepare is not None:
      c.state = kind.prepare(c, rows, meta)
      reporter.pause()
    entries.append(meta)
    reporter.note(f"{kind.name}: {len(rows)} examples")
    _craft_rows(kind, c, rows, x_out, reporter)
  return x_out, ids, entries, victim_meta


def run_poison(data: DataSpec, spec: PoisonSpec, out,
               reporter: Reporter = None):
  """Crafts ``spec``'s poisoned set of ``data``'s training split into the
  ``.npz`` file ``out`` (resuming from ``out.work/``); returns the
  `PoisonedSet`.

  Raises:
    ConfigError: an invalid setting, or a work folder of other settings.
    DataError: a missing or corrupt data or generator file.
  """
  reporter = reporter or Reporter()
  eps, chosen = _resolve(data, spec)
  out = _check_file(out)
  dataset, splits = load_splits(data, reporter)
  work = files.work_dir(out, _settings(data, dataset, splits, spec, eps,
                                       chosen))
  x_out, ids, entries, victim_meta = _craft_all(data, spec, splits, eps,
                                                chosen, work, reporter)
  meta = {"dataset": data.dataset, "source": dataset.source,
          "num_classes": splits.num_classes, "ratio": spec.ratio,
          "seed": spec.seed, "split_seed": data.split_seed,
          "num_val": len(splits.x_val), "subset": data.subset,
          "attacks": entries, "victim": victim_meta,
          "clean_sha256": _clean_sha(splits),
          "notes": "PGD follows the specified defaults unless changed; "
                   "DeepConfuse's generator is named in its entry; the "
                   "victim is the dataset's training preset unless its "
                   "epochs are given.",
          "reductions": [line for kind, cfg in chosen if kind.reductions
                         for line in kind.reductions(cfg)]}
  ps = attacks.PoisonedSet(x_out, splits.y_train, ids,
                           np.arange(len(x_out)), meta)
  attacks.save_poisoned(out, ps)
  shutil.rmtree(work, ignore_errors=True)
  return ps


# ------------------------------------------------------------- targeted
def choose_target(y_test, num_classes, key, index=None, intended=None,
                  eligible=None):
  """The target's test index and intended class: given, or drawn from
  ``key`` (the intended class uniformly among the other classes).

  ``eligible`` (optional, a boolean array over the classes) marks the classes
  that can supply the poisons. A drawn intended class is then uniform over
  the eligible classes other than the target's: the first draw is kept when
  it is eligible, and otherwise replaced by a uniform draw among them (so a
  seed whose first draw was eligible gives the same class either way). A
  given ``intended`` is never replaced; the caller checks it.
  """
  k1, k2 = jax.random.split(key)
  if index is None:
    index = int(jax.random.randint(k1, (), 0, len(y_test)))
  if not 0 <= index < len(y_test):
    raise ConfigError(f"target index must be in [0, {len(y_test)}), got "
                      f"{index}")
  true = int(y_test[index])
  if intended is None:
    intended = int(jax.random.randint(k2, (), 0, num_classes - 1))
    intended += intended >= true   # skip the true class
    if eligible is not None and not eligible[intended]:
      others = [c for c in range(num_classes) if c != true and eligible[c]]
      if not others:
        raise ConfigError("no class other than the target's own "
                          f"({true}) has enough images for the poison "
                          "budget; lower the budget")
      pick = jax.random.randint(jax.random.fold_in(k2, 1), (), 0,
                                len(others))
      intended = others[int(pick)]
  if not 0 <= intended < num_classes or intended == true:
    raise ConfigError(f"intended class must be a class in [0, "
                      f"{num_classes}) other than the target's own ({true})"
                      f", got {intended}")
  return index, true, intended


def _check_targeted(spec: TargetSpec):
  """``(kind, eps, steps)`` of a targeted job, its settings checked."""
  kind = poisons.get_targeted(spec.attack)
  eps = kind.eps if spec.eps is None else spec.eps
  attacks.budget_levels(eps)
  if not 0.0 < spec.budget <= 1.0:
    raise ConfigError(f"budget must be in (0, 1], got {spec.budget}")
  if spec.lr is not None and not spec.lr > 0:
    raise ConfigError(f"lr must be > 0, got {spec.lr}")
  return kind, eps, spec.steps or kind.steps


def _target_and_bases(kind, spec: TargetSpec, splits, key):
  """Where the poisons come from and what the victim trains on (the
  pre-training part in the transfer scenario), the target, and the
  candidate base images: ``(victim_splits, target_meta, candidates, m)``
  with ``m`` the number of poisons."""
  n, k = len(splits.x_train), splits.num_classes
  scenario = kind.scenario
  pool, victim_splits = np.arange(n), splits
  if scenario == "transfer":
    pre, pool = transfer.transfer_split(n, jax.random.key(spec.seed),
                                        PRETRAIN_FRACTION)
    victim_splits = dataclasses.replace(splits, x_train=splits.x_train[pre],
                                        y_train=splits.y_train[pre])
  m = int(round(spec.budget * n))
  if m < 1:
    raise ConfigError(f"budget {spec.budget} of {n} images is no poison")
  # A drawn intended class must be able to supply m poisons: the random
  # fine-tuning part of a transfer split can hold fewer than m of a class
  # (about 100 +- 10 per class for 1000 images, m = 100).
  counts = np.bincount(splits.y_train[pool], minlength=k)
  index, true, intended = choose_target(
      splits.y_test, k, jax.random.fold_in(key, 1), spec.target_index,
      spec.intended_class, eligible=counts >= m)
  target_meta = {"index": index, "true_class": true,
                 "intended_class": intended, "scenario": scenario}
  if scenario == "transfer":
    target_meta.update(pretrain_fraction=PRETRAIN_FRACTION,
                       transfer_split_seed=spec.seed)
  candidates = pool[splits.y_train[pool] == intended]
  if m > len(candidates):
    where = ("fine-tuning part" if scenario == "transfer"
             else "training set")
    raise ConfigError(f"budget {spec.budget} asks for {m} poisons of class "
                      f"{intended}, but the {where} has {len(candidates)}")
  return victim_splits, target_meta, candidates, m


def _crafting_model_verdict(model, state, target_x, target_meta, reporter):
  """The crafting model's verdict on the target before any poison, into
  ``target_meta``: a victim that later gives the intended class is only
  evidence of the attack if a clean model does not already do so.
  (Transfer: the extractor with its own pre-trained top layer, not a top
  layer trained on the clean 10%.)"""
  clean = target_outcome(model, state, target_x, target_meta)
  target_meta["crafting_model"] = {
      "model": ("victim trained on the clean training split"
                if target_meta["scenario"] == "scratch" else "extractor "
                "pre-trained on the pre-training part, with its own top "
                "layer"),
      **{k: clean[k] for k in ("predicted", "intended_probability",
                               "true_probability")}}
  reporter.note(f"target: the clean crafting model predicts "
                f"{clean['predicted']} (intended class probability "
                f"{clean['intended_probability']:.3g})")


def _target_settings(data, dataset, splits, spec, eps, steps, target_meta):
  """Everything that determines a targeted job's result (its work
  folder's identity)."""
  v = spec.victim
  return {"dataset": data.dataset, "source": dataset.source,
          "split_seed": data.split_seed, "num_val": len(splits.x_val),
          "subset": data.subset, "attack": spec.attack, "eps": eps,
          "steps": steps, "lr": spec.lr, "budget": spec.budget,
          "restarts": spec.restarts, "ensemble": spec.ensemble,
          "member_steps": spec.member_steps, "target": target_meta["index"],
          "intended": target_meta["intended_class"], "model": v.model,
          "victim_epochs": v.epochs, "seed": spec.seed,
          "no_augment": v.augment is False,
          "epoch_schedule": v.epoch_schedule}


def _craft_target(kind, data, spec, splits, victim_splits, work, bases,
                  target_meta, key, attack_meta, reporter):
  """Trains the crafting model on ``victim_splits`` and crafts the poisons
  of the rows ``bases``: ``(poisons, objective per step, the victim's
  entry)``."""
  model, state, victim_meta = train_victim(
      data, victim_splits, dataclasses.replace(spec.victim, seed=spec.seed),
      work, reporter)
  target_x = splits.x_test[target_meta["index"]]
  _crafting_model_verdict(model, state, target_x, target_meta, reporter)
  c = TargetCrafting(data, spec, splits, work, model, state,
                     (splits.x_train[bases], splits.y_train[bases]),
                     (target_x, target_meta["intended_class"]), key,
                     attack_meta, reporter)
  poisons_x, losses = kind.craft(c)
  reporter.pause()
  return np.asarray(poisons_x), np.asarray(losses), victim_meta


def run_target_poison(data: DataSpec, spec: TargetSpec, out,
                      reporter: Reporter = None):
  """Crafts ``spec``'s targeted poisoned set of ``data``'s training split
  into the ``.npz`` file ``out`` (resuming from ``out.work/``); returns the
  `PoisonedSet` (its ``meta["target"]`` and ``meta["attacks"]`` say what
  was crafted).

  Raises:
    ConfigError: an invalid setting, or a work folder of other settings.
    DataError: a missing or corrupt data file.
  """
  reporter = reporter or Reporter()
  kind, eps, steps = _check_targeted(spec)
  out = _check_file(out)
  dataset, splits = load_splits(data, reporter)
  n = len(splits.x_train)
  key = jax.random.key(spec.seed)
  victim_splits, target_meta, candidates, m = _target_and_bases(
      kind, spec, splits, key)
  work = files.work_dir(out, _target_settings(data, dataset, splits, spec,
                                              eps, steps, target_meta))
  bases = np.sort(np.asarray(jax.random.permutation(
      jax.random.fold_in(key, 2), candidates))[:m])
  intended = target_meta["intended_class"]
  reporter.note(f"target: test image {target_meta['index']} (class "
                f"{target_meta['true_class']}) -> intended class {intended};"
                f" {m} poisons of class {intended} "
                f"({target_meta['scenario']})")
  attack_meta = {"name": spec.attack, "eps": eps, "count": m,
                 "steps": steps}
  poisons_x, losses, victim_meta = _craft_target(
      kind, data, spec, splits, victim_splits, work, bases, target_meta, key,
      attack_meta, reporter)
  if poisons_x.shape != (m,) + splits.x_train.shape[1:] or (
      poisons_x.dtype != np.uint8):
    raise ConfigError(f"attack {spec.attack!r} returned {poisons_x.dtype} "
                      f"poisons of shape {poisons_x.shape}; uint8 of "
                      f"{(m,) + splits.x_train.shape[1:]} were asked for")
  attack_meta["final_objective"] = float(losses[-1]) if len(losses) else None
  x_out = splits.x_train.copy()
  x_out[bases] = poisons_x
  ids = np.full(n, -1, np.int8)
  ids[bases] = 0
  meta = {"dataset": data.dataset, "source": dataset.source,
          "num_classes": splits.num_classes, "ratio": m / n,
          "seed": spec.seed, "split_seed": data.split_seed,
          "num_val": len(splits.x_val), "subset": data.subset,
          "attacks": [attack_meta], "victim": victim_meta,
          "target": target_meta, "clean_sha256": _clean_sha(splits)}
  ps = attacks.PoisonedSet(x_out, splits.y_train, ids, np.arange(n), meta,
                           splits.x_test[target_meta["index"]])
  attacks.save_poisoned(out, ps)
  shutil.rmtree(work, ignore_errors=True)
  return ps
