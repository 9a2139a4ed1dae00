"""``hint-jax train``: train a model on a dataset, write result.json and
metrics.jsonl, resume from the last finished epoch if interrupted."""

import argparse
import dataclasses
import hashlib
import json
import pathlib
import platform
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import attacks
from hint_jax import data as data_lib
from hint_jax import defenses
from hint_jax import hint as hint_lib
from hint_jax.cli import checkpoint
from hint_jax.cli.common import (Progress, StageProgress, check_out,
                                 finite_float, info, lock_folder, make_out,
                                 nonneg_int, positive_float, positive_int,
                                 write_bytes_atomic, write_json_atomic)
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import MODEL_NAMES, get_model, num_params
from hint_jax.parallel.distributed import process_rows as parallel_rows
from hint_jax.train import Trainer, fit
from hint_jax.train import transfer
from hint_jax.train.presets import (EPOCH_SCHEDULES, PRESETS, default_model,
                                    preset, scale_epoch)

DEFENSES = ("none", "hint", "epic", "friends", "atda")
NOISE_FILE = "hint_noise.npz"


def add_data_args(p):
  p.add_argument("--dataset", required=True,
                 choices=data_lib.DATASET_NAMES)
  p.add_argument("--data-dir", default=None,
                 help="data directory (default: $HINT_JAX_DATA_DIR, else "
                 "~/.cache/hint_jax/data)")
  p.add_argument("--source", default="auto",
                 help="where to read the dataset from: auto, idx (mnist), "
                 "pickle|jpeg (cifar10), npz, tfds; auto picks a complete "
                 "official copy, then (cifar10) the JPEG copy, then the "
                 "exact-pixel subset")
  p.add_argument("--subset", type=positive_int, default=None,
                 help="train on this many training images (seeded choice)")
  p.add_argument("--num-val", type=nonneg_int, default=None,
                 help="validation images held out of the training set "
                 "(default: 1000 for mnist/cifar10, 100 for digits)")
  p.add_argument("--split-seed", type=nonneg_int, default=0,
                 help="seed of the train/validation split")
  p.add_argument("--own-data", action="store_true",
                 help="accept dataset files whose checksums differ from the "
                 "official ones (your own MNIST IDX files); without it they "
                 "are refused")


def add_train_args(p):
  p.add_argument("--model", choices=MODEL_NAMES, default=None,
                 help="default: convnet (mnist), resnet18 (cifar10), "
                 "convnet_small (digits)")
  p.add_argument("--epochs", type=nonneg_int, default=None,
                 help="default: the dataset's preset; 0 evaluates the "
                 "untrained model (said on stderr)")
  p.add_argument("--batch-size", type=positive_int, default=None)
  p.add_argument("--lr", type=positive_float, default=None)
  p.add_argument("--seed", type=nonneg_int, default=0,
                 help="seed of initialisation, data order and augmentation")
  p.add_argument("--eval-every", type=nonneg_int, default=None,
                 help="evaluate every N epochs (0: only at the end)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--poison", default=None, metavar="FILE",
                 help="train on a poisoned set written by `hint-jax poison` "
                 "(made from the same split)")
  p.add_argument("--no-augment", action="store_true",
                 help="train without the preset's augmentation (CIFAR-10: "
                 "random shift and flip); the paper's MetaPoison setting")
  add_epoch_schedule_arg(p)
  p.add_argument("--overwrite", action="store_true",
                 help="discard a checkpoint of a run with other settings")
  p.add_argument("--no-progress", action="store_true")
  add_parallel_args(p)


def add_epoch_schedule_arg(p):
  p.add_argument("--epoch-schedule", choices=EPOCH_SCHEDULES,
                 default="scaled",
                 help="a run shorter than its dataset's preset: 'scaled' "
                 "(default) places the preset's learning-rate milestones and "
                 "HINT's default schedule at the same fractions of the run "
                 "(CIFAR-10 in 15 of 80 epochs: lr x0.1 at 6/9/13, HINT at "
                 "1/3/8); 'absolute' keeps the preset's epoch numbers")


def _devices(text):
  if text == "all":
    return None
  return positive_int(text)


def add_parallel_args(p):
  g = p.add_argument_group(
      "devices and hosts (results equal one device's up to float rounding)")
  g.add_argument("--devices", type=_devices, default=1, metavar="N|all",
                 help="split every batch and HINT's passes over N devices "
                 "(a jax.sharding mesh; default 1, the plain one-device path)")
  g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="multi-host: the address of process 0 (also "
                 "JAX_COORDINATOR_ADDRESS); start the same command on every "
                 "host, each keeps only its rows of the training set")
  g.add_argument("--num-processes", type=positive_int, default=None)
  g.add_argument("--process-id", type=nonneg_int, default=None)


def make_mesh(args, defense):
  """Starts the distributed runtime if asked, then returns the data mesh
  for ``--devices`` (None for the plain one-device path)."""
  from hint_jax import parallel  # pylint: disable=g-import-not-at-top
  multi = parallel.distributed.initialize(args.coordinator,
                                          args.num_processes, args.process_id)
  if multi and defense not in ("none", "atda"):
    raise ConfigError(f"--defense {defense} runs on one host only (it "
                      "scores or rewrites the whole training set); across "
                      "hosts use --defense none or atda")
  if multi or args.devices != 1:
    return parallel.make_data_mesh(None if multi else args.devices)
  return None


