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
import pathlib
import shutil
from typing import Optional, Tuple

import flax.serialization
import jax
import numpy as np

from hint_jax import attacks, paths
from hint_jax.attacks import deepconfuse_published, targeted
from hint_jax.attacks.deepconfuse import (DeepConfuseConfig,
                                          deepconfuse_poison, train_generator)
from hint_jax.errors import ConfigError
from hint_jax.pipeline import files
from hint_jax.pipeline.specs import DataSpec
from hint_jax.pipeline.training import (Reporter, clean_model_folder,
                                        clean_train_config, load_splits,
                                        target_outcome, train_clean)
from hint_jax.train import transfer
from hint_jax.train.augment import random_shift_flip
from hint_jax.train.loop import Trainer
from hint_jax.train.presets import default_model, preset, preset_key

ATTACKS = ("pgd", "dap", "durp", "dc")
# Budgets of the untargeted attacks, [0, 1] pixel units, by preset key
# (`hint_jax.train.presets.preset_key`: "generic" is the user's own data,
# folder: / npz:, where 8/255 is the field's usual L-infinity budget for
# natural images; a start, not tuned).
DEFAULT_EPS = {"mnist": 0.3, "cifar10": 8 / 255, "digits": 0.3,
               "generic": 8 / 255}
# DAP steps of eps/5 and the reduced DeepConfuse generator's steps per
# dataset (otherwise 100 and 1000); the results READMEs give the reasons.
DEFAULT_DAP_STEPS = {"mnist": 50}
DEFAULT_DC_STEPS = {"mnist": 500}
# Which DeepConfuse generator `dc` uses: the authors' published MNIST
# generator, or the reduced one trained here (the only one for other data).
DC_GENERATORS = ("published", "reduced")
DEFAULT_DC_GENERATOR = {"mnist": "published"}
CHUNK = 2000   # examples per saved chunk

TARGETED = ("gm", "mp", "bp", "fc")
SCENARIO = {"gm": "scratch", "mp": "scratch", "bp": "transfer",
            "fc": "transfer"}
# 16/255, except MetaPoison's 8/255.
DEFAULT_TARGETED_EPS = {"gm": 16 / 255, "mp": 8 / 255, "bp": 16 / 255,
                        "fc": 16 / 255}
DEFAULT_TARGETED_STEPS = {"gm": 250, "mp": 60, "bp": 200, "fc": 200}
PRETRAIN_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class VictimSpec:
  """The clean model an attack is crafted on.

  Attributes:
    model: None for the dataset's default.
    epochs: clean training epochs (None: the dataset's preset).
    seed: seed of its initialisation and data order.
    augment: None for the preset's augmentation, else on/off.
    epoch_schedule: see `TrainSpec`.
    victim_dir: the shared clean-model cache (None: trained in the job's
      work folder and removed with it).
  """
  model: Optional[str] = None
  epochs: Optional[int] = None
  seed: int = 0
  augment: Optional[bool] = None
  epoch_schedule: str = "scaled"
  victim_dir: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PoisonSpec:
  """An untargeted poisoning job: ``attacks`` share a fraction ``ratio`` of
  the training examples equally. ``None`` takes the dataset's default
  (``DEFAULT_EPS``, ``DEFAULT_DAP_STEPS``, ``DEFAULT_DC_STEPS``,
  ``DEFAULT_DC_GENERATOR``; ``dc_weights``: the published generator's file
  in the data folder). ``seed`` also seeds the victim."""
  attacks: Tuple[str, ...] = ATTACKS
  ratio: float = 1.0
  eps: Optional[float] = None
  pgd_steps: int = 40
  pgd_step_size: float = 0.01
  dap_steps: Optional[int] = None
  durp_values: str = "sign"
  dc_generator: Optional[str] = None
  dc_weights: Optional[str] = None
  dc_steps: Optional[int] = None
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


