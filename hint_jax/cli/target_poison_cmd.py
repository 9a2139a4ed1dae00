"""``hint-jax target-poison``: craft a targeted poisoned training set
(Gradient Matching, MetaPoison, Bullseye Polytope, Feature Collision) and
write it as a poisoned-dataset file with its target.

A target test image and an intended class are drawn from ``--seed`` unless
given (a drawn intended class is one that can supply the poisons). The
poisons are ``--budget`` of the training set (1%: 490 of CIFAR-10's 49000),
drawn from the intended class and keeping their labels:

* from scratch (gm, mp): the victim (or MetaPoison's surrogates) is trained
  on the whole clean training split; the poisons come from all of it.
* transfer (bp, fc): the feature extractor is pre-trained on a keyed 90% of
  the training split (`hint_jax.train.transfer.transfer_split`, seed in the
  file's metadata); the poisons come from the other 10%, the part the top
  layer is later trained on.

Trained models are kept in ``OUT.work/`` (an interrupted run resumes from
them) and the folder is removed once the file is written.
"""

import argparse
import dataclasses
import hashlib
import pathlib
import shutil
import time

import jax
import numpy as np

from hint_jax import attacks
from hint_jax.attacks import targeted
from hint_jax.cli.common import (Progress, StageProgress, finite_float, info,
                                 nonneg_int, positive_int, work_dir)
from hint_jax.cli.poison_cmd import (DEFAULT_VICTIM_EPOCHS, _victim,
                                    add_victim_dir_arg)
from hint_jax.cli.train_cmd import (add_data_args, add_epoch_schedule_arg,
                                    clean_train_config, load_splits,
                                    target_outcome)
from hint_jax.errors import ConfigError
from hint_jax.models import MODEL_NAMES
from hint_jax.train import transfer
from hint_jax.train.augment import random_shift_flip
from hint_jax.train.loop import Trainer
from hint_jax.train.presets import preset

TARGETED = ("gm", "mp", "bp", "fc")
SCENARIO = {"gm": "scratch", "mp": "scratch", "bp": "transfer",
            "fc": "transfer"}
# SPEC §4: 16/255 except MetaPoison's 8/255.
DEFAULT_EPS = {"gm": 16 / 255, "mp": 8 / 255, "bp": 16 / 255, "fc": 16 / 255}
DEFAULT_STEPS = {"gm": 250, "mp": 60, "bp": 200, "fc": 200}
PRETRAIN_FRACTION = 0.9


def register(sub):
  p = sub.add_parser("target-poison", help="craft a targeted poisoned set "
                     "(gradient matching, MetaPoison, Bullseye Polytope, "
                     "Feature Collision) against one test image")
  add_data_args(p)
  p.add_argument("--attack", required=True, choices=TARGETED)
  p.add_argument("--target-index", type=nonneg_int, default=None,
                 help="the target's index in the test split (default: "
                 "drawn from --seed)")
  p.add_argument("--intended-class", type=nonneg_int, default=None,
                 help="the class the target should get (default: drawn "
                 "from --seed, other than its own)")
  p.add_argument("--budget", type=finite_float, default=0.01,
                 help="poisons as a fraction of the training set (default "
                 "0.01)")
  p.add_argument("--eps", type=finite_float, default=None,
                 help="L-inf budget in [0,1] units (default 16/255; mp "
                 "8/255)")
  p.add_argument("--steps", type=positive_int, default=None,
                 help="optimisation steps (default: gm 250, mp 60, bp/fc "
                 "200)")
  p.add_argument("--lr", type=finite_float, default=None,
                 help="step size on delta (default: the attack's)")
  p.add_argument("--restarts", type=positive_int, default=8,
                 help="gradient matching: random restarts (default 8)")
  p.add_argument("--ensemble", type=positive_int, default=4,
                 help="MetaPoison: surrogate models at staggered epochs "
                 "(default 4; the original uses 24)")
  p.add_argument("--member-steps", type=positive_int, default=None,
                 help="MetaPoison: training steps each surrogate takes on "
                 "clean batches, with its own optimizer, after every craft "
                 "step (default: one epoch, as the original)")
  p.add_argument("--model", choices=MODEL_NAMES, default=None)
  p.add_argument("--victim-epochs", type=positive_int, default=None,
                 help="clean training epochs of the victim / extractor "
                 "(default: the dataset's preset)")
  p.add_argument("--no-augment", action="store_true",
                 help="victims will train without augmentation (the "
                 "paper's MetaPoison setting): the crafting models train "
                 "without it too, and gradient matching crafts without "
                 "its differentiable augmentation")
  p.add_argument("--seed", type=nonneg_int, default=0,
                 help="seed of the target draw, the models and the attack")
  add_victim_dir_arg(p)
  add_epoch_schedule_arg(p)
  p.add_argument("--out", required=True, help="the .npz file to write")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


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
    raise ConfigError(f"--target-index must be in [0, {len(y_test)}), got "
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
                          "budget; lower --budget")
      pick = jax.random.randint(jax.random.fold_in(k2, 1), (), 0,
                                len(others))
      intended = others[int(pick)]
  if not 0 <= intended < num_classes or intended == true:
    raise ConfigError(f"--intended-class must be a class in [0, "
                      f"{num_classes}) other than the target's own ({true})"
                      f", got {intended}")
  return index, true, intended


