"""``hint-jax experiment TABLE --profile P --out DIR``: run a paper table
(`hint_jax.experiment.runner` does the work; its docstring describes DIR)."""

import argparse
import pathlib

from hint_jax import experiment as exp
from hint_jax.cli import poison_cmd, target_poison_cmd, train_cmd
from hint_jax.cli.common import CliReporter, command_parser, positive_int
from hint_jax.errors import ConfigError
from hint_jax.experiment import runner


def register(sub):
  p = sub.add_parser(
      "experiment", help="run a paper table (every cell a resumable train "
      "run; finished cells are skipped)")
  p.add_argument("table", choices=exp.TABLES + (BENCH,))
  p.add_argument("--profile", choices=sorted(set(exp.ALL_PROFILE_NAMES)
                                             | set(_bench_profiles())),
                 required=True,
                 help="quick: embedded digits, minutes; cpu: real MNIST on a "
                 "CPU, hours; paper: the paper's settings (accelerator); "
                 "robustness also has quick-draw1, cpu-draw1, cpu-draw2 "
                 "(other poison draws and splits); influence_bench has "
                 "quick, cpu-lr and cpu-mlp (dattri's MNIST-10 logistic "
                 "regression and MLP), quick-convnet and cpu-convnet (the "
                 "paper's ConvNet on the same slice, HINT's own scores "
                 "beside)")
  p.add_argument("--out", required=True, help="experiment directory")
  p.add_argument("--data-dir", default=None,
                 help="directory with the dataset files (default: "
                 "$HINT_JAX_DATA_DIR)")
  p.add_argument("--poison-file", action="append", default=[],
                 metavar="FILE", help="use this p = 1 poisoned set (from "
                 "`hint-jax poison --ratio 1`) for its dataset instead of "
                 "crafting one; repeatable, one per dataset")
  p.add_argument("--dataset", default=None, metavar="NAME",
                 help="run the profile on this dataset instead of its own "
                 "(one-dataset profiles, e.g. quick): your own data as "
                 "npz:PATH or folder:PATH (their contents' digest is part "
                 "of every cell's id)")
  p.add_argument("--ratios", type=_floats, default=None,
                 help="run only the cells at these p (comma list); the "
                 "report shows what has finished")
  p.add_argument("--methods", type=_labels, default=None,
                 help="run only these methods (comma list of report labels, "
                 "e.g. none,HINT,ATDA)")
  p.add_argument("--datasets", type=_labels, default=None,
                 help="run only the cells of these datasets (comma list, "
                 "e.g. cifar10)")
  p.add_argument("--attacks", type=_labels, default=None,
                 help="table3: run only these attacks (comma list of gm, mp, "
                 "bp, fc)")
  p.add_argument("--trials", type=positive_int, default=None,
                 help="table3: run only the first N trials")
  p.add_argument("--dry-run", action="store_true",
                 help="list the cells and which are finished; run nothing")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


BENCH = "influence_bench"


def _bench_profiles():
  from hint_jax.studies import attribution_bench  # pylint: disable=g-import-not-at-top
  return tuple(attribution_bench.PROFILES)


def _run_bench(args):
  """``influence_bench``: every estimator's LDS and LOO on a ground-truth
  protocol (`hint_jax.studies.attribution_bench`); writes OUT/bench.json
  and OUT/report.md."""
  from hint_jax.pipeline import files  # pylint: disable=g-import-not-at-top
  from hint_jax.studies import attribution_bench as ab  # pylint: disable=g-import-not-at-top
  if args.dataset is not None:
    raise ConfigError(f"--dataset: {BENCH} runs its fixed protocols (dattri's "
                      "MNIST-10 slice); use hint-jax groundtruth and "
                      "attribute on your own data")
  if args.profile not in ab.PROFILES:
    raise ConfigError(f"{BENCH} has the profiles {', '.join(ab.PROFILES)}, "
                      f"not {args.profile}")
  if args.dry_run:
    job = ab.PROFILES[args.profile]
    for arm in job.arms:
      print(f"{arm.label}: {arm.estimator} {dict(arm.settings)} "
            f"{arm.grid_name or ''} {list(arm.grid) or ''}"
            + (f" on {', '.join(arm.params)}" if arm.params else ""))
    return 0
  record = ab.run_bench(ab.PROFILES[args.profile], args.out,
                        data_dir=args.data_dir,
                        reporter=CliReporter(False if args.no_progress
                                             else None, desc=BENCH))
  text = (f"# {BENCH} --profile {args.profile}\n\n"
          f"Command: `{' '.join(invocation_argv(args))}`\n\n"
          + ab.table(record) + "\n")
  files.write_bytes_atomic(pathlib.Path(args.out) / "report.md",
                           text.encode())
  print(ab.table(record))
  return 0