def train_victim(data: DataSpec, splits, victim: VictimSpec, work,
                 reporter: Reporter, shape_epochs=None):
  """Trains (or reloads from the cache or ``work``) the clean victim on
  ``splits``: ``(model, state, meta)``, ``meta`` as the file records it."""
  model_name = victim.model or default_model(data.dataset,
                                                splits.x_train.shape[1:])
  schedule = {"epoch_schedule": victim.epoch_schedule,
              "shape_epochs": shape_epochs}
  folder, identity = work, {}
  if victim.victim_dir is not None:
    folder, identity = clean_model_folder(
        victim.victim_dir, data.dataset, data.split_seed, data.subset, splits,
        model_name, victim.epochs, victim.seed, victim.augment, **schedule)
  model, state, trainer, acc = train_clean(
      data.dataset, model_name, splits, victim.epochs, victim.seed, folder,
      reporter, "victim: training", augment=victim.augment, **schedule,
      **identity)
  reporter.note(f"victim: test accuracy {100 * acc:.2f}%")
  return model, state, {"model": model_name,
                        "epochs": trainer.config.epochs, "seed": victim.seed,
                        "augment": trainer.config.augment,
                        "epoch_schedule": victim.epoch_schedule,
                        "lr_milestones": list(
                            trainer.config.optim.lr_milestones),
                        "test_accuracy": acc}


def _clean_sha(splits):
  return hashlib.sha256(np.ascontiguousarray(splits.x_train).tobytes()
                        ).hexdigest()


# ----------------------------------------------------------- untargeted
def _published_generator(data, spec, names, generator):
  """For the published generator, loads and checks its file before any
  work starts: None for the reduced generator (or no ``dc``), else a dict
  with the parameters (``params``), the file's name and its sha256."""
  if "dc" not in names or generator == "reduced":
    return None
  if data.dataset != "mnist":
    raise ConfigError(f"the published DeepConfuse generator is the authors' "
                      f"MNIST generator; for {data.dataset} use the "
                      "reduced one (dc_generator 'reduced', "
                      "--dc-generator reduced)")
  path = pathlib.Path(spec.dc_weights) if spec.dc_weights else (
      deepconfuse_published.default_path(paths.data_dir(data.data_dir)))
  params = deepconfuse_published.load_generator(path)
  sha = deepconfuse_published.file_sha256(path)
  return {"params": params, "weights_file": path.name, "sha256": sha,
          "authors_file": sha == deepconfuse_published.PUBLISHED_SHA256}


@dataclasses.dataclass
class _Crafting:
  """An untargeted crafting job's resolved settings and what its attacks
  share: the victim's logits, the DeepConfuse generator."""
  spec: PoisonSpec
  splits: object
  work: pathlib.Path
  reporter: Reporter
  eps: float
  dap_steps: int
  dc_steps: int
  dc_published: Optional[dict]
  logits_fn: object = None
  generator: object = None
  dc_cfg: Optional[DeepConfuseConfig] = None


def _resolve(data: DataSpec, spec: PoisonSpec, names):
  """``(eps, dap_steps, dc_steps, generator name)`` with the dataset's
  defaults, checked."""
  if not names or any(a not in ATTACKS for a in names) or len(set(names)) \
      != len(names):
    raise ConfigError(f"attacks must be distinct, from {', '.join(ATTACKS)};"
                      f" got {','.join(names)!r}")
  kind = preset_key(data.dataset)
  eps = DEFAULT_EPS[kind] if spec.eps is None else spec.eps
  dap_steps = spec.dap_steps or DEFAULT_DAP_STEPS.get(kind, 100)
  dc_steps = spec.dc_steps or DEFAULT_DC_STEPS.get(kind, 1000)
  generator_name = spec.dc_generator or DEFAULT_DC_GENERATOR.get(
      kind, "reduced")
  if generator_name not in DC_GENERATORS:
    raise ConfigError(f"dc_generator must be one of {DC_GENERATORS}, got "
                      f"{generator_name!r}")
  attacks.budget_levels(eps)   # checks eps
  if not 0.0 < spec.ratio <= 1.0:
    raise ConfigError(f"ratio must be in (0, 1] (0 would poison nothing), "
                      f"got {spec.ratio}")
  return eps, dap_steps, dc_steps, generator_name