def _schedule(text):
  text = text.strip()
  if text.lower() in ("", "none"):
    return ()
  try:
    epochs = tuple(int(t) for t in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma-separated list of epochs, e.g. 5,15,40")
  return epochs


def add_defense_args(p):
  p.add_argument("--defense", choices=DEFENSES, default="none",
                 help="defence to train with (default: none)")
  g = p.add_argument_group("HINT (--defense hint; defaults are the "
                           "authors' settings)")
  g.add_argument("--ratio", type=finite_float, default=None,
                 help="fraction r of training examples given noise "
                 "(default 0.5; 1 noises all and skips scoring)")
  g.add_argument("--gamma", type=finite_float, default=None,
                 help="noise step size (default 0.1)")
  g.add_argument("--beta", type=finite_float, default=None,
                 help="L-inf bound of the noise in [0,1] pixel units "
                 "(default 16/255)")
  g.add_argument("--schedule", type=_schedule, default=None,
                 help="0-based epochs before which the noise is updated, "
                 "e.g. 5,15,40 (default: mnist 9, cifar10 5,15,40, digits "
                 "5,15, scaled to a shorter run, or trimmed to it under "
                 "--epoch-schedule absolute)")
  g.add_argument("--gamma-decay-epoch", type=nonneg_int, default=None,
                 help="use gamma/10 from this epoch on (default: the "
                 "authors' 40, scaled with the schedule under "
                 "--epoch-schedule scaled)")
  g.add_argument("--no-gamma-decay", action="store_true",
                 help="keep gamma for every update")
  g.add_argument("--sign-step", action="store_true",
                 help="step along sign(I_pert)")
  g.add_argument("--rounding", choices=hint_lib.config.ROUNDINGS,
                 default="truncate",
                 help="how noised images are stored as uint8 (authors: "
                 "truncate)")
  g.add_argument("--hessian-from", choices=hint_lib.config.HESSIAN_FROM,
                 default="selected",
                 help="images the Hessian of later updates is taken over "
                 "(authors: the selected set)")
  g.add_argument("--grad-space", choices=hint_lib.config.GRAD_SPACES,
                 default="normalized",
                 help="for models that normalise inputs: gradient w.r.t. "
                 "the normalised input (authors) or the pixels")
  g.add_argument("--solver", choices=hint_lib.config.SOLVERS, default="cg",
                 help="s_test solver (cg: the fixed point of the authors' "
                 "LiSSA; lissa: theirs)")
  g.add_argument("--damping", type=finite_float, default=0.5,
                 help="lambda of (H + lambda I) (authors' LiSSA: 0.5)")
  g.add_argument("--hint-seed", type=nonneg_int, default=0,
                 help="seed of HINT's own randomness (LiSSA batches, the "
                 "controls' draws)")
  g.add_argument("--hint-direction", choices=hint_lib.config.DIRECTIONS,
                 default="influence",
                 help="control: random_sign keeps each update's per-pixel "
                 "magnitude |gamma I_pert| and draws its sign at random")
  g.add_argument("--hint-selection", choices=hint_lib.config.SELECTIONS,
                 default="influence",
                 help="control: random noises a random subset of the same "
                 "size instead of the top |I_up|")


def add_epic_args(p):
  g = p.add_argument_group("EPIC (--defense epic; defaults per dataset are "
                           "the paper's: MNIST K = 5, T = 2; CIFAR-10 K = "
                           "10, T = 4)")
  g.add_argument("--epic-warmup", type=nonneg_int, default=None,
                 help="epochs before the first selection (K)")
  g.add_argument("--epic-period", type=positive_int, default=None,
                 help="epochs between selections (T)")
  g.add_argument("--epic-budget", type=finite_float, default=0.1,
                 help="medoids per class, fraction of the class (0.1)")
  g.add_argument("--epic-scale", type=finite_float, default=10.0,
                 help="similarity exp(-||g_i - g_j|| / scale) (10)")


def add_friends_args(p):
  d = defenses.FriendsConfig()
  g = p.add_argument_group("FRIENDS (--defense friends; defaults are the "
                           "paper's)")
  g.add_argument("--friends-begin-epoch", type=nonneg_int,
                 default=d.begin_epoch,
                 help="epoch (0-based) before which the friendly noise is "
                 "computed, once")
  g.add_argument("--friends-steps", type=positive_int, default=d.steps)
  g.add_argument("--friends-lr", type=finite_float, default=d.lr)
  g.add_argument("--friends-mu", type=finite_float, default=d.mu)
  g.add_argument("--friends-clamp", type=finite_float, default=d.clamp,
                 help="friendly noise bound, [0,1] units (16/255)")
  g.add_argument("--friends-bernoulli", type=finite_float,
                 default=d.bernoulli,
                 help="Bernoulli noise amplitude, [0,1] units (8/255); 0 "
                 "turns it off")


def friends_config(args, epochs):
  cfg = defenses.FriendsConfig(
      begin_epoch=args.friends_begin_epoch, steps=args.friends_steps,
      lr=args.friends_lr, mu=args.friends_mu, clamp=args.friends_clamp,
      bernoulli=args.friends_bernoulli).validate()
  if cfg.begin_epoch >= epochs:
    raise ConfigError(f"--friends-begin-epoch {cfg.begin_epoch} is not "
                      f"before the end of a {epochs}-epoch run")
  return cfg


def _tau(text):
  if text.lower() == "none":
    return None
  return nonneg_int(text)


def add_atda_args(p):
  d = defenses.AtdaConfig()
  g = p.add_argument_group("ATDA (--defense atda: adversarial training, "
                           "FAT early stop)")
  g.add_argument("--atda-eps", type=finite_float, default=d.eps,
                 help="budget in --atda-norm, [0,1] units (0.25 against "
                 "untargeted attacks; the paper uses 0.062 against targeted "
                 "ones)")
  g.add_argument("--atda-norm", choices=defenses.atda.NORMS, default=d.norm,
                 help="the inner attack's norm: l2 (default, as the "
                 "reference code the paper cites) or linf")
  g.add_argument("--atda-steps", type=positive_int, default=d.steps)
  g.add_argument("--atda-step-size", type=finite_float, default=None,
                 help="default eps/5")
  g.add_argument("--atda-tau", type=_tau, default=d.tau,
                 help="FAT: steps allowed after the first misclassification "
                 "(0); 'none' for plain PGD adversarial training")


def atda_config(args):
  return defenses.AtdaConfig(
      eps=args.atda_eps, norm=args.atda_norm, steps=args.atda_steps,
      step_size=args.atda_step_size, tau=args.atda_tau).validate()


def epic_config(args, epochs):
  base = defenses.PAPER_EPIC.get(args.dataset, defenses.EpicConfig())
  cfg = dataclasses.replace(
      base, budget=args.epic_budget, scale=args.epic_scale,
      **{k: v for k, v in (("warmup", args.epic_warmup),
                           ("period", args.epic_period)) if v is not None})
  cfg.validate()
  if cfg.warmup >= epochs:
    raise ConfigError(f"EPIC warm-up of {cfg.warmup} epochs leaves no "
                      f"selection in a {epochs}-epoch run; lower "
                      f"--epic-warmup")
  return cfg


def register(sub):
  p = sub.add_parser("train", help="train a model (optionally defended)")
  add_data_args(p)
  add_train_args(p)
  add_defense_args(p)
  add_epic_args(p)
  add_friends_args(p)
  add_atda_args(p)
  p.add_argument("--victim-dir", default=None,
                 help="transfer-scenario files only: the folder where "
                 "`target-poison --victim-dir` left the pre-trained "
                 "extractor; it is reused (and trained there if missing) "
                 "instead of being trained again in OUT")
  p.set_defaults(func=run)


def _scaled(args, epochs) -> bool:
  """Whether the run's default schedules are scaled to its length."""
  return (getattr(args, "epoch_schedule", "scaled") == "scaled"
          and epochs < PRESETS[args.dataset].epochs)


def _hint_schedule(args, epochs):
  """``(schedule, changed)``: ``--schedule``, else the dataset's default,
  scaled to the run's epochs (`_scaled`) or trimmed to them; ``changed``
  says the default was altered."""
  if args.schedule is not None:
    return args.schedule, False
  default = hint_lib.DEFAULT_SCHEDULES.get(args.dataset, ())
  if _scaled(args, epochs):
    schedule = hint_lib.config.scaled_schedule(
        default, epochs, PRESETS[args.dataset].epochs)
    return schedule, schedule != default
  schedule = tuple(e for e in default if e < epochs)
  if default and not schedule:
    raise ConfigError(f"no epoch of the default HINT schedule "
                      f"{list(default)} is within {epochs} epochs; pass "
                      f"--schedule (0-based epochs)")
  return schedule, schedule != default


def announce_hint_schedule(args, epochs):
  """Says on stderr when the default schedule was scaled or trimmed (once
  the run knows its epochs: a transfer file's top layer trains for its
  own)."""
  schedule, changed = _hint_schedule(args, epochs)
  if changed:
    how = "scaled" if _scaled(args, epochs) else "trimmed"
    info(f"HINT: default schedule "
         f"{list(hint_lib.DEFAULT_SCHEDULES[args.dataset])} {how} to "
         f"{list(schedule)} for {epochs} epochs")


def hint_config(args, epochs):
  """The HINT configuration from the command line; the default schedule
  (and the default gamma-decay epoch) is scaled or trimmed to the run's
  epochs (`announce_hint_schedule` says so), an explicit one is not."""
  schedule, _ = _hint_schedule(args, epochs)
  decay = args.gamma_decay_epoch
  if decay is None:
    decay = hint_lib.HintConfig.gamma_decay_epoch
    if _scaled(args, epochs):
      decay = scale_epoch(decay, epochs, PRESETS[args.dataset].epochs)
  cfg = hint_lib.paper_config(
      args.dataset, ratio=args.ratio, gamma=args.gamma, beta=args.beta,
      schedule=schedule,
      gamma_decay_epoch=decay,
      sign=args.sign_step, rounding=args.rounding,
      hessian_from=args.hessian_from, grad_space=args.grad_space,
      solver=args.solver, damping=args.damping, seed=args.hint_seed,
      direction=args.hint_direction, selection=args.hint_selection)
  if args.no_gamma_decay:  # (paper_config ignores None overrides)
    cfg = dataclasses.replace(cfg, gamma_decay_epoch=None)
  cfg.validate(epochs)
  return cfg


def target_outcome(model, state, target_x, target: dict) -> dict:
  """The trained model's verdict on a targeted attack's target image: the
  predicted class, the probabilities of the intended and the true class,
  and whether the attack succeeded (predicted == intended)."""
  x = jnp.asarray(target_x, jnp.float32)[None] / 255.0
  logits = model.apply_eval(state.params, state.model_state, x)[0]
  probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float32)))
  predicted = int(np.argmax(probs))
  return {**target, "predicted": predicted,
          "success": predicted == target["intended_class"],
          "intended_probability": float(probs[target["intended_class"]]),
          "true_probability": float(probs[target["true_class"]])}


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


