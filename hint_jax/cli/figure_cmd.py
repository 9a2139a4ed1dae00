"""``hint-jax figure noise``: the paper's Fig. 1 for a HINT run
(`hint_jax.pipeline.figures` draws it)."""

from hint_jax.cli.common import positive_int
from hint_jax.pipeline import figures


def register(sub):
  p = sub.add_parser("figure", help="figures of a finished run")
  fsub = p.add_subparsers(dest="figure", metavar="FIGURE", required=True)
  n = fsub.add_parser("noise", help="received image, healthy noise and "
                      "noised image with predictions (paper Fig. 1)")
  n.add_argument("--run", required=True,
                 help="output directory of `hint-jax train --defense hint`")
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


def run_noise(args):
  out, rows = figures.noise_figure(args.run, args.out, num=args.num,
                                   pick=args.pick, seed=args.seed)
  print(f"wrote {out} ({len(rows)} examples, pick={args.pick})")
  return 0
