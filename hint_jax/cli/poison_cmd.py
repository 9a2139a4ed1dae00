"""``hint-jax poison``: craft a (mixed) poisoned training set and write the
poisoned-dataset file.

A victim is trained on the clean training split (the same split `train`
uses, so ``train --poison`` can check the file against it), then each
attack poisons its share of the examples in chunks. Finished chunks and the
victim are kept in ``OUT.work/``: an interrupted run resumes there, and the
folder is removed once the file is written.
"""

import hashlib
import pathlib
import shutil
import time

import flax.serialization
import jax
import numpy as np

from hint_jax import attacks, paths
from hint_jax.attacks import deepconfuse_published
from hint_jax.attacks.deepconfuse import (DeepConfuseConfig,
                                          deepconfuse_poison, train_generator)
from hint_jax.cli.common import (Progress, StageProgress, finite_float, info,
                                 nonneg_int, positive_int, work_dir,
                                 write_bytes_atomic)
from hint_jax.cli.train_cmd import (add_data_args, add_epoch_schedule_arg,
                                   clean_model_folder, load_splits,
                                   train_clean)
from hint_jax.errors import ConfigError
from hint_jax.models import MODEL_NAMES
from hint_jax.train.presets import default_model

ATTACKS = ("pgd", "dap", "durp", "dc")
# Budgets of SPEC §4 (pixel units).
DEFAULT_EPS = {"mnist": 0.3, "cifar10": 8 / 255, "digits": 0.3}
# Clean epochs of the victim that PGD and DAP attack, where it differs from
# the dataset's training preset (none now). Session 5 tried 3 epochs on
# MNIST to save crafting time; the mix it gave was far weaker (no defence
# 91.3% against about 75% with the preset's 10-epoch victim, see
# experiments/results/attacks_mnist/README.md), so the victim is the
# preset's again and the time is saved below instead.
DEFAULT_VICTIM_EPOCHS = {}
# Reductions from SPEC §4 that keep crafting the 59000-image MNIST mix under
# 30 minutes on a 2-core CPU, recorded in the file's metadata:
# - DAP 50 steps of eps/5 instead of 100: on 2000 MNIST images the victim
#   sends 89.70% to (y+1) after 50 steps and 89.75% after 100 (mean |delta|
#   40.8 against 41.0 grey levels), at half the time.
# - DeepConfuse 500 generator steps instead of 1000 (both far below the
#   original's training); at 1000 steps its share was no poison at all
#   (96.2% clean accuracy trained on alone), so nothing measurable is lost.
DEFAULT_DAP_STEPS = {"mnist": 50}
DEFAULT_DC_STEPS = {"mnist": 500}
# Which DeepConfuse generator `dc` uses: the authors' published MNIST
# generator, or the reduced one trained here (the only one for other data).
DC_GENERATORS = ("published", "reduced")
DEFAULT_DC_GENERATOR = {"mnist": "published"}
CHUNK = 2000   # examples per saved chunk


