"""``hint-jax demo``: the README's main job on the embedded digits.

Trains the same model from the same seed without and with HINT, prints both
test accuracies and draws the healthy-noise figure. (Once poisoning attacks
exist, this becomes a poisoned-data demo.)
"""

import json

from hint_jax.cli import figure_cmd, train_cmd
from hint_jax.cli.common import info


def register(sub):
  p = sub.add_parser("demo", help="train on the embedded 8x8 digits (no "
                     "download needed) without and with HINT; print both "
                     "test accuracies")
  p.add_argument("--out", default="runs/demo", help="output directory")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def run(args):
  from hint_jax.cli.main import build_parser  # pylint: disable=g-import-not-at-top
  parser = build_parser()
  results = {}
  for name, extra in (("plain", []), ("hint", ["--defense", "hint"])):
    argv = ["train", "--dataset", "digits", "--seed", str(args.seed),
            "--out", f"{args.out}/{name}", "--overwrite"] + extra
    if args.no_progress:
      argv.append("--no-progress")
    info(f"demo: training {'with HINT' if extra else 'without a defence'}")
    train_cmd.run(parser.parse_args(argv))
    with open(f"{args.out}/{name}/result.json") as f:
      results[name] = json.load(f)
  fig_args = parser.parse_args(["figure", "noise", "--run",
                                f"{args.out}/hint"])
  figure_cmd.run_noise(fig_args)
  plain, hinted = results["plain"], results["hint"]
  print(f"\ndigits, {plain['model']}, {plain['epochs']} epochs, seed "
        f"{args.seed}:")
  print(f"  no defence: test accuracy {100 * plain['test_accuracy']:.2f}% "
        f"({plain['train_seconds']:.1f} s training)")
  print(f"  HINT:       test accuracy {100 * hinted['test_accuracy']:.2f}% "
        f"({hinted['train_seconds']:.1f} s training + "
        f"{hinted['defense_seconds']:.1f} s HINT, "
        f"{hinted['num_selected']} examples noised)")
  print(f"results: {args.out}/plain/result.json, {args.out}/hint/result.json,"
        f" {args.out}/hint/fig_noise.png")
  return 0
