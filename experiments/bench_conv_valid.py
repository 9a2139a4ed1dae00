"""The ConvNet's input gradients through `hint_jax.models.layers.conv_valid`
(``conv_impl="xla"``, the default) against lax's own convolution
derivatives (``conv_impl="lax"``), on the two loops where they matter: the
MNIST training step (batch 128) and ATDA's training step (10 PGD steps on
the input inside every step). Both compiled as the library compiles
(`hint_jax.xla_options`); the variants alternate in every round. Random
images (the cost does not depend on their values). Prints the median
seconds and the per-round speed-up.

  python experiments/bench_conv_valid.py --rounds 7 --json out.json
"""

import argparse
import json
import statistics

import jax

from bench_xla_options import mnist_steps  # experiments/, beside this file
from hint_jax import xla_options
from hint_jax.bench.timing import interleaved_medians
from hint_jax.models import ConvNet, Model


def steps_runner(conv_impl, atda, steps):
  """``run()``: ``steps`` training steps (ATDA's with ``atda``) of the
  MNIST ConvNet with ``conv_impl``, batch 128, compiled as the library
  compiles."""
  model = Model("convnet", ConvNet(conv_impl=conv_impl), (28, 28, 1))
  return mnist_steps(model, atda=atda, steps=steps, jit=xla_options.jit)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--rounds", type=int, default=7)
  ap.add_argument("--json", default=None)
  args = ap.parse_args(argv)
  out = {"xla_options": xla_options.status(), "jax_version": jax.__version__,
         "rounds": args.rounds}
  for name, atda, steps in (("train_step", False, 40), ("atda_step", True, 4)):
    runners = {impl: steps_runner(impl, atda, steps)
               for impl in ("xla", "lax")}
    for fn in runners.values():
      jax.block_until_ready(fn())
    med = interleaved_medians(runners, args.rounds)
    ratios = [b / a for a, b in zip(med["xla"][1], med["lax"][1])]
    out[name] = {"steps": steps, "conv_valid_seconds": med["xla"][0],
                 "lax_seconds": med["lax"][0],
                 "speedup_per_round": ratios,
                 "speedup_median": statistics.median(ratios)}
    print(f"{name}: conv_valid {med['xla'][0]:.3f} s, lax "
          f"{med['lax'][0]:.3f} s for {steps} steps; speed-up median "
          f"{statistics.median(ratios):.3f} (rounds "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