def _attack_meta(c: _Crafting, name: str, count: int) -> dict:
  """What the poisoned file records of one attack's settings."""
  meta = {"name": name, "eps": c.eps, "count": count}
  if name == "pgd":
    meta.update(steps=c.spec.pgd_steps, step_size=c.spec.pgd_step_size,
                random_start=True)
  elif name == "dap":
    meta.update(steps=c.dap_steps, step_size=c.eps / 5,
                target="(y + 1) mod num_classes")
  elif name == "durp":
    meta.update(values=c.spec.durp_values)
  return meta


def _prepare_dc(c: _Crafting, rows, akey, meta):
  """Loads the published generator, or trains the reduced one (kept in
  the work folder), into ``c``; records which in ``meta``."""
  if c.dc_published is not None:
    c.generator = c.dc_published.pop("params")
    meta.update(generator="published", **c.dc_published,
                note="the DeepConfuse authors' trained MNIST generator, "
                "eval mode: clip(x + eps * g(x), 0, 1) in whole grey "
                "levels within the budget")
    return
  c.dc_cfg = cfg = DeepConfuseConfig(eps=c.eps, steps=c.dc_steps)
  meta.update(generator="reduced", steps=cfg.steps,
              batch_size=cfg.batch_size, classifier_lr=cfg.classifier_lr,
              generator_lr=cfg.generator_lr, width=cfg.width,
              note="small conv autoencoder and CNN trained here; steps "
              "reduced from the original's training to fit a CPU")
  if not len(rows):
    return
  gen_file = c.work / "dc_generator.msgpack"
  if gen_file.exists():
    c.generator = flax.serialization.msgpack_restore(gen_file.read_bytes())
    return
  c.reporter.note(f"dc: training the generator, {cfg.steps} steps")
  c.generator, _, losses = train_generator(
      c.splits.x_train, c.splits.y_train, akey,
      num_classes=c.splits.num_classes, config=cfg,
      on_progress=lambda d, t: c.reporter.stage("dc generator", d, t))
  c.reporter.pause()
  meta["final_unrolled_clean_loss"] = float(losses[-10:].mean())
  files.write_bytes_atomic(gen_file, flax.serialization.msgpack_serialize(
      jax.device_get(c.generator)))


def _craft(c: _Crafting, name, xb, yb, akey, chunk, report):
  """One chunk of one attack's poisoned images."""
  if name == "pgd":
    return attacks.pgd_attack(c.logits_fn, xb, yb,
                              jax.random.fold_in(akey, chunk), eps=c.eps,
                              steps=c.spec.pgd_steps,
                              step_size=c.spec.pgd_step_size,
                              on_progress=report)
  if name == "dap":
    return attacks.dap_attack(c.logits_fn, xb, yb,
                              num_classes=c.splits.num_classes, eps=c.eps,
                              steps=c.dap_steps, on_progress=report)
  if name == "dc" and c.dc_published is not None:
    return deepconfuse_published.published_poison(c.generator, xb,
                                                   eps=c.eps)
  if name == "dc":
    return deepconfuse_poison(c.generator, xb, config=c.dc_cfg)
  # One perturbation per class for the whole attack: the key does not
  # depend on the chunk.
  return attacks.durp_attack(xb, yb, akey, num_classes=c.splits.num_classes,
                             eps=c.eps, values=c.spec.durp_values)