def register(sub):
  p = sub.add_parser("poison", help="craft a poisoned training set (PGD, "
                     "DAP, DURP, DeepConfuse; mixed in equal shares)")
  add_data_args(p)
  p.add_argument("--attacks", default="pgd,dap,durp,dc",
                 help=f"comma-separated, from {', '.join(ATTACKS)}")
  p.add_argument("--ratio", type=finite_float, default=1.0,
                 help="fraction p of training examples poisoned, split "
                 "equally among the attacks (default 1)")
  p.add_argument("--eps", type=finite_float, default=None,
                 help="L-inf budget in [0,1] units (default: mnist 0.3, "
                 "cifar10 8/255)")
  p.add_argument("--pgd-steps", type=positive_int, default=40)
  p.add_argument("--pgd-step-size", type=finite_float, default=0.01)
  p.add_argument("--dap-steps", type=positive_int, default=None,
                 help="DAP steps of eps/5 (default 100; mnist 50, reduced "
                 "for crafting time)")
  p.add_argument("--durp-values", choices=attacks.DURP_VALUES,
                 default="sign",
                 help="DURP's per-class perturbation: random signs of the "
                 "whole budget (default) or uniform in [-eps, eps]")
  p.add_argument("--dc-generator", choices=DC_GENERATORS, default=None,
                 help="DeepConfuse's generator: 'published' (the authors' "
                 "trained MNIST generator, read from --dc-weights; the "
                 "default for mnist) or 'reduced' (a small generator "
                 "trained here for --dc-steps; the default, and the only "
                 "choice, for other datasets)")
  p.add_argument("--dc-weights", default=None,
                 help="the published generator's file (default: <data "
                 f"dir>/{deepconfuse_published.DATA_SUBDIR}/"
                 f"{deepconfuse_published.FILE_NAME})")
  p.add_argument("--dc-steps", type=positive_int, default=None,
                 help="steps of the reduced DeepConfuse generator (default "
                 "1000; mnist 500; both far below the original's many "
                 "epochs)")
  p.add_argument("--model", choices=MODEL_NAMES, default=None,
                 help="victim model (default: the dataset's)")
  p.add_argument("--victim-epochs", type=positive_int, default=None,
                 help="clean training epochs of the victim (default: the "
                 "dataset's training preset)")
  p.add_argument("--seed", type=nonneg_int, default=0,
                 help="seed of the victim, the attack assignment and the "
                 "attacks' randomness")
  add_victim_dir_arg(p)
  add_epoch_schedule_arg(p)
  p.add_argument("--out", required=True, help="the .npz file to write")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def add_victim_dir_arg(p):
  p.add_argument("--victim-dir", default=None,
                 help="keep the trained victim here (one sub-folder per "
                 "data, split, model, epochs and seed) and reuse it in later "
                 "runs, e.g. when crafting each attack alone; default: "
                 "trained in OUT.work/ and removed with it")


def _victim(args, splits, work, progress):
  """Trains (or reloads from ``--victim-dir`` or ``work``) the clean
  victim."""
  epochs = args.victim_epochs or DEFAULT_VICTIM_EPOCHS.get(args.dataset)
  model_name = args.model or default_model(args.dataset)
  # `target-poison --no-augment`: crafting models trained as the victims
  # that will train on the poisons (`hint-jax poison` has no such flag).
  augment = False if getattr(args, "no_augment", False) else None
  # MetaPoison's staggered surrogates train part of the victim's run, so
  # their milestones are the victim's (`shape_epochs`).
  schedule = {"epoch_schedule": args.epoch_schedule,
              "shape_epochs": getattr(args, "shape_epochs", None)}
  folder, identity = work, {}
  if args.victim_dir is not None:
    folder, identity = clean_model_folder(
        args.victim_dir, args.dataset, args.split_seed, args.subset, splits,
        model_name, epochs, args.seed, augment, **schedule)
  model, state, trainer, acc = train_clean(
      args.dataset, model_name, splits, epochs, args.seed, folder, progress,
      "victim: training", augment=augment, **schedule, **identity)
  info(f"victim: test accuracy {100 * acc:.2f}%")
  return model, state, {"model": model_name,
                        "epochs": trainer.config.epochs, "seed": args.seed,
                        "augment": trainer.config.augment,
                        "epoch_schedule": args.epoch_schedule,
                        "lr_milestones": list(
                            trainer.config.optim.lr_milestones),
                        "test_accuracy": acc}


def _published_generator(args, names):
  """Resolves ``--dc-generator`` (default per dataset) and, for the published
  generator, loads and checks its file before any work starts.

  Returns:
    None for the reduced generator (or no ``dc``), else a dict with the
    parameters (``params``), the file's path and its sha256.
  """
  if args.dc_generator is None:
    args.dc_generator = DEFAULT_DC_GENERATOR.get(args.dataset, "reduced")
  if "dc" not in names or args.dc_generator == "reduced":
    return None
  if args.dataset != "mnist":
    raise ConfigError(f"--dc-generator published is the authors' MNIST "
                      f"generator; for {args.dataset} use --dc-generator "
                      "reduced")
  path = pathlib.Path(args.dc_weights) if args.dc_weights else (
      deepconfuse_published.default_path(paths.data_dir(args.data_dir)))
  params = deepconfuse_published.load_generator(path)
  sha = deepconfuse_published.file_sha256(path)
  return {"params": params, "weights_file": path.name, "sha256": sha,
          "authors_file": sha == deepconfuse_published.PUBLISHED_SHA256}


