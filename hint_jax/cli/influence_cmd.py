"""``hint-jax influence-accuracy``: predicted vs actual influence on MNIST.

Trains θ_top to convergence (all of logistic regression; the head of a
ConvNet whose body is trained first and then frozen), then compares the
influence-function predictions of leave-one-out and input-perturbation
effects on a few test losses with retraining, and writes
``influence_accuracy.json``, ``loo_scatter.png`` and ``pert_scatter.png``.
See ``hint_jax.studies.influence_accuracy`` for the method.

Example:
  hint-jax influence-accuracy --dataset mnist --model logreg --out /tmp/infl
"""

import sys
import time

from hint_jax import data as data_lib
from hint_jax.cli.common import (CliReporter, check_out, info, nonneg_int,
                                 positive_float, positive_int)
from hint_jax.errors import ConfigError

STUDY_MODELS = ("logreg", "mlp", "convnet", "convnet_small")

# (full, --quick) defaults; explicit flags override them.
DEFAULTS = {
    "logreg": ({"subset": None, "epochs": 0, "num_test": 5, "num_top": 50,
                "num_random": 20, "num_pert": 10},
               {"subset": 5000, "epochs": 0, "num_test": 2, "num_top": 10,
                "num_random": 5, "num_pert": 3}),
    "network": ({"subset": 10000, "epochs": None, "num_test": 5,
                 "num_top": 50, "num_random": 20, "num_pert": 10},
                {"subset": 2000, "epochs": 1, "num_test": 2, "num_top": 10,
                 "num_random": 5, "num_pert": 3}),
}


def register(sub):
  p = sub.add_parser(
      "influence-accuracy",
      help="compare influence-function predictions with retraining "
      "(leave-one-out and input perturbation)")
  p.add_argument("--dataset", default="mnist", choices=("mnist", "digits"))
  p.add_argument("--model", default="logreg", choices=STUDY_MODELS,
                 help="logreg (θ = all parameters) or a network whose head "
                 "θ_top is studied with the body frozen (default: logreg)")
  p.add_argument("--quick", action="store_true",
                 help="small setting for smoke tests (5000 training images "
                 "for logreg, 2000 and 1 epoch for networks; 2 test points)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--data-dir", default=None,
                 help="data directory (default: $HINT_JAX_DATA_DIR, else "
                 "~/.cache/hint_jax/data)")
  p.add_argument("--seed", type=nonneg_int, default=0,
                 help="seed of the point/direction draws and of network "
                 "initialisation and data order")
  p.add_argument("--l2", type=positive_float, default=0.01,
                 help="L2 coefficient: objective = mean CE + (l2/2)‖θ‖², "
                 "bias included (default 0.01)")
  p.add_argument("--num-test", type=positive_int, default=None,
                 help="test points (default 5; 2 with --quick)")
  p.add_argument("--num-top", type=nonneg_int, default=None,
                 help="most influential training points removed per test "
                 "point (default 50; 10 with --quick)")
  p.add_argument("--num-random", type=nonneg_int, default=None,
                 help="random training points removed per test point "
                 "(default 20; 5 with --quick)")
  p.add_argument("--num-pert", type=nonneg_int, default=None,
                 help="training points perturbed per test point, each along "
                 "I_pert and along a random direction (default 10; 3 with "
                 "--quick)")
  p.add_argument("--eps", type=positive_float, default=1.0,
                 help="L2 norm of each input perturbation, pixels in [0, 1] "
                 "(default 1.0)")
  p.add_argument("--subset", type=positive_int, default=None,
                 help="training images used (seeded choice; default: all for "
                 "logreg, 10000 for networks; 5000/2000 with --quick)")
  p.add_argument("--epochs", type=nonneg_int, default=None,
                 help="epochs of body training for networks, with the "
                 "dataset's preset optimiser (default: the preset's, 10 for "
                 "mnist; 1 with --quick)")
  p.add_argument("--retrain-batch", type=positive_int, default=64,
                 help="retrainings solved together (memory vs speed)")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


class StageProgress:
  """The study's ``(stage, done, total)`` callback: a tqdm bar per stage on
  a terminal, otherwise one stderr line per stage (and per retrain batch)."""

  def __init__(self, enabled=None):
    self.enabled = sys.stderr.isatty() if enabled is None else enabled
    self.stage, self.bar, self.t0 = None, None, time.perf_counter()

  def __call__(self, stage, done, total):
    if stage != self.stage:
      self.close()
      self.stage = stage
      if self.enabled:
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel
        self.bar = tqdm(total=total, desc=stage, leave=False, file=sys.stderr)
    if self.bar is not None:
      self.bar.update(done - self.bar.n)
    elif stage == "retrain" or done == 0:
      info(f"[{time.perf_counter() - self.t0:6.1f} s] {stage} {done}/{total}")

  def close(self):
    if self.bar is not None:
      self.bar.close()
      self.bar = None


def _settings(args):
  defaults = DEFAULTS["logreg" if args.model == "logreg" else "network"]
  chosen = dict(defaults[1 if args.quick else 0])
  for name in chosen:
    if getattr(args, name) is not None:
      chosen[name] = getattr(args, name)
  if chosen["num_pert"] > chosen["num_top"]:
    raise ConfigError(f"--num-pert ({chosen['num_pert']}) must be <= "
                      f"--num-top ({chosen['num_top']})")
  return chosen


def run(args):
  from hint_jax.studies import influence_accuracy as ia  # pylint: disable=g-import-not-at-top
  out = check_out(args.out)
  chosen = _settings(args)
  config = ia.StudyConfig(
      l2=args.l2, num_test=chosen["num_test"], num_top=chosen["num_top"],
      num_random=chosen["num_random"], num_pert=chosen["num_pert"],
      eps=args.eps, seed=args.seed,
      retrain_batch=args.retrain_batch).validate()
  dataset = data_lib.load_dataset(args.dataset, args.data_dir)
  available = dataset.num_train - data_lib.default_num_val(args.dataset)
  if args.subset is None and (chosen["subset"] or 0) >= available:
    chosen["subset"] = None  # a default larger than the data: use it all
  progress = StageProgress(False if args.no_progress else None)
  try:
    result = ia.study_job(
        args.dataset, args.model, out, config, data_dir=args.data_dir,
        subset=chosen["subset"], epochs=chosen["epochs"], quick=args.quick,
        reporter=CliReporter(False if args.no_progress else None,
                             desc="body"),
        on_progress=progress)
  finally:
    progress.close()
  loo, pert = result["loo"], result["pert"]
  print(f"{args.dataset}/{args.model}: leave-one-out Pearson "
        f"{loo['pearson']:.5f}, Spearman {loo['spearman']:.5f} "
        f"({loo['count']} pairs); perturbation Pearson {pert['pearson']:.5f}"
        f", Spearman {pert['spearman']:.5f} ({pert['count']} pairs); "
        f"{result['total_seconds']:.0f} s; wrote "
        f"{out / 'influence_accuracy.json'}")
  return 0