def _craft_rows(c: _Crafting, name, rows, akey, x_out):
  """Writes attack ``name``'s images of ``rows`` into ``x_out``, chunk by
  chunk, each chunk saved in the work folder (and reused when present)."""
  for chunk, start in enumerate(range(0, len(rows), CHUNK)):
    part = rows[start:start + CHUNK]
    chunk_file = c.work / f"{name}_{chunk:05d}.npy"
    if chunk_file.exists():
      x_out[part] = np.load(chunk_file)
      continue
    report = (lambda d, t, s=start: c.reporter.stage(name, s + d, len(rows)))
    adv = _craft(c, name, c.splits.x_train[part], c.splits.y_train[part],
                 akey, chunk, report)
    np.save(chunk_file, adv)
    x_out[part] = adv
  c.reporter.pause()


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
  names = list(spec.attacks)
  eps, dap_steps, dc_steps, generator_name = _resolve(data, spec, names)
  dc_published = _published_generator(data, spec, names, generator_name)
  out = _check_file(out)
  dataset, splits = load_splits(data, reporter)
  n = len(splits.x_train)
  v = spec.victim
  # Everything that determines the result; a work folder from other
  # settings is refused rather than mixed in.
  settings = {"dataset": data.dataset, "source": dataset.source,
              "split_seed": data.split_seed, "num_val": len(splits.x_val),
              "subset": data.subset, "num_train": n, "attacks": names,
              "ratio": spec.ratio, "eps": eps, "pgd_steps": spec.pgd_steps,
              "pgd_step_size": spec.pgd_step_size,
              "dap_steps": dap_steps, "dc_steps": dc_steps,
              "durp_values": spec.durp_values,
              "dc_generator": generator_name,
              "dc_weights_sha256": (dc_published or {}).get("sha256"),
              "model": v.model, "victim_epochs": v.epochs, "seed": spec.seed,
              "epoch_schedule": v.epoch_schedule}
  c = _Crafting(spec, splits, files.work_dir(out, settings), reporter, eps,
                dap_steps, dc_steps, dc_published)
  key = jax.random.key(spec.seed)
  ids = attacks.assign_attacks(n, spec.ratio, len(names),
                               jax.random.fold_in(key, 1))
  victim_meta = None
  if any(a in ("pgd", "dap") for a in names):
    model, state, victim_meta = train_victim(
        data, splits, dataclasses.replace(v, seed=spec.seed), c.work,
        reporter)
    c.logits_fn = model.logits_fn(state.params, state.model_state)
  x_out = splits.x_train.copy()
  attack_meta = []
  for a, name in enumerate(names):
    rows = np.flatnonzero(ids == a)
    akey = jax.random.fold_in(key, 100 + a)
    meta = _attack_meta(c, name, int(len(rows)))
    if name == "dc":
      _prepare_dc(c, rows, akey, meta)
    attack_meta.append(meta)
    reporter.note(f"{name}: {len(rows)} examples")
    _craft_rows(c, name, rows, akey, x_out)
  meta = {"dataset": data.dataset, "source": dataset.source,
          "num_classes": splits.num_classes, "ratio": spec.ratio,
          "seed": spec.seed, "split_seed": data.split_seed,
          "num_val": len(splits.x_val), "subset": data.subset,
          "attacks": attack_meta, "victim": victim_meta,
          "clean_sha256": _clean_sha(splits),
          "notes": "PGD follows the specified defaults unless changed; "
                   "DeepConfuse's generator is named in its entry; the "
                   "victim is the dataset's training preset unless its "
                   "epochs are given.",
          "reductions": _reductions(names, dap_steps, dc_steps,
                                    dc_published)}
  ps = attacks.PoisonedSet(x_out, splits.y_train, ids, np.arange(n), meta)
  attacks.save_poisoned(out, ps)
  shutil.rmtree(c.work, ignore_errors=True)
  return ps


def _reductions(names, dap_steps, dc_steps, dc_published):
  out = []
  if "dap" in names and dap_steps < 100:
    out.append(f"DAP: {dap_steps} steps of eps/5 instead of the specified "
               "100")
  if "dc" in names and dc_published is None:
    out.append(f"DeepConfuse: the reduced generator, {dc_steps} steps of a "
               "small network, far below the original's training")
  return out


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


def member_epochs(dataset, spec: TargetSpec):
  """The clean epochs of MetaPoison's members: the victim's, then member i
  of M about i/M of them (at least one)."""
  epochs = spec.victim.epochs or preset(dataset).epochs
  return [epochs] + [max(1, round(epochs * i / spec.ensemble))
                     for i in range(1, spec.ensemble)]


