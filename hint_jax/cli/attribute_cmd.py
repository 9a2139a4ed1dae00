"""``hint-jax attribute``: score training images for test images with one
of `hint_jax.attribution`'s estimators (`hint_jax.pipeline.attribution`
does the work and says which files it writes).

Example:
  hint-jax attribute --dataset digits --estimator cg --num-test 20 \\
      --set damping=0.01 --out /tmp/attr
"""

from hint_jax.cli import train_cmd
from hint_jax.cli.common import (CliReporter, check_out, info, nonneg_int,
                                 positive_int)


def register(sub):
  from hint_jax import attribution  # pylint: disable=g-import-not-at-top
  listing = "; ".join(
      f"{name}: {est.summary} [{', '.join(f'{k}={v}' for k, v in sorted(est.defaults.items()))}]"
      for name, est in sorted(attribution.ESTIMATORS.items()))
  p = sub.add_parser(
      "attribute", help="score every training image for each test image "
      "(influence functions, Arnoldi, TRAK, TracIn, gradient similarity)",
      epilog=f"Estimators and their settings (defaults): {listing}. "
      "Scores: positive = the training image helps the test image.")
  train_cmd.add_data_args(p)
  p.add_argument("--estimator", required=True,
                 choices=sorted(attribution.ESTIMATORS))
  p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                 dest="settings",
                 help="an estimator setting, e.g. damping=0.01, "
                 "curvature=hessian, proj_dim=none, learning_rates=0.1 "
                 "(repeatable; see the list below)")
  p.add_argument("--model", default=None,
                 help="architecture to train (default: the dataset's); "
                 "ignored with --run")
  p.add_argument("--run", default=None, metavar="DIR",
                 help="attribute this run folder's final model (hint-jax "
                 "train --out DIR) instead of training one")
  p.add_argument("--epochs", type=nonneg_int, default=None,
                 help="training epochs (default: the preset's)")
  p.add_argument("--seed", type=nonneg_int, default=0,
                 help="seed of the training and of the estimator's draws")
  p.add_argument("--num-train", type=positive_int, default=None,
                 help="score the first N training images (default: all)")
  p.add_argument("--num-test", type=positive_int, default=None,
                 help="for the first N test images (default: all)")
  p.add_argument("--train-block", type=positive_int, default=512,
                 help="training images per streamed block")
  p.add_argument("--test-block", type=positive_int, default=256,
                 help="test images per streamed block")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def run(args):
  from hint_jax import pipeline  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import attribution as job_lib  # pylint: disable=g-import-not-at-top
  check_out(args.out)
  settings = tuple(job_lib.parse_setting(s) for s in args.settings)
  job_lib.check_estimator_settings(args.estimator, settings)
  job = pipeline.AttributeJob(
      data=train_cmd.data_spec(args), estimator=args.estimator,
      settings=settings, model=args.model, run=args.run, epochs=args.epochs,
      seed=args.seed, num_train=args.num_train, num_test=args.num_test,
      train_block=args.train_block, test_block=args.test_block)
  reporter = CliReporter(False if args.no_progress else None,
                         desc="attribute")
  record = pipeline.run_attribute(job, args.out, reporter=reporter)
  sec = record["seconds"]
  info(f"{args.estimator}: {record['scores']['shape'][0]} x "
       f"{record['scores']['shape'][1]} scores in {args.out}/scores.npy "
       f"(prepare {sec['prepare']:.1f} s, scores {sec['scores']:.1f} s, "
       f"peak memory {record['peak_memory_mb']:.0f} MB)")
  return 0