def clean_model_folder(root, dataset, split_seed, subset, splits, model_name,
                       epochs, seed, augment=None, epoch_schedule="absolute",
                       shape_epochs=None):
  """Where ``--victim-dir root`` keeps the clean model that `train_clean`
  trains with these arguments, and the data identity to pass it as
  ``settings``: one sub-folder per (data, split, subset, training images,
  model, epochs, seed), named by a digest of them, so a model trained on
  other data or settings is never reused. `hint-jax poison`, `target-poison`
  and `train` (transfer files) share it: the extractor a targeted attack
  was crafted on is then trained once, not again by every victim.
  ``augment``: None for the preset's augmentation, else on/off; only an
  explicit ``False`` joins the key (models trained before the option
  existed, all with the preset's, keep their folders); so do learning-rate
  milestones other than the preset's (``epoch_schedule`` "scaled" on a
  short run, see `clean_train_config`)."""
  identity = {"data": dataset, "split_seed": split_seed,
              "num_val": len(splits.x_val), "subset": subset,
              "clean_sha256": hashlib.sha256(np.ascontiguousarray(
                  splits.x_train).tobytes()).hexdigest()}
  cfg = clean_train_config(dataset, epochs, augment, epoch_schedule,
                           shape_epochs)
  key = {**identity, "model": model_name, "epochs": cfg.epochs, "seed": seed}
  if augment is not None and augment != preset(dataset).augment:
    key["augment"] = bool(augment)
  if cfg.optim.lr_milestones != PRESETS[dataset].optim.lr_milestones:
    key["lr_milestones"] = list(cfg.optim.lr_milestones)
  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()
                          ).hexdigest()[:16]
  folder = pathlib.Path(root) / f"victim-{dataset}-{digest}"
  folder.mkdir(parents=True, exist_ok=True)
  return folder, identity