def _surrogates(data, spec, splits, work, state, reporter):
  """MetaPoison's ensemble as train states: the victim's ``state`` plus
  ``ensemble - 1`` further models (seeds seed+1, ...) trained for the
  staggered epochs of `member_epochs`."""
  states = [state]
  epochs = member_epochs(data.dataset, spec)
  for i, e in enumerate(epochs[1:], start=1):
    member = dataclasses.replace(spec.victim, seed=spec.seed + i, epochs=e)
    member_dir = work / f"member_{i}"
    member_dir.mkdir(exist_ok=True)
    _, st, _ = train_victim(data, splits, member, member_dir, reporter,
                            shape_epochs=epochs[0])
    states.append(st)
  return states


def _check_targeted(spec: TargetSpec):
  """``(eps, steps)`` of a targeted job, its settings checked."""
  if spec.attack not in TARGETED:
    raise ConfigError(f"attack must be one of {', '.join(TARGETED)}, got "
                      f"{spec.attack!r}")
  eps = DEFAULT_TARGETED_EPS[spec.attack] if spec.eps is None else spec.eps
  attacks.budget_levels(eps)
  if not 0.0 < spec.budget <= 1.0:
    raise ConfigError(f"budget must be in (0, 1], got {spec.budget}")
  if spec.lr is not None and not spec.lr > 0:
    raise ConfigError(f"lr must be > 0, got {spec.lr}")
  return eps, spec.steps or DEFAULT_TARGETED_STEPS[spec.attack]


def _target_and_bases(spec: TargetSpec, splits, key):
  """Where the poisons come from and what the victim trains on (the
  pre-training part in the transfer scenario), the target, and the
  candidate base images: ``(victim_splits, target_meta, candidates, m)``
  with ``m`` the number of poisons."""
  n, k = len(splits.x_train), splits.num_classes
  scenario = SCENARIO[spec.attack]
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


def _metapoison(data, spec, splits, work, model, state, bases, target,
                key, attack_meta, reporter):
  """MetaPoison's poisons over its ensemble of surrogates."""
  (base_x, base_y), (target_x, intended) = bases, target
  states = _surrogates(data, spec, splits, work, state, reporter)
  del state   # its buffers went to the members' training
  epochs = member_epochs(data.dataset, spec)
  victim = spec.victim
  # The members go on along the victim's run (scaled) or the preset's
  # schedule (absolute).
  trainer = Trainer(model, clean_train_config(
      data.dataset,
      epochs[0] if victim.epoch_schedule == "scaled" else None,
      victim.augment, victim.epoch_schedule), len(splits.x_train))
  member_steps = spec.member_steps or trainer.steps_per_epoch
  advance = targeted.trainer_advance(
      trainer, states, splits.x_train, splits.y_train, member_steps,
      jax.random.fold_in(key, 4))
  cfg = targeted.MetaPoisonConfig(
      eps=attack_meta["eps"], steps=attack_meta["steps"],
      lr=targeted.MetaPoisonConfig.lr if spec.lr is None else spec.lr)
  out = targeted.metapoison(
      model, [(st.params, st.model_state) for st in states], base_x, base_y,
      target_x, intended, splits.x_train, splits.y_train,
      jax.random.fold_in(key, 3), config=cfg, advance_fn=advance,
      on_progress=lambda d, t: reporter.stage("mp", d, t))
  cfg_meta = dataclasses.asdict(cfg)
  cfg_meta.pop("advance")
  attack_meta.update(cfg_meta, ensemble=len(epochs), member_epochs=epochs,
                     member_steps=member_steps, trajectory="clean",
                     note="members advance on clean batches with their own "
                     "optimizer; no ReColorAdv colour perturbation and no "
                     "member re-initialisation (see targeted.metapoison)")
  return out


