"""``hint-jax demo``: the README's main job on the embedded digits."""

from hint_jax.cli import train_cmd


def register(sub):
  p = sub.add_parser("demo", help="train on the embedded 8x8 digits (no "
                     "download needed) and print the test accuracy")
  p.add_argument("--out", default="runs/demo", help="output directory")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def run(args):
  parser_args = ["--dataset", "digits", "--seed", str(args.seed),
                 "--out", f"{args.out}/plain", "--overwrite"]
  if args.no_progress:
    parser_args.append("--no-progress")
  from hint_jax.cli.main import build_parser  # pylint: disable=g-import-not-at-top
  train_args = build_parser().parse_args(["train"] + parser_args)
  return train_cmd.run(train_args)