def clean_train_config(dataset, epochs, augment=None,
                       epoch_schedule="absolute", shape_epochs=None):
  """`train_clean`'s training configuration: the preset (``epochs`` if
  given, its milestones per ``epoch_schedule`` and ``shape_epochs``, see
  `hint_jax.train.presets.preset`), no evaluation between epochs. The
  default is "absolute", the schedule of the models crafted before the
  option existed; the commands pass their ``--epoch-schedule``."""
  return dataclasses.replace(
      preset(dataset, epochs=epochs, augment=augment,
             epoch_schedule=epoch_schedule, shape_epochs=shape_epochs),
      eval_every=0)


def train_clean(dataset, model_name, splits, epochs, seed, folder, progress,
                label, augment=None, epoch_schedule="absolute",
                shape_epochs=None, **settings):
  """Trains ``model_name`` on ``splits``' (clean) training images with the
  dataset's preset (``epochs`` if given), checkpointing every epoch in
  ``folder`` and resuming from it; a finished checkpoint is just reloaded.
  ``settings`` join the checkpoint's identity. ``augment``: None for the
  preset's augmentation, else on/off (recorded in the identity when it
  differs from the preset's). ``epoch_schedule``, ``shape_epochs``: see
  `clean_train_config` (milestones other than the preset's join the
  identity). Returns ``(model, state, trainer, test_accuracy)``."""
  cfg = clean_train_config(dataset, epochs, augment, epoch_schedule,
                           shape_epochs)
  model = get_model(model_name, splits.num_classes, splits.x_train.shape[1:])
  trainer = Trainer(model, cfg, len(splits.x_train))
  state = trainer.init_state(jax.random.key(seed))
  settings = {**settings, "model": model_name, "epochs": cfg.epochs,
              "seed": seed}
  if cfg.augment != preset(dataset).augment:
    settings["augment"] = cfg.augment
  if cfg.optim.lr_milestones != PRESETS[dataset].optim.lr_milestones:
    settings["lr_milestones"] = list(cfg.optim.lr_milestones)
  resumed = checkpoint.load(folder, state, settings)
  start = 0
  if resumed is not None:
    state, start = resumed[0], resumed[1]
  if start < cfg.epochs:
    info(f"{label}: {model_name} on {len(splits.x_train)} clean images, "
         f"{cfg.epochs} epochs" + (f" (from epoch {start + 1})" if start
                                   else ""))
    state, _, _ = fit(trainer, state, splits, start_epoch=start,
                      on_progress=progress,
                      on_epoch_end=lambda e, st, rec, _x: checkpoint.save(
                          folder, st, e, settings, []))
    progress.close()
  acc = trainer.evaluate(state, splits.x_test, splits.y_test)["accuracy"]
  return model, state, trainer, acc


