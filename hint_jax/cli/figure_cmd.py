"""``hint-jax figure noise``: the paper's Fig. 1 for a HINT run
(`hint_jax.pipeline.figures` draws it); ``hint-jax figure bench-defences``:
Table V's bars from a saved ``hint-jax bench defences --json`` record."""

import pathlib

from hint_jax.cli.common import positive_int
from hint_jax.pipeline import figures


def register(sub):
  p = sub.add_parser("figure", help="figures of a finished run")
  fsub = p.add_subparsers(dest="figure", metavar="FIGURE", required=True)
  n = fsub.add_parser("noise", help="received image, healthy noise and "
                      "noised image with predictions (paper Fig. 1)")
  n.add_argument("--run", required=True,
                 help="output directory of `hint-jax train --defence hint`")
  n.add_argument("--num", type=positive_int, default=4,
                 help="examples (rows) to show")
  n.add_argument("--pick", choices=figures.PICKS, default="changed",
                 help="changed: examples whose true-class probability the "
                 "noise raised most (wrong-to-right first); top: largest "
                 "|I_up|; random")
  n.add_argument("--seed", type=int, default=0, help="for --pick random")
  n.add_argument("--out", default=None,
                 help="PNG path (default: RUN/fig_noise.png)")
  n.set_defaults(func=run_noise)
  b = fsub.add_parser("bench-defences", aliases=["bench-defenses"],
                      help="each defence's time over no defence's as bars, "
                      "the paper's Table V beside")
  b.add_argument("--json", required=True,
                 help="the file `hint-jax bench defences --json` wrote")
  b.add_argument("--out", default=None,
                 help="PNG path (default: the JSON's path with .png)")
  b.set_defaults(func=run_bench_defences)


def run_noise(args):
  out, rows = figures.noise_figure(args.run, args.out, num=args.num,
                                   pick=args.pick, seed=args.seed)
  print(f"wrote {out} ({len(rows)} examples, pick={args.pick})")
  return 0


def run_bench_defences(args):
  from hint_jax.experiment.figures import defence_bench_figure  # pylint: disable=g-import-not-at-top
  out = args.out or str(pathlib.Path(args.json).with_suffix(".png"))
  ratios = defence_bench_figure(args.json, out)
  print(f"wrote {out} (" + ", ".join(f"{m} {r:.2f}x"
                                     for m, r in ratios.items()) + ")")
  return 0