def _stage_reporter(stage, name):
  return lambda d, t: stage(name, d, t)


def run(args):
  t0 = time.perf_counter()
  attack = args.attack
  eps = DEFAULT_EPS[attack] if args.eps is None else args.eps
  attacks.budget_levels(eps)
  if not 0.0 < args.budget <= 1.0:
    raise ConfigError(f"--budget must be in (0, 1], got {args.budget}")
  steps = args.steps or DEFAULT_STEPS[attack]
  if args.lr is not None and not args.lr > 0:
    raise ConfigError(f"--lr must be > 0, got {args.lr}")
  out = pathlib.Path(args.out)
  if out.exists() and out.is_dir():
    raise ConfigError(f"--out {out} is a directory; give a .npz file name")
  dataset, splits = load_splits(args)
  n, k = len(splits.x_train), splits.num_classes
  key = jax.random.key(args.seed)
  scenario = SCENARIO[attack]

  # Where the poisons come from, and what the victim trains on.
  pool = np.arange(n)
  victim_splits = splits
  if scenario == "transfer":
    split_seed = args.seed
    pre, fine = transfer.transfer_split(n, jax.random.key(split_seed),
                                        PRETRAIN_FRACTION)
    pool = fine
    victim_splits = dataclasses.replace(splits, x_train=splits.x_train[pre],
                                        y_train=splits.y_train[pre])
  m = int(round(args.budget * n))
  if m < 1:
    raise ConfigError(f"--budget {args.budget} of {n} images is no poison")
  # A drawn intended class must be able to supply m poisons: the random
  # fine-tuning part of a transfer split can hold fewer than m of a class
  # (about 100 +- 10 per class for 1000 images, m = 100).
  counts = np.bincount(splits.y_train[pool], minlength=k)
  index, true, intended = choose_target(
      splits.y_test, k, jax.random.fold_in(key, 1), args.target_index,
      args.intended_class, eligible=counts >= m)
  target_meta = {"index": index, "true_class": true,
                 "intended_class": intended, "scenario": scenario}
  if scenario == "transfer":
    target_meta.update(pretrain_fraction=PRETRAIN_FRACTION,
                       transfer_split_seed=split_seed)
  candidates = pool[splits.y_train[pool] == intended]
  if m > len(candidates):
    where = ("fine-tuning part" if scenario == "transfer"
             else "training set")
    raise ConfigError(f"--budget {args.budget} asks for {m} poisons of class "
                      f"{intended}, but the {where} has {len(candidates)}")
  settings = {"dataset": args.dataset, "source": dataset.source,
              "split_seed": args.split_seed, "num_val": len(splits.x_val),
              "subset": args.subset, "attack": attack, "eps": eps,
              "steps": steps, "lr": args.lr, "budget": args.budget,
              "restarts": args.restarts, "ensemble": args.ensemble,
              "member_steps": args.member_steps, "target": index,
              "intended": intended, "model": args.model,
              "victim_epochs": args.victim_epochs, "seed": args.seed,
              "no_augment": args.no_augment,
              "epoch_schedule": args.epoch_schedule}
  work = work_dir(out, settings)
  bases = np.sort(np.asarray(jax.random.permutation(
      jax.random.fold_in(key, 2), candidates))[:m])
  info(f"target: test image {index} (class {true}) -> intended class "
       f"{intended}; {m} poisons of class {intended} ({scenario})")

  progress = Progress(False if args.no_progress else None, desc="victim")
  stage = StageProgress(False if args.no_progress else None)
  model, state, victim_meta = _victim(args, victim_splits, work, progress)
  base_x, base_y = splits.x_train[bases], splits.y_train[bases]
  target_x = splits.x_test[index]
  # The crafting model's verdict on the target before any poison: a victim
  # that later gives the intended class is only evidence of the attack if
  # a clean model does not already do so. (Transfer: the extractor with its
  # own pre-trained top layer, not a top layer trained on the clean 10%.)
  clean = target_outcome(model, state, target_x, target_meta)
  target_meta["crafting_model"] = {
      "model": ("victim trained on the clean training split"
                if scenario == "scratch" else "extractor pre-trained on "
                "the pre-training part, with its own top layer"),
      **{k: clean[k] for k in ("predicted", "intended_probability",
                               "true_probability")}}
  info(f"target: the clean crafting model predicts {clean['predicted']} "
       f"(intended class probability {clean['intended_probability']:.3g})")
  akey = jax.random.fold_in(key, 3)
  attack_meta = {"name": attack, "eps": eps, "count": m, "steps": steps}
  if attack in ("bp", "fc"):
    fn = (targeted.bullseye_polytope if attack == "bp"
          else targeted.feature_collision)
    lr = 0.01 if args.lr is None else args.lr
    poisons, losses = fn(model.features_fn(state.params, state.model_state),
                         base_x, target_x, eps=eps, steps=steps, lr=lr,
                         on_progress=_stage_reporter(stage, attack))
    attack_meta.update(lr=lr, optimizer="adam")
  elif attack == "gm":
    cfg = targeted.GradientMatchingConfig(
        eps=eps, steps=steps, restarts=args.restarts,
        lr=targeted.GradientMatchingConfig.lr if args.lr is None
        else args.lr)
    augment = (random_shift_flip if args.dataset == "cifar10"
               and not args.no_augment else None)
    poisons, losses = targeted.gradient_matching(
        model, state.params, state.model_state, base_x, base_y, target_x,
        intended, akey, config=cfg, augment=augment,
        on_progress=_stage_reporter(stage, "gm"))
    attack_meta.update(restarts=cfg.restarts, lr=cfg.lr,
                       optimizer="signed adam",
                       augmentation=augment is not None)
    losses = losses.min(axis=1)
  else:
    states = _surrogates(args, splits, work, state, progress)
    # The members go on along the victim's run (scaled) or the preset's
    # 80-epoch schedule (absolute, as before the option existed).
    trainer = Trainer(model, clean_train_config(
        args.dataset,
        member_epochs(args)[0] if args.epoch_schedule == "scaled" else None,
        False if args.no_augment else None, args.epoch_schedule),
        len(splits.x_train))
    member_steps = args.member_steps or trainer.steps_per_epoch
    advance = targeted.trainer_advance(
        trainer, states, splits.x_train, splits.y_train, member_steps,
        jax.random.fold_in(key, 4))
    cfg = targeted.MetaPoisonConfig(
        eps=eps, steps=steps,
        lr=targeted.MetaPoisonConfig.lr if args.lr is None else args.lr)
    poisons, losses = targeted.metapoison(
        model, [(st.params, st.model_state) for st in states], base_x,
        base_y, target_x, intended, splits.x_train, splits.y_train, akey,
        config=cfg, advance_fn=advance,
        on_progress=_stage_reporter(stage, "mp"))
    del state, states   # their buffers went to the members' training
    cfg_meta = dataclasses.asdict(cfg)
    cfg_meta.pop("advance")
    epochs = member_epochs(args)
    attack_meta.update(cfg_meta, ensemble=len(epochs), member_epochs=epochs,
                       member_steps=member_steps, trajectory="clean",
                       note="members advance on clean batches with their "
                       "own optimizer; no ReColorAdv colour perturbation "
                       "and no member re-initialisation (see "
                       "targeted.metapoison)")
  stage.close()
  attack_meta["final_objective"] = float(losses[-1]) if len(losses) else None

  x_out = splits.x_train.copy()
  x_out[bases] = poisons
  ids = np.full(n, -1, np.int8)
  ids[bases] = 0
  meta = {"dataset": args.dataset, "source": dataset.source,
          "num_classes": k, "ratio": m / n, "seed": args.seed,
          "split_seed": args.split_seed, "num_val": len(splits.x_val),
          "subset": args.subset, "attacks": [attack_meta],
          "victim": victim_meta, "target": target_meta,
          "clean_sha256": hashlib.sha256(np.ascontiguousarray(
              splits.x_train).tobytes()).hexdigest()}
  ps = attacks.PoisonedSet(x_out, splits.y_train, ids, np.arange(n), meta,
                           target_x)
  attacks.save_poisoned(out, ps)
  shutil.rmtree(work, ignore_errors=True)
  print(f"wrote {out}: {m} {attack} poisons of class {intended} for test "
        f"image {index} (class {true}); final objective "
        f"{attack_meta['final_objective']:.4g} "
        f"({time.perf_counter() - t0:.0f} s)")
  return 0


def member_epochs(args):
  """The clean epochs of MetaPoison's members: the victim's, then member i
  of M about i/M of them (at least one)."""
  epochs = args.victim_epochs or DEFAULT_VICTIM_EPOCHS.get(
      args.dataset, preset(args.dataset).epochs)
  return [epochs] + [max(1, round(epochs * i / args.ensemble))
                     for i in range(1, args.ensemble)]


def _surrogates(args, splits, work, state, progress):
  """MetaPoison's ensemble as train states: the victim's ``state`` plus
  ``--ensemble - 1`` further models (seeds seed+1, ...) trained for the
  staggered epochs of `member_epochs`."""
  states = [state]
  for i, e in enumerate(member_epochs(args)[1:], start=1):
    sub = argparse.Namespace(**{**vars(args), "seed": args.seed + i,
                                "victim_epochs": e,
                                "shape_epochs": member_epochs(args)[0]})
    member_dir = work / f"member_{i}"
    member_dir.mkdir(exist_ok=True)
    _, st, _ = _victim(sub, splits, member_dir, progress)
    states.append(st)
  return states