def run_transfer(args, out, t_start, dataset, splits, ps, x_poisoned,
                 x_clean):
  """The transfer scenario of a targeted file (SPEC §4): pre-train on the
  clean 90% with the crafting run's own model, seed and epochs (so the
  victim's feature extractor is the one the attack saw: white-box, as in
  the paper's setting; training is deterministic, and the extractor's test
  accuracy is recorded next to the crafting run's as a check), then
  re-initialise theta_top from ``--seed`` and train it alone on the
  poisoned 10%.

  Every defence acts on the fine-tuning set and theta_top, the only layer
  trained here (`TopLayerConfig`'s epochs are the run's epochs):
  - hint: healthy noise written into the fine-tuning images before the
    scheduled epochs (influence on theta_top, as always);
  - friends: friendly noise computed once before ``--friends-begin-epoch``
    with the network of that epoch, plus fresh Bernoulli noise every epoch
    (the features are then recomputed every epoch);
  - epic: the scheduled selections on the fine-tuning set; dropped
    examples are left out of the following epochs;
  - atda: every step trains on adversarial examples of its batch, crafted
    through the frozen body and the current theta_top (``--atda-*``; the
    paper uses eps 0.062 against targeted attacks).
  """
  top_cfg = transfer.TopLayerConfig()
  # Settings are checked before the extractor is trained.
  hint_cfg = None
  if args.defense == "hint":
    hint_cfg = hint_config(args, top_cfg.epochs)
    announce_hint_schedule(args, top_cfg.epochs)
  epic_cfg = (epic_config(args, top_cfg.epochs) if args.defense == "epic"
              else None)
  friends_cfg = (friends_config(args, top_cfg.epochs)
                 if args.defense == "friends" else None)
  atda_cfg = atda_config(args) if args.defense == "atda" else None
  target = ps.target
  victim = ps.meta.get("victim") or {}
  pre, fine = transfer.transfer_split(
      len(splits.x_train), jax.random.key(target["transfer_split_seed"]),
      target["pretrain_fraction"])
  poisoned_rows = ps.clean_index[ps.attack_id >= 0]
  if np.any(np.isin(poisoned_rows, pre)):
    raise DataError(f"{args.poison}: poisons lie in the pre-training part "
                    "of its transfer split; the file is not a transfer-"
                    "scenario set")
  model_name = victim.get("model") or args.model or default_model(
      args.dataset)
  pre_splits = dataclasses.replace(splits, x_train=splits.x_train[pre],
                                   y_train=splits.y_train[pre])
  progress = Progress(False if args.no_progress else None)
  folder, identity = out, {"scenario": "transfer",
                           "poison": str(args.poison)}
  # Files crafted before the option existed record none: "absolute".
  schedule = {"epoch_schedule": victim.get("epoch_schedule", "absolute")}
  if args.victim_dir is not None:
    folder, identity = clean_model_folder(
        args.victim_dir, args.dataset, args.split_seed, args.subset,
        pre_splits, model_name, victim.get("epochs"), victim.get("seed", 0),
        victim.get("augment"), **schedule)
  model, state, trainer, pre_acc = train_clean(
      args.dataset, model_name, pre_splits, victim.get("epochs"),
      victim.get("seed", 0), folder, progress,
      "transfer: pre-training (the crafting run's extractor)",
      augment=victim.get("augment"), **schedule, **identity)
  # The pre-trained network's own verdict (its pre-training top layer):
  # the clean reference for the target, as the crafting run saw it.
  pretrain_target = target_outcome(model, state, ps.target_x, target)
  params = transfer.reinit_top_layer(model, state.params,
                                     jax.random.key(args.seed))
  x_fine, y_fine = x_poisoned[fine], splits.y_train[fine]
  view = lambda p: types.SimpleNamespace(params=p,
                                         model_state=state.model_state)
  hook, rows, adversary, defence = None, None, None, None
  if hint_cfg is not None:
    defence = hint_lib.Hint(model, hint_cfg, x_fine, y_fine, splits.x_val,
                            splits.y_val, epochs=top_cfg.epochs,
                            x_clean=x_clean[fine])
  elif epic_cfg is not None:
    defence = defenses.Epic(model, epic_cfg, y_fine)
    rows = defence.active_indices
  elif atda_cfg is not None:
    adversary = defenses.make_adversary(model, atda_cfg)
  if hint_cfg is not None or epic_cfg is not None:
    hook = lambda epoch, p, x: defence.before_epoch(epoch, view(p), x)[0]
  elif friends_cfg is not None:
    defence = defenses.Friends(model, friends_cfg, x_fine)
    noise_key = jax.random.fold_in(jax.random.key(args.seed), 2)

    def hook(epoch, p, _x):
      # The friendly images (computed at the begin epoch, kept after), with
      # fresh Bernoulli noise for this epoch.
      base = defence.before_epoch(epoch, view(p),
                                  defence.current_images())[0]
      return np.asarray(defenses.bernoulli_noise(
          jax.random.fold_in(noise_key, epoch),
          jnp.asarray(base, jnp.float32) / 255.0, friends_cfg.bernoulli))

  t_top = time.perf_counter()
  params = transfer.train_top_layer(
      model, params, state.model_state, x_fine, y_fine,
      jax.random.fold_in(jax.random.key(args.seed), 1), config=top_cfg,
      before_epoch=hook, rows=rows, adversary=adversary)
  top_seconds = time.perf_counter() - t_top
  state = state.replace(params=params)
  final = trainer.evaluate(state, splits.x_test, splits.y_test)
  poison = {"file": str(pathlib.Path(args.poison).resolve()),
            "counts": ps.counts(), "attacks": ps.meta["attacks"],
            "ratio": ps.meta.get("ratio"), "target": target}
  result = {
      "dataset": args.dataset, "source": dataset.source, "model": model_name,
      "seed": args.seed, "defense": args.defense, "poison": poison,
      "scenario": "transfer", "num_pretrain": len(pre),
      "num_finetune": len(fine),
      "pretrain_test_accuracy": pre_acc,
      "crafting_extractor_test_accuracy": victim.get("test_accuracy"),
      "pretrain_target": {k: pretrain_target[k] for k in (
          "predicted", "intended_probability", "true_probability")},
      "top_layer": dataclasses.asdict(top_cfg),
      "test_accuracy": final["accuracy"], "test_loss": final["loss"],
      "top_layer_seconds": top_seconds,
      "total_seconds": time.perf_counter() - t_start,
      "target": target_outcome(model, state, ps.target_x, target),
      "backend": jax.default_backend(), "jax_version": jax.__version__,
  }
  if hint_cfg is not None:
    result["hint"] = {"config": json.loads(json.dumps(
        dataclasses.asdict(hint_cfg))), **defence.summary(),
                      "poisons": hint_poison_record(
                          defence.selected, x_fine, defence.current_images(),
                          np.isin(fine, poisoned_rows))}
  elif epic_cfg is not None:
    result["epic"] = {"config": dataclasses.asdict(epic_cfg),
                      **defence.summary()}
  elif friends_cfg is not None:
    result["friends"] = {"config": dataclasses.asdict(friends_cfg),
                         **defence.summary()}
  elif atda_cfg is not None:
    result["atda"] = {"config": dataclasses.asdict(atda_cfg)}
  write_json_atomic(out / "result.json", result)
  t = result["target"]
  print(f"{args.dataset}/{model_name} transfer: test accuracy "
        f"{100 * final['accuracy']:.2f}%; target test image {t['index']} "
        f"predicted {t['predicted']} (intended {t['intended_class']}): "
        f"attack {'succeeded' if t['success'] else 'failed'}; wrote "
        f"{out / 'result.json'}")
  return 0


