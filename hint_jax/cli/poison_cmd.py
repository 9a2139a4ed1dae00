"""``hint-jax poison``: craft a (mixed) poisoned training set and write the
poisoned-dataset file (`hint_jax.pipeline.run_poison` does the work)."""

import time

from hint_jax import attacks
from hint_jax import pipeline
from hint_jax.attacks import deepconfuse_published
from hint_jax.cli.common import (CliReporter, check_out_file, finite_float,
                                 nonneg_int, positive_int)
from hint_jax.cli.train_cmd import (add_data_args, add_epoch_schedule_arg,
                                    data_spec)
from hint_jax.models import MODEL_NAMES
from hint_jax.pipeline import poisoning

def register(sub):
  d = poisoning.PoisonSpec()
  p = sub.add_parser("poison", help="craft a poisoned training set (PGD, "
                     "DAP, DURP, DeepConfuse; mixed in equal shares)")
  add_data_args(p)
  p.add_argument("--attacks", default=",".join(poisoning.ATTACKS),
                 help=f"comma-separated, from {', '.join(poisoning.ATTACKS)}")
  p.add_argument("--ratio", type=finite_float, default=1.0,
                 help="fraction p of training examples poisoned, split "
                 "equally among the attacks (default 1)")
  p.add_argument("--eps", type=finite_float, default=None,
                 help="L-inf budget in [0,1] units (default: mnist 0.3, "
                 "cifar10 8/255)")
  p.add_argument("--pgd-steps", type=positive_int, default=d.pgd_steps)
  p.add_argument("--pgd-step-size", type=finite_float,
                 default=d.pgd_step_size)
  p.add_argument("--dap-steps", type=positive_int, default=None,
                 help="DAP steps of eps/5 (default 100; mnist 50, reduced "
                 "for crafting time)")
  p.add_argument("--durp-values", choices=attacks.DURP_VALUES,
                 default=d.durp_values,
                 help="DURP's per-class perturbation: random signs of the "
                 "whole budget (default) or uniform in [-eps, eps]")
  p.add_argument("--dc-generator", choices=poisoning.DC_GENERATORS, default=None,
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


def victim_spec(args) -> poisoning.VictimSpec:
  return poisoning.VictimSpec(
      model=args.model, epochs=args.victim_epochs, seed=args.seed,
      augment=False if getattr(args, "no_augment", False) else None,
      epoch_schedule=args.epoch_schedule, victim_dir=args.victim_dir)


def poison_spec(args) -> poisoning.PoisonSpec:
  return poisoning.PoisonSpec(
      attacks=tuple(a.strip() for a in args.attacks.split(",") if a.strip()),
      ratio=args.ratio, eps=args.eps, pgd_steps=args.pgd_steps,
      pgd_step_size=args.pgd_step_size, dap_steps=args.dap_steps,
      durp_values=args.durp_values, dc_generator=args.dc_generator,
      dc_weights=args.dc_weights, dc_steps=args.dc_steps, seed=args.seed,
      victim=victim_spec(args))


def run(args):
  t0 = time.perf_counter()
  out = check_out_file(args.out)
  ps = pipeline.run_poison(data_spec(args), poison_spec(args), out,
                           CliReporter(False if args.no_progress else None,
                                       desc="victim"))
  counts = ps.counts()
  print(f"wrote {out}: {', '.join(f'{k} {v}' for k, v in counts.items())} "
        f"({time.perf_counter() - t0:.0f} s)")
  return 0