def _craft_targeted(data, spec, splits, work, model, state, bases, target,
                    key, attack_meta, reporter):
  """The poisons of ``spec.attack`` from the base images ``bases`` (x, y)
  for ``target`` (image, intended class): ``(poisons, objective per
  step)``; the attack's settings go into ``attack_meta``."""
  attack, eps, steps = spec.attack, attack_meta["eps"], attack_meta["steps"]
  (base_x, base_y), (target_x, intended) = bases, target
  stage = lambda name: (lambda d, t: reporter.stage(name, d, t))
  if attack in ("bp", "fc"):
    fn = (targeted.bullseye_polytope if attack == "bp"
          else targeted.feature_collision)
    lr = 0.01 if spec.lr is None else spec.lr
    attack_meta.update(lr=lr, optimizer="adam")
    return fn(model.features_fn(state.params, state.model_state), base_x,
              target_x, eps=eps, steps=steps, lr=lr,
              on_progress=stage(attack))
  if attack == "gm":
    cfg = targeted.GradientMatchingConfig(
        eps=eps, steps=steps, restarts=spec.restarts,
        lr=targeted.GradientMatchingConfig.lr if spec.lr is None
        else spec.lr)
    augment = (random_shift_flip if data.dataset == "cifar10"
               and spec.victim.augment is not False else None)
    poisons, losses = targeted.gradient_matching(
        model, state.params, state.model_state, base_x, base_y, target_x,
        intended, jax.random.fold_in(key, 3), config=cfg, augment=augment,
        on_progress=stage("gm"))
    attack_meta.update(restarts=cfg.restarts, lr=cfg.lr,
                       optimizer="signed adam",
                       augmentation=augment is not None)
    return poisons, losses.min(axis=1)
  return _metapoison(data, spec, splits, work, model, state, bases, target,
                     key, attack_meta, reporter)


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
  eps, steps = _check_targeted(spec)
  out = _check_file(out)
  dataset, splits = load_splits(data, reporter)
  n = len(splits.x_train)
  key = jax.random.key(spec.seed)
  victim = dataclasses.replace(spec.victim, seed=spec.seed)
  victim_splits, target_meta, candidates, m = _target_and_bases(
      spec, splits, key)
  index, intended = target_meta["index"], target_meta["intended_class"]
  settings = {"dataset": data.dataset, "source": dataset.source,
              "split_seed": data.split_seed, "num_val": len(splits.x_val),
              "subset": data.subset, "attack": spec.attack, "eps": eps,
              "steps": steps, "lr": spec.lr, "budget": spec.budget,
              "restarts": spec.restarts, "ensemble": spec.ensemble,
              "member_steps": spec.member_steps, "target": index,
              "intended": intended, "model": victim.model,
              "victim_epochs": victim.epochs, "seed": spec.seed,
              "no_augment": victim.augment is False,
              "epoch_schedule": victim.epoch_schedule}
  work = files.work_dir(out, settings)
  bases = np.sort(np.asarray(jax.random.permutation(
      jax.random.fold_in(key, 2), candidates))[:m])
  reporter.note(f"target: test image {index} (class "
                f"{target_meta['true_class']}) -> intended class {intended};"
                f" {m} poisons of class {intended} "
                f"({target_meta['scenario']})")
  model, state, victim_meta = train_victim(data, victim_splits, victim, work,
                                           reporter)
  target_x = splits.x_test[index]
  _crafting_model_verdict(model, state, target_x, target_meta, reporter)
  attack_meta = {"name": spec.attack, "eps": eps, "count": m,
                 "steps": steps}
  poisons, losses = _craft_targeted(
      data, spec, splits, work, model, state,
      (splits.x_train[bases], splits.y_train[bases]), (target_x, intended),
      key, attack_meta, reporter)
  reporter.pause()
  attack_meta["final_objective"] = float(losses[-1]) if len(losses) else None
  x_out = splits.x_train.copy()
  x_out[bases] = poisons
  ids = np.full(n, -1, np.int8)
  ids[bases] = 0
  meta = {"dataset": data.dataset, "source": dataset.source,
          "num_classes": splits.num_classes, "ratio": m / n,
          "seed": spec.seed, "split_seed": data.split_seed,
          "num_val": len(splits.x_val), "subset": data.subset,
          "attacks": [attack_meta], "victim": victim_meta,
          "target": target_meta, "clean_sha256": _clean_sha(splits)}
  ps = attacks.PoisonedSet(x_out, splits.y_train, ids, np.arange(n), meta,
                           target_x)
  attacks.save_poisoned(out, ps)
  shutil.rmtree(work, ignore_errors=True)
  return ps
