"""MetaPoison's craft step with the ensemble vmapped vs member by member.

Times `hint_jax.attacks.targeted`'s two step implementations side by side on
the same inputs (random images; the cost does not depend on their values),
after one warm-up call each (compilation), and prints the median seconds per
craft step of each mode and their ratio. Rounds alternate between the modes
so that a noisy shared machine slows both alike.

  python experiments/bench_metapoison.py --model resnet_tiny --members 4 \
      --rounds 3 --json out.json
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax.attacks import metapoison, targeted
from hint_jax.models import get_model

from bench_side_by_side import side_by_side, write_json


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="resnet_tiny")
  p.add_argument("--members", type=int, default=4)
  p.add_argument("--poisons", type=int, default=100)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--modes", default="loop,vmap")
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  modes = args.modes.split(",")
  model = get_model(args.model, 10, (32, 32, 3))
  members = [model.init(jax.random.key(i)) for i in range(args.members)]
  rng = np.random.default_rng(0)
  cfg = {m: targeted.MetaPoisonConfig(members=m) for m in modes}
  opt = optax.adam(targeted.MetaPoisonConfig.lr)
  x0 = jnp.asarray(rng.random((args.poisons, 32, 32, 3)), jnp.float32)
  y_p = jnp.full((args.poisons,), 4, jnp.int32)
  x_t = jnp.asarray(rng.random((1, 32, 32, 3)), jnp.float32)
  c_t = jnp.asarray([3], jnp.int32)
  b = targeted.MetaPoisonConfig.clean_batch
  clean_x = jnp.asarray(rng.random((args.members, 2, b, 32, 32, 3)),
                        jnp.float32)
  clean_y = jnp.asarray(rng.integers(0, 10, (args.members, 2, b)), jnp.int32)
  state = {}
  for m in modes:
    ens = (jax.tree.map(lambda *a: jnp.stack(a), *members) if m == "vmap"
           else list(members))
    delta = jnp.zeros_like(x0)
    state[m] = [ens, delta, opt.init(delta)]
  step = {"vmap": metapoison._mp_step, "loop": metapoison._mp_step_loop}  # pylint: disable=protected-access

  def run(m):
    ens, delta, opt_state = state[m]
    t = time.perf_counter()
    ens, delta, opt_state, loss = step[m](
        ens, x0, y_p, x_t, delta, opt_state, clean_x, clean_y, c_t,
        model=model, cfg=cfg[m], opt=opt)
    jax.block_until_ready((ens, delta, loss))
    state[m] = [ens, delta, opt_state]
    return time.perf_counter() - t

  first, times, med = side_by_side(run, modes, args.rounds)
  for m in modes:
    print(f"{m}: median {med[m]:.2f} s per craft step ({args.members} "
          f"members, {args.poisons} poisons + {b} clean images, {args.model})")
  if "loop" in med and "vmap" in med:
    print(f"vmap / loop: {med['vmap'] / med['loop']:.2f}x")
  write_json(args.json, args, first, times, med)


if __name__ == "__main__":
  main()