def load_splits(args):
  """Loads the dataset and splits it. ``--subset`` is a cap: if fewer
  training images are left after validation (a partial copy), all of them
  are used and that is said on stderr and recorded in result.json."""
  dataset = data_lib.load_dataset(args.dataset, args.data_dir, args.source)
  if dataset.meta.get("verified") is False and not getattr(
      args, "own_data", False):
    raise DataError(f"the {args.dataset} files of {dataset.source} differ "
                    "from the official ones (sha256); replace them, or pass "
                    "--own-data if they are yours")
  splits = data_lib.split_train_val(dataset, args.num_val, args.split_seed)
  if args.subset is not None:
    if args.subset <= len(splits.x_train):
      splits = data_lib.take_subset(splits, args.subset, args.split_seed)
    else:
      info(f"--subset {args.subset}: only {len(splits.x_train)} training "
           f"images in {dataset.source} after validation; using all of them")
  return dataset, splits


def run(args):
  held = []   # the run folder's lock, released when the run ends
  try:
    return _run(args, held)
  finally:
    for f in held:
      f.close()


def _hold(out, held):
  """Creates the checked ``out`` and takes its run lock (process 0 only
  across hosts: the others write where it does)."""
  make_out(out)
  if jax.process_index() == 0:
    lock = lock_folder(out)
    if lock is not None:
      held.append(lock)