def run(args):
  t0 = time.perf_counter()
  names = [a.strip() for a in args.attacks.split(",") if a.strip()]
  if not names or any(a not in ATTACKS for a in names) or len(set(names)) \
      != len(names):
    raise ConfigError(f"--attacks must list distinct attacks from "
                      f"{', '.join(ATTACKS)}; got {args.attacks!r}")
  eps = DEFAULT_EPS[args.dataset] if args.eps is None else args.eps
  if args.dap_steps is None:
    args.dap_steps = DEFAULT_DAP_STEPS.get(args.dataset, 100)
  if args.dc_steps is None:
    args.dc_steps = DEFAULT_DC_STEPS.get(args.dataset, 1000)
  attacks.budget_levels(eps)   # checks eps
  if not 0.0 < args.ratio <= 1.0:
    raise ConfigError(f"--ratio must be in (0, 1] (0 would poison nothing), "
                      f"got {args.ratio}")
  dc_published = _published_generator(args, names)
  out = pathlib.Path(args.out)
  if out.exists() and out.is_dir():
    raise ConfigError(f"--out {out} is a directory; give a .npz file name")
  dataset, splits = load_splits(args)
  n = len(splits.x_train)
  # Everything that determines the result; a work folder from other
  # settings is refused rather than mixed in.
  settings = {"dataset": args.dataset, "source": dataset.source,
              "split_seed": args.split_seed, "num_val": len(splits.x_val),
              "subset": args.subset, "num_train": n, "attacks": names,
              "ratio": args.ratio, "eps": eps, "pgd_steps": args.pgd_steps,
              "pgd_step_size": args.pgd_step_size,
              "dap_steps": args.dap_steps, "dc_steps": args.dc_steps,
              "durp_values": args.durp_values,
              "dc_generator": args.dc_generator,
              "dc_weights_sha256": (dc_published or {}).get("sha256"),
              "model": args.model,
              "victim_epochs": args.victim_epochs, "seed": args.seed,
              "epoch_schedule": args.epoch_schedule}
  work = work_dir(out, settings)

  key = jax.random.key(args.seed)
  ids = attacks.assign_attacks(n, args.ratio, len(names),
                               jax.random.fold_in(key, 1))
  needs_victim = any(a in ("pgd", "dap") for a in names)
  progress = Progress(False if args.no_progress else None, desc="victim")
  victim_meta, logits_fn = None, None
  if needs_victim:
    model, state, victim_meta = _victim(args, splits, work, progress)
    logits_fn = model.logits_fn(state.params, state.model_state)

  stage = StageProgress(False if args.no_progress else None)
  x_out = splits.x_train.copy()
  attack_meta = []
  for a, name in enumerate(names):
    rows = np.flatnonzero(ids == a)
    akey = jax.random.fold_in(key, 100 + a)
    meta = {"name": name, "eps": eps, "count": int(len(rows))}
    if name == "pgd":
      meta.update(steps=args.pgd_steps, step_size=args.pgd_step_size,
                  random_start=True)
    elif name == "dap":
      meta.update(steps=args.dap_steps, step_size=eps / 5,
                  target="(y + 1) mod num_classes")
    elif name == "durp":
      meta.update(values=args.durp_values)
    generator = None
    if name == "dc" and dc_published is not None:
      generator = dc_published.pop("params")
      meta.update(generator="published", **dc_published,
                  note="the DeepConfuse authors' trained MNIST generator, "
                  "eval mode: clip(x + eps * g(x), 0, 1) in whole grey "
                  "levels within the budget")
    elif name == "dc":
      dc_cfg = DeepConfuseConfig(eps=eps, steps=args.dc_steps)
      meta.update(generator="reduced", steps=dc_cfg.steps,
                  batch_size=dc_cfg.batch_size,
                  classifier_lr=dc_cfg.classifier_lr,
                  generator_lr=dc_cfg.generator_lr, width=dc_cfg.width,
                  note="small conv autoencoder and CNN trained here; steps "
                  "reduced from the original's training to fit a CPU")
      if len(rows):
        gen_file = work / "dc_generator.msgpack"
        if gen_file.exists():
          generator = flax.serialization.msgpack_restore(
              gen_file.read_bytes())
        else:
          info(f"dc: training the generator, {dc_cfg.steps} steps")
          generator, _, losses = train_generator(
              splits.x_train, splits.y_train, akey,
              num_classes=splits.num_classes, config=dc_cfg,
              on_progress=lambda d, t: stage("dc generator", d, t))
          stage.close()
          meta["final_unrolled_clean_loss"] = float(losses[-10:].mean())
          write_bytes_atomic(gen_file, flax.serialization.msgpack_serialize(
              jax.device_get(generator)))
    attack_meta.append(meta)
    info(f"{name}: {len(rows)} examples")
    for c, start in enumerate(range(0, len(rows), CHUNK)):
      part = rows[start:start + CHUNK]
      chunk_file = work / f"{name}_{c:05d}.npy"
      if chunk_file.exists():
        x_out[part] = np.load(chunk_file)
        continue
      xb, yb = splits.x_train[part], splits.y_train[part]
      report = lambda d, t, s=start: stage(name, s + d, len(rows))
      if name == "pgd":
        adv = attacks.pgd_attack(logits_fn, xb, yb, jax.random.fold_in(
            akey, c), eps=eps, steps=args.pgd_steps,
                                 step_size=args.pgd_step_size,
                                 on_progress=report)
      elif name == "dap":
        adv = attacks.dap_attack(logits_fn, xb, yb,
                                 num_classes=splits.num_classes, eps=eps,
                                 steps=args.dap_steps, on_progress=report)
      elif name == "dc" and dc_published is not None:
        adv = deepconfuse_published.published_poison(generator, xb, eps=eps)
      elif name == "dc":
        adv = deepconfuse_poison(generator, xb, config=dc_cfg)
      else:
        # One perturbation per class for the whole attack: the key does not
        # depend on the chunk.
        adv = attacks.durp_attack(xb, yb, akey,
                                  num_classes=splits.num_classes, eps=eps,
                                  values=args.durp_values)
      np.save(chunk_file, adv)
      x_out[part] = adv
    stage.close()

  reductions = []
  if "dap" in names and args.dap_steps < 100:
    reductions.append(f"DAP: {args.dap_steps} steps of eps/5 instead of "
                      "SPEC §4's 100")
  if "dc" in names and dc_published is None:
    reductions.append(f"DeepConfuse: the reduced generator, {args.dc_steps} "
                      "steps of a small network, far below the original's "
                      "training")
  meta = {"dataset": args.dataset, "source": dataset.source,
          "num_classes": splits.num_classes, "ratio": args.ratio,
          "seed": args.seed, "split_seed": args.split_seed,
          "num_val": len(splits.x_val), "subset": args.subset,
          "attacks": attack_meta, "victim": victim_meta,
          "clean_sha256": hashlib.sha256(np.ascontiguousarray(
              splits.x_train).tobytes()).hexdigest(),
          "notes": "PGD follows SPEC §4's defaults unless changed on the "
                   "command line; DeepConfuse's generator is named in its "
                   "entry; the victim is the dataset's training preset "
                   "unless --victim-epochs.",
          "reductions": reductions}
  ps = attacks.PoisonedSet(x_out, splits.y_train, ids, np.arange(n), meta)
  attacks.save_poisoned(out, ps)
  shutil.rmtree(work, ignore_errors=True)
  counts = ps.counts()
  print(f"wrote {out}: {', '.join(f'{k} {v}' for k, v in counts.items())} "
        f"({time.perf_counter() - t0:.0f} s)")
  return 0
