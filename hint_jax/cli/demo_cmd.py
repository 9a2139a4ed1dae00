"""``hint-jax demo``: the README's main job on the embedded digits.

Poisons the whole training set with the mixed attack (PGD, DAP, DURP and
DeepConfuse in equal shares, eps = 0.3; DeepConfuse's generator trained for
300 steps), trains the
same model from the same seed on it without and with HINT, prints both
test accuracies and draws the healthy-noise figure.
"""

import json

from hint_jax.cli import figure_cmd, poison_cmd, train_cmd
from hint_jax.cli.common import check_out, command_parser, info, nonneg_int


def register(sub):
  p = sub.add_parser("demo", help="poison the embedded 8x8 digits (no "
                     "download needed), train without and with HINT; print "
                     "both test accuracies")
  p.add_argument("--out", default="runs/demo", help="output directory")
  p.add_argument("--seed", type=nonneg_int, default=0)
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def run(args):
  parser = command_parser(poison_cmd.register, train_cmd.register,
                          figure_cmd.register)
  quiet = ["--no-progress"] if args.no_progress else []
  check_out(args.out)
  poison_file = f"{args.out}/poison.npz"
  info("demo: crafting the poisoned training set (mixed PGD/DAP/DURP/"
       "DeepConfuse, p = 1)")
  poison_cmd.run(parser.parse_args(
      ["poison", "--dataset", "digits", "--attacks", "pgd,dap,durp,dc",
       "--dc-steps", "300", "--ratio", "1", "--seed", str(args.seed),
       "--out", poison_file] + quiet))
  results = {}
  for name, extra in (("plain", []), ("hint", ["--defense", "hint"])):
    argv = ["train", "--dataset", "digits", "--seed", str(args.seed),
            "--poison", poison_file, "--out", f"{args.out}/{name}",
            "--overwrite"] + extra
    argv += quiet
    info(f"demo: training {'with HINT' if extra else 'without a defence'}")
    train_cmd.run(parser.parse_args(argv))
    with open(f"{args.out}/{name}/result.json") as f:
      results[name] = json.load(f)
  fig_args = parser.parse_args(["figure", "noise", "--run",
                                f"{args.out}/hint"])
  figure_cmd.run_noise(fig_args)
  plain, hinted = results["plain"], results["hint"]
  print(f"\ndigits poisoned with PGD/DAP/DURP/DeepConfuse (p = 1, "
        f"eps = 0.3), "
        f"{plain['model']}, {plain['epochs']} epochs, seed {args.seed}:")
  print(f"  no defence: test accuracy {100 * plain['test_accuracy']:.2f}% "
        f"({plain['train_seconds']:.1f} s training)")
  print(f"  HINT:       test accuracy {100 * hinted['test_accuracy']:.2f}% "
        f"({hinted['train_seconds']:.1f} s training + "
        f"{hinted['defense_seconds']:.1f} s HINT, "
        f"{hinted['num_selected']} examples noised)")
  print(f"results: {poison_file}, {args.out}/plain/result.json, "
        f"{args.out}/hint/result.json, {args.out}/hint/fig_noise.png")
  return 0
