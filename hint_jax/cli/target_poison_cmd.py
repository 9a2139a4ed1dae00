"""``hint-jax target-poison``: craft a targeted poisoned training set
(Gradient Matching, MetaPoison, Bullseye Polytope, Feature Collision) and
write it as a poisoned-dataset file with its target
(`hint_jax.pipeline.run_target_poison` does the work; its docstring says
where the poisons come from in each scenario)."""

import time

from hint_jax import pipeline
from hint_jax.cli.common import (CliReporter, check_out_file, finite_float,
                                 nonneg_int, positive_int)
from hint_jax.cli.poison_cmd import add_victim_dir_arg, victim_spec
from hint_jax.cli.train_cmd import (add_data_args, add_epoch_schedule_arg,
                                    data_spec)
from hint_jax.models import MODEL_NAMES
from hint_jax.pipeline import poisoning, poisons


def register(sub):
  p = sub.add_parser("target-poison", help="craft a targeted poisoned set "
                     "(gradient matching, MetaPoison, Bullseye Polytope, "
                     "Feature Collision) against one test image")
  add_data_args(p)
  d = poisoning.TargetSpec("gm")
  p.add_argument("--attack", required=True, choices=poisons.targeted_names())
  p.add_argument("--target-index", type=nonneg_int, default=None,
                 help="the target's index in the test split (default: "
                 "drawn from --seed)")
  p.add_argument("--intended-class", type=nonneg_int, default=None,
                 help="the class the target should get (default: drawn "
                 "from --seed, other than its own)")
  p.add_argument("--budget", type=finite_float, default=d.budget,
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
  p.add_argument("--restarts", type=positive_int, default=d.restarts,
                 help="gradient matching: random restarts (default 8)")
  p.add_argument("--ensemble", type=positive_int, default=d.ensemble,
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


def target_spec(args) -> poisoning.TargetSpec:
  return poisoning.TargetSpec(
      attack=args.attack, target_index=args.target_index,
      intended_class=args.intended_class, budget=args.budget, eps=args.eps,
      steps=args.steps, lr=args.lr, restarts=args.restarts,
      ensemble=args.ensemble, member_steps=args.member_steps, seed=args.seed,
      victim=victim_spec(args))


def run(args):
  t0 = time.perf_counter()
  out = check_out_file(args.out)
  ps = pipeline.run_target_poison(
      data_spec(args), target_spec(args), out,
      CliReporter(False if args.no_progress else None, desc="victim"))
  t, a = ps.meta["target"], ps.meta["attacks"][0]
  objective = a["final_objective"]
  print(f"wrote {out}: {a['count']} {a['name']} poisons of class "
        f"{t['intended_class']} for test image {t['index']} (class "
        f"{t['true_class']}); final objective "
        f"{'-' if objective is None else f'{objective:.4g}'} "
        f"({time.perf_counter() - t0:.0f} s)")
  return 0
