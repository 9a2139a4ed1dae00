"""Gradient matching's craft step with the restarts vmapped together vs one
restart at a time (`GradientMatchingConfig.restart_batch`).

Times `hint_jax.attacks.targeted._gm_step` on the same inputs (random
images and weights; the cost does not depend on their values) for
``--restarts`` restarts in one vmapped call and for the same restarts in
calls of one, after a warm-up call each (compilation), alternating between
the two in every round so a noisy shared machine slows both alike. Prints
the median seconds per step of all restarts in each mode and their ratio.

  python experiments/bench_gradient_matching.py --restarts 4 --rounds 5 \
      --json out.json
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax.attacks import targeted
from hint_jax.models import get_model
from hint_jax.train.augment import random_shift_flip

from bench_side_by_side import side_by_side, write_json


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="resnet_tiny")
  p.add_argument("--restarts", type=int, default=4)
  p.add_argument("--poisons", type=int, default=100)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  model = get_model(args.model, 10, (32, 32, 3))
  params, model_state = model.init(jax.random.key(0))
  logits_apply = model._logits_apply  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  x0 = jnp.asarray(rng.random((args.poisons, 32, 32, 3)), jnp.float32)
  y = jnp.full((args.poisons,), 4, jnp.int32)
  target_grad = targeted.param_gradient(
      logits_apply, params, model_state,
      jnp.asarray(rng.random((1, 32, 32, 3)), jnp.float32),
      jnp.asarray([3], jnp.int32))
  opt = optax.adam(targeted.GradientMatchingConfig.lr)
  eps = jnp.float32(16 / 255)
  r = args.restarts
  keys = jax.vmap(lambda j: jax.random.fold_in(jax.random.key(1), j))(
      jnp.arange(r))

  def fresh(n):
    d = jnp.zeros((n,) + x0.shape, jnp.float32)
    return [d, opt.init(d)]

  state = {"vmap": fresh(r), "one": [fresh(1) for _ in range(r)]}

  def step(d, o, k):
    return targeted._gm_step(  # pylint: disable=protected-access
        params, model_state, x0, y, target_grad, d, o, k, eps,
        logits_apply=logits_apply, augment=random_shift_flip, opt=opt)

  def run(mode):
    t = time.perf_counter()
    if mode == "vmap":
      d, o, loss = step(*state["vmap"], keys)
      state["vmap"] = [d, o]
    else:
      for j in range(r):
        d, o, loss = step(*state["one"][j], keys[j:j + 1])
        state["one"][j] = [d, o]
    jax.block_until_ready((d, loss))
    return time.perf_counter() - t

  modes = ("one", "vmap")
  first, times, med = side_by_side(run, modes, args.rounds)
  print(f"one restart per call: median {med['one']:.2f} s per step of "
        f"{r} restarts; all {r} vmapped: {med['vmap']:.2f} s "
        f"({args.poisons} poisons, {args.model})")
  print(f"vmap / one: {med['vmap'] / med['one']:.2f}x")
  write_json(args.json, args, first, times, med)


if __name__ == "__main__":
  main()