def _run(args, held):
  # Nothing is created until every setting and input has been checked.
  out = check_out(args.out)
  t_start = time.perf_counter()
  cfg = preset(args.dataset, epochs=args.epochs, batch_size=args.batch_size,
               lr=args.lr, eval_every=args.eval_every,
               augment=False if args.no_augment else None,
               epoch_schedule=args.epoch_schedule)
  if cfg.epochs == 0:
    info("note: --epochs 0 trains nothing; the result is the untrained "
         "model's")
  # Settings are checked before any data is read.
  hint_cfg = hint_config(args, cfg.epochs) if args.defense == "hint" else None
  epic_cfg = epic_config(args, cfg.epochs) if args.defense == "epic" else None
  friends_cfg = (friends_config(args, cfg.epochs)
                 if args.defense == "friends" else None)
  if friends_cfg is not None:
    cfg = dataclasses.replace(cfg, bernoulli_noise=friends_cfg.bernoulli)
  mesh = make_mesh(args, args.defense)
  atda_cfg = atda_config(args) if args.defense == "atda" else None
  dataset, splits = load_splits(args)
  # Said once the inputs have passed their checks (a refused run prints
  # only its error line).
  notes = [f"data: {dataset.source}: {len(splits.x_train)} train / "
           f"{len(splits.x_val)} val / {len(splits.x_test)} test"]
  poison, target_x, poison_mask, x_clean = None, None, None, None
  if args.poison is not None:
    x_clean = splits.x_train
    ps = attacks.load_poisoned(args.poison)
    x_poisoned = attacks.poisoned_training_images(
        ps, splits.x_train, splits.y_train, where=args.poison)
    splits = dataclasses.replace(splits, x_train=x_poisoned)
    poison_mask = np.zeros(len(x_poisoned), bool)
    poison_mask[ps.clean_index[ps.attack_id >= 0]] = True
    attacks.check_target(ps, splits.x_test, splits.y_test, where=args.poison)
    target_x = ps.target_x
    crafted_on = (ps.meta.get("victim") or {}).get("augment")
    if crafted_on is not None and crafted_on != cfg.augment:
      notes.append(
          f"note: {args.poison} was crafted on models trained "
          f"{'with' if crafted_on else 'without'} augmentation; this run "
          f"trains {'with' if cfg.augment else 'without'} it ("
          f"{'add' if cfg.augment else 'drop'} --no-augment to match)")
    if ps.target is not None and ps.target.get("scenario") == "transfer":
      _hold(out, held)
      for note in notes:
        info(note)
      return run_transfer(args, out, t_start, dataset, splits, ps,
                          x_poisoned, x_clean)
    poison = {"file": str(pathlib.Path(args.poison).resolve()),
              "counts": ps.counts(), "attacks": ps.meta["attacks"],
              "ratio": ps.meta.get("ratio"), "target": ps.target}
    notes.append(f"poisoned training set: {poison['counts']}")
  if args.victim_dir is not None:
    raise ConfigError("--victim-dir applies to transfer-scenario files "
                      "(target-poison --attack bp|fc) only")
  _hold(out, held)
  model_name = args.model or default_model(args.dataset)
  model = get_model(model_name, splits.num_classes, splits.x_train.shape[1:])
  trainer = Trainer(model, cfg, len(splits.x_train), adversary=(
      None if atda_cfg is None else defenses.make_adversary(model, atda_cfg)),
                    mesh=mesh)
  num_train = len(splits.x_train)  # all processes together
  if jax.process_count() > 1:  # this process trains on its own rows only
    mine = parallel_rows(num_train)
    splits = dataclasses.replace(splits, x_train=splits.x_train[mine],
                                 y_train=splits.y_train[mine])
    if poison_mask is not None:
      poison_mask = poison_mask[mine]
    info(f"process {jax.process_index()} of {jax.process_count()}: rows "
         f"{mine.start}..{mine.stop - 1} of the training set")
  state = trainer.init_state(jax.random.key(args.seed))

  settings = {"dataset": args.dataset, "source": dataset.source,
              "model": model_name, "seed": args.seed,
              "split_seed": args.split_seed, "subset": args.subset,
              "num_val": len(splits.x_val), "defense": args.defense,
              "poison": poison,
              "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
  defence, stage_progress = None, None
  if hint_cfg is not None:
    settings["hint"] = json.loads(json.dumps(dataclasses.asdict(hint_cfg)))
    stage_progress = StageProgress(False if args.no_progress else None,
                                   prefix="HINT ")
    defence = hint_lib.Hint(model, hint_cfg, splits.x_train, splits.y_train,
                            splits.x_val, splits.y_val, epochs=cfg.epochs,
                            on_progress=stage_progress, x_clean=x_clean,
                            mesh=mesh)
  if atda_cfg is not None:
    settings["atda"] = dataclasses.asdict(atda_cfg)
  friends = None
  if friends_cfg is not None:
    settings["friends"] = dataclasses.asdict(friends_cfg)
    stage_progress = StageProgress(False if args.no_progress else None,
                                   prefix="FRIENDS ")
    friends = defenses.Friends(
        model, friends_cfg, splits.x_train,
        on_progress=lambda d, t: stage_progress("friendly noise", d, t))
  epic = None
  if epic_cfg is not None:
    settings["epic"] = dataclasses.asdict(epic_cfg)
    epic = defenses.Epic(model, epic_cfg, splits.y_train)
  if args.overwrite:
    checkpoint.clear(out)
    (out / "metrics.jsonl").unlink(missing_ok=True)
  resumed = checkpoint.load(out, state, settings)
  for note in notes:
    info(note)
  if hint_cfg is not None:
    announce_hint_schedule(args, cfg.epochs)
  start_epoch, history = 0, []
  if resumed is not None:
    state, start_epoch, history, extra, extra_meta = resumed
    if defence is not None:
      defence.load_state_arrays(extra, (extra_meta or {}).get("hint", []))
      splits = dataclasses.replace(splits,
                                   x_train=defence.current_images())
    if friends is not None:
      friends.load_state(extra, (extra_meta or {}).get("friends"))
      splits = dataclasses.replace(splits,
                                   x_train=friends.current_images())
    if epic is not None:
      epic.load_state(extra["epic_active"], (extra_meta or {}).get("epic", []))
    info(f"resuming {out} after epoch {start_epoch}")
    # The metrics file is rebuilt from the checkpoint's history, so an
    # epoch written there after the last checkpoint is not repeated.
    write_bytes_atomic(out / "metrics.jsonl", "".join(
        json.dumps(r) + "\n" for r in history).encode())
  elif (out / "metrics.jsonl").exists():
    (out / "metrics.jsonl").unlink()

  progress = Progress(False if args.no_progress else None)

  def epic_before_epoch(epoch, st, x_train):
    x_new, seconds = epic.before_epoch(epoch, st, x_train)
    if seconds:
      r = epic.records[-1]
      info(f"EPIC before epoch {epoch + 1}: {r['medoids']} medoids, dropped "
           f"{r['dropped']}, {r['active']} of {len(x_train)} left "
           f"({r['seconds']:.1f} s)")
    return x_new, seconds

  def friends_before_epoch(epoch, st, x_train):
    x_new, seconds = friends.before_epoch(epoch, st, x_train)
    if seconds:
      stage_progress.close()
      r = friends.record
      info(f"FRIENDS before epoch {epoch + 1}: friendly noise in "
           f"{r['seconds']:.1f} s, mean |noise| {r['mean_abs_levels']:.2f}"
           f"/255, KL {r['kl_last']:.4f}")
    return x_new, seconds

  def before_epoch(epoch, st, x_train):
    if epoch in defence.config.schedule:
      info(f"HINT: noise update before epoch {epoch + 1}")
    x_new, seconds = defence.before_epoch(epoch, st, x_train)
    if seconds:
      u = defence.updates[-1]
      info(f"HINT: {u.num_selected} examples; selection "
           f"{u.selection_seconds:.1f} s, s_test {u.s_test_seconds:.1f} s, "
           f"I_pert {u.pert_seconds:.1f} s, write {u.write_seconds:.2f} s; "
           f"mean |delta| {255 * u.delta_abs_mean:.2f}/255, "
           f"{100 * u.at_bound_fraction:.1f}% at the bound")
    return x_new, seconds

  def on_epoch_end(epoch, st, record, _x):
    history.append(record)
    try:
      with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    except OSError as e:
      raise DataError(f"cannot write {out / 'metrics.jsonl'}: "
                      f"{e.strerror or e}; make room and run the same "
                      "command again to resume") from None
    extra, extra_meta = None, None
    if defence is not None:
      extra = defence.state_arrays()
      extra_meta = {"hint": [dataclasses.asdict(u) for u in defence.updates]}
    if epic is not None:
      extra, extra_meta = epic.state_arrays(), {"epic": epic.records}
    if friends is not None:
      extra, extra_meta = friends.state_arrays(), {"friends": friends.record}
    checkpoint.save(out, st, epoch, settings, history, extra, extra_meta)
    progress.close()
    acc = record.get("test_accuracy")
    info(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}"
         + (f", test accuracy {acc:.4f}" if acc is not None else "")
         + f" ({record['train_seconds']:.1f} s)")

  try:
    hook = (before_epoch if defence is not None else
            epic_before_epoch if epic is not None else
            friends_before_epoch if friends is not None else None)
    state, _, _ = fit(trainer, state, splits, start_epoch=start_epoch,
                      before_epoch=hook, on_progress=progress,
                      on_epoch_end=on_epoch_end,
                      active_fn=None if epic is None else epic.active_indices)
  finally:
    progress.close()
    if stage_progress is not None:
      stage_progress.close()
  final = (trainer.evaluate(state, splits.x_test, splits.y_test)
           if not history or "test_accuracy" not in history[-1] else
           {"accuracy": history[-1]["test_accuracy"],
            "loss": history[-1]["test_loss"]})
  result = {
      **{k: v for k, v in settings.items()
         if k not in ("config", "hint", "epic", "friends", "atda")},
      "data_verified": dataset.meta.get("verified"),
      "epochs": cfg.epochs, "batch_size": cfg.batch_size,
      "lr": cfg.optim.lr, "epoch_schedule": args.epoch_schedule,
      "lr_milestones": list(cfg.optim.lr_milestones),
      "num_train": num_train,
      "num_params": num_params(state.params),
      "test_accuracy": final["accuracy"], "test_loss": final["loss"],
      "val_accuracy": history[-1].get("val_accuracy") if history else None,
      "train_seconds": sum(r["train_seconds"] for r in history),
      "defense_seconds": sum(r.get("hook_seconds", 0.0) for r in history),
      "total_seconds": time.perf_counter() - t_start,
      "backend": jax.default_backend(), "jax_version": jax.__version__,
      "machine": platform.machine(), "config": settings["config"],
      "devices": 1 if mesh is None else mesh.size,
      "processes": jax.process_count(),
  }
  if target_x is not None:
    result["target"] = target_outcome(model, state, target_x,
                                      poison["target"])
    info(f"target test image {poison['target']['index']}: predicted "
         f"{result['target']['predicted']}, intended "
         f"{poison['target']['intended_class']} -> attack "
         f"{'succeeded' if result['target']['success'] else 'failed'}")
  if defence is not None:
    defence.save_noise(out / NOISE_FILE, splits.train_idx)
    summary = defence.summary()
    result["hint"] = {"config": settings["hint"], **summary,
                      "noise_file": NOISE_FILE}
    if poison_mask is not None:
      result["hint"]["poisons"] = hint_poison_record(
          defence.selected, defence.x_orig, defence.current_images(),
          poison_mask)
    result["num_selected"] = summary["num_selected"]
    for phase in ("selection", "s_test", "pert", "write"):
      result[f"hint_{phase}_seconds"] = summary[f"{phase}_seconds"]
  if atda_cfg is not None:
    # The attack runs inside every training step: its time is in
    # train_seconds (compare with an undefended run for the overhead).
    result["atda"] = {"config": settings["atda"]}
  if friends is not None:
    result["friends"] = {"config": settings["friends"], **friends.summary()}
    result["friends_seconds"] = result["friends"]["friends_seconds"]
  if epic is not None:
    result["epic"] = {"config": settings["epic"], **epic.summary()}
    result["num_train_kept"] = int(epic.active.sum())
    result["epic_seconds"] = result["epic"]["epic_seconds"]
  write_json_atomic(out / "result.json", result)
  label = {"none": "", "hint": " with HINT", "epic": " with EPIC",
           "friends": " with FRIENDS", "atda": " with ATDA"}[
      args.defense]
  print(f"{args.dataset}/{model_name}{label}: test accuracy "
        f"{100 * final['accuracy']:.2f}% after {cfg.epochs} epochs; "
        f"wrote {out / 'result.json'}")
  return 0
