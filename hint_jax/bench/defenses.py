"""``hint-jax bench defenses``: each defence's wall time as a ratio to
undefended training (paper Table V), measured in one process.

Every run is a whole ``hint-jax train`` (same data, model, seed and epochs;
data loading excluded, compilation included, as a user meets it) into a
temporary folder. Runs are repeated in alternating order (forward, then
backward) so that a load change on a shared machine hits all variants
alike, and medians are reported.
"""

import json
import pathlib
import platform
import statistics
import tempfile

import jax

from hint_jax.cli.common import info, positive_int, write_json_atomic

DEFENSES = ("none", "hint", "friends", "atda", "epic")


def register(bsub):
  p = bsub.add_parser("defenses", help="wall time of each defence over "
                      "undefended training (paper Table V)")
  p.add_argument("--dataset", default="mnist",
                 choices=("mnist", "cifar10", "digits"))
  p.add_argument("--data-dir", default=None)
  p.add_argument("--subset", type=positive_int, default=None,
                 help="training images (default: all)")
  p.add_argument("--epochs", type=positive_int, default=None,
                 help="default: the dataset's preset")
  p.add_argument("--defenses", default=",".join(DEFENSES),
                 help="comma-separated, 'none' first is the reference")
  p.add_argument("--repeats", type=positive_int, default=1)
  p.add_argument("--extra", default="",
                 help="extra `train` flags for every run, e.g. "
                 "'--atda-steps 7'")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--json", default=None, help="write the figures here")
  p.set_defaults(func=run)


def run(args):
  from hint_jax.cli.main import build_parser  # pylint: disable=g-import-not-at-top
  from hint_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  names = [d.strip() for d in args.defenses.split(",") if d.strip()]
  if not names or names[0] != "none" or any(d not in DEFENSES
                                            for d in names):
    raise ConfigError(f"--defenses must start with none and list from "
                      f"{', '.join(DEFENSES)}; got {args.defenses!r}")
  parser = build_parser()
  times = {d: [] for d in names}
  accs = {d: [] for d in names}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(args.repeats):
      order = names if r % 2 == 0 else names[::-1]
      for d in order:
        out = pathlib.Path(tmp) / f"{d}_{r}"
        argv = ["train", "--dataset", args.dataset, "--defense", d,
                "--out", str(out), "--eval-every", "0"]
        argv += ["--data-dir", args.data_dir] if args.data_dir else []
        argv += ["--subset", str(args.subset)] if args.subset else []
        argv += ["--epochs", str(args.epochs)] if args.epochs else []
        argv += ["--no-progress"] if args.no_progress else []
        argv += args.extra.split()
        info(f"bench defenses: {d} (repeat {r + 1}/{args.repeats})")
        targs = parser.parse_args(argv)
        targs.func(targs)
        res = json.loads((out / "result.json").read_text())
        # Training plus the defence's own work; data loading is left out.
        times[d].append(res["train_seconds"] + res["defense_seconds"])
        accs[d].append(res["test_accuracy"])
  base = statistics.median(times["none"])
  fig = {"dataset": args.dataset, "subset": args.subset,
         "epochs": args.epochs, "repeats": args.repeats, "extra": args.extra,
         "backend": jax.default_backend(), "machine": platform.machine(),
         "paper_table_v": {"friends": 1.52, "atda": 3.6, "epic": 1.97,
                           "hint": 1.52},
         "defenses": {d: {"median_seconds": statistics.median(times[d]),
                          "seconds": times[d], "test_accuracy": accs[d],
                          "ratio": statistics.median(times[d]) / base}
                      for d in names}}
  print(f"{'defence':10s} {'seconds':>9s} {'ratio':>7s} {'paper':>7s} "
        f"{'test acc':>9s}")
  for d in names:
    f = fig["defenses"][d]
    paper = fig["paper_table_v"].get(d)
    print(f"{d:10s} {f['median_seconds']:9.1f} {f['ratio']:6.2f}x "
          f"{(f'{paper:.2f}x' if paper else '-'):>7s} "
          f"{100 * statistics.median(f['test_accuracy']):8.2f}%")
  if args.json:
    write_json_atomic(args.json, fig)
  return 0