def _floats(text):
  try:
    return [float(t) for t in text.split(",") if t.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of "
                                     f"numbers")


def _labels(text):
  return [t.strip() for t in text.split(",") if t.strip()]


def _parser():
  return command_parser(train_cmd.register, poison_cmd.register,
                        target_poison_cmd.register)


def _parse(command, argv):
  return _parser().parse_args([command] + list(argv))


def flags() -> runner.Flags:
  """The runner's translation of recorded commands into specs."""

  def train(argv):
    args = _parse("train", argv)
    return train_cmd.train_job(args), args.out

  def poison(argv):
    args = _parse("poison", argv)
    return (train_cmd.data_spec(args), poison_cmd.poison_spec(args),
            args.out)

  def target_poison(argv):
    args = _parse("target-poison", argv)
    return (train_cmd.data_spec(args), target_poison_cmd.target_spec(args),
            args.out)

  return runner.Flags(train=train, poison=poison,
                      target_poison=target_poison)


def options(args) -> runner.RunOptions:
  tup = lambda v: None if v is None else tuple(v)
  return runner.RunOptions(
      table=args.table, profile=args.profile, out=args.out,
      data_dir=args.data_dir, poison_files=tuple(args.poison_file),
      ratios=tup(args.ratios), methods=tup(args.methods),
      datasets=tup(args.datasets),
      attacks=tup(args.attacks), trials=args.trials, dataset=args.dataset,
      dry_run=args.dry_run,
      progress=not args.no_progress,
      invocation=tuple(invocation_argv(args)))


def invocation_argv(args) -> list:
  """This command as typed, rebuilt from ``args`` (``sys.argv`` is not it
  when `main` is called in-process)."""
  argv = ["hint-jax", "experiment", args.table, "--profile", args.profile,
          "--out", str(args.out)]
  if args.data_dir:
    argv += ["--data-dir", args.data_dir]
  if args.dataset:
    argv += ["--dataset", args.dataset]
  for f in args.poison_file:
    argv += ["--poison-file", str(f)]
  if args.ratios is not None:
    argv += ["--ratios", ",".join(f"{r:g}" for r in args.ratios)]
  if args.methods is not None:
    argv += ["--methods", ",".join(args.methods)]
  if args.datasets is not None:
    argv += ["--datasets", ",".join(args.datasets)]
  if args.attacks is not None:
    argv += ["--attacks", ",".join(args.attacks)]
  if args.trials is not None:
    argv += ["--trials", str(args.trials)]
  return argv + (["--no-progress"] if args.no_progress else [])


def run(args):
  if args.table == BENCH:
    return _run_bench(args)
  outcome = runner.run(options(args), flags(),
                       CliReporter(False if args.no_progress else None))
  if args.dry_run:
    for status, cell_id in outcome.statuses:
      print(f"{status:7s} {cell_id}")
    print(f"{args.table} --profile {args.profile}: "
          f"{len(outcome.statuses)} cells, "
          f"{sum(s == 'done' for s, _ in outcome.statuses)} finished")
  else:
    print(f"experiment {outcome.table}/{outcome.profile}: "
          f"{outcome.finished} of {len(outcome.statuses)} cells finished "
          f"({outcome.trained} run now); `hint-jax report {args.out}` "
          "writes the tables")
  return 0
