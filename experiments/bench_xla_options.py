"""The library's CPU compiler options (`hint_jax.xla_options`) on the two
other costly loops: ATDA's training step (the paper's inner attack, 10 PGD
steps, inside every step) and a gradient-matching craft step.

Each computation is compiled twice from the same function, with the
options and without (XLA's defaults), and the two alternate in every round
so a noisy machine slows both alike. Random images and weights (the cost
does not depend on their values). Prints the median seconds of each and
their ratio.

  python experiments/bench_xla_options.py --rounds 5 --json out.json
"""

import argparse
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import xla_options
from hint_jax.bench.timing import interleaved_medians
from hint_jax.attacks.gradient_matching import (gradient_alignment,
                                                param_gradient)
from hint_jax.defences.atda import AtdaConfig, make_adversary
from hint_jax.models import get_model
from hint_jax.train import Trainer
from hint_jax.train.presets import preset


def mnist_steps(model, *, atda, steps, jit):
  """``run()``: ``steps`` training steps (ATDA's with ``atda``) of the
  MNIST ``model`` on random images, batch 128, the step compiled by
  ``jit`` (a ``jax.jit``-like function taking ``donate_argnums``)."""
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (128 * steps, 28, 28, 1), dtype=np.uint8)
  y = rng.integers(0, 10, len(x)).astype(np.int32)
  trainer = Trainer(model, preset("mnist", batch_size=128), len(x),
                    adversary=(make_adversary(model, AtdaConfig()) if atda
                               else None))
  step = jit(lambda s, xs, ys, idx: trainer.train_step(s, xs[idx], ys[idx]),
             donate_argnums=0)
  holder = {"state": trainer.init_state(jax.random.key(0))}
  xd, yd = jnp.asarray(x), jnp.asarray(y)
  batches = jnp.asarray(trainer.epoch_batches(holder["state"], 0, len(x)))

  def run():
    m = None
    for idx in batches:
      holder["state"], m = step(holder["state"], xd, yd, idx)
    return m

  return run


def atda_steps(options, steps=4):
  """``run()``: ``steps`` ATDA training steps of the MNIST ConvNet, batch
  128, compiled with ``options``."""
  return mnist_steps(get_model("convnet", 10, (28, 28, 1)), atda=True,
                     steps=steps, jit=functools.partial(
                         jax.jit, compiler_options=options))


def gm_objective(options, count=100):
  """``run()``: value and input gradient of gradient matching's objective
  for ``count`` poisons on resnet_tiny, compiled with ``options``."""
  rng = np.random.default_rng(1)
  model = get_model("resnet_tiny", 10, (32, 32, 3))
  params, state = model.init(jax.random.key(1))
  xp = jnp.asarray(rng.random((count, 32, 32, 3)), jnp.float32)
  yp = jnp.asarray(rng.integers(0, 10, count))

  def logits(p, s, xx):
    return model.apply_eval(p, s, xx)

  target = param_gradient(logits, params, state, xp[:1], yp[:1])

  def objective(d):
    return 1.0 - gradient_alignment(logits, params, state,
                                    jnp.clip(xp + d, 0.0, 1.0), yp, target)

  fn = jax.jit(jax.value_and_grad(objective), compiler_options=options)
  zeros = jnp.zeros_like(xp)
  return lambda: fn(zeros)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--json", default=None)
  args = ap.parse_args(argv)
  options = xla_options.compiler_options()
  print(xla_options.status())
  record = {"benchmark": "xla_options_other_loops",
            "options": xla_options.status(), "figures": {}}
  for name, make in (("atda_4_steps", atda_steps),
                     ("gm_objective_grad_100_poisons", gm_objective)):
    fns = {"options": make(options), "xla_defaults": make(None)}
    for fn in fns.values():  # compile
      jax.block_until_ready(fn())
    med = {k: m for k, (m, _) in interleaved_medians(fns, args.rounds).items()}
    ratio = med["xla_defaults"] / med["options"]
    record["figures"][name] = {"median_seconds": med,
                               "speedup_from_options": ratio}
    print(f"{name}: {med['options']:.3f} s with the options, "
          f"{med['xla_defaults']:.3f} s without: {ratio:.2f}x")
  record.update(jax_version=jax.__version__, backend=jax.default_backend(),
                rounds=args.rounds)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(record, f, indent=2)


if __name__ == "__main__":
  main()
