"""LiSSA's scale for the MNIST-10 MLP, fixed before any of its scores.

LiSSA's recursion h <- g + (1 - damp) h - C_B h / scale contracts only if
every mini-batch curvature C_B has its largest eigenvalue below 2 x scale.
This script trains the protocol's full-data model (seed 0, as the accuracy
study does), measures the largest eigenvalue of the Gauss-Newton matrix on
all 5000 training images and on ``--batches`` random batches of 64 (the
study's LiSSA batch) by Lanczos, and prints the scale the plan's rule
gives: the smallest of 1, 2, 5, 10, 20, 50, ... that is at least the
largest batch eigenvalue (2 x scale then leaves a factor of 2 for batches
not sampled here). It writes a JSON record with ``--json``.

    python experiments/mlp_curvature_scale.py --data-dir ../shared/data \
        --json experiments/results/influence_bench_cpu/mlp_curvature.json

Eight batches drawn without replacement (the defaults, the plan's first
measurement) missed the tail that made LiSSA diverge at scale 1. With
``--with-replacement`` the batches are drawn as LiSSA draws them, and with
``--per-example`` the script also measures every training image's own
Gauss-Newton eigenvalue (a batch's is at most the mean of its members'),
which names the few images that make the tail:

    python experiments/mlp_curvature_scale.py --data-dir ../shared/data \
        --batches 300 --with-replacement --per-example \
        --json experiments/results/influence_bench_cpu/mlp_curvature_tail.json
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax.flatten_util import ravel_pytree

from hint_jax import attribution
from hint_jax.attribution import functions
from hint_jax.attribution import groundtruth as gt
from hint_jax.influence.spectrum import power_iteration
from hint_jax.pipeline import groundtruth as pgt


def top_eigenvalue(data, params, x, y, key, iterations):
  state = attribution.prepare("arnoldi", data.apply, params,
                              (jnp.asarray(x), jnp.asarray(y)), key=key,
                              iterations=iterations, top_k=1)
  return float(state.arrays["eigenvalues"][0])


def per_example_eigenvalues(data, params, iterations, chunk=250):
  """Each training image's largest Gauss-Newton eigenvalue (a rank <= 9
  matrix; power iteration from a key per image, vmapped over chunks)."""
  flat = ravel_pytree(params)[0]
  ggn = functions.curvature_matvec("ggn")

  def one(x, y, key):
    return power_iteration(
        lambda v: ggn(data.apply, params, x[None], y[None], v), flat, key,
        iterations)

  many = jax.jit(jax.vmap(one))
  n = len(data.x_train)
  keys = jax.random.split(jax.random.key(7), n)
  out = [np.asarray(many(jnp.asarray(data.x_train[i:i + chunk]),
                         jnp.asarray(data.y_train[i:i + chunk]),
                         keys[i:i + chunk])) for i in range(0, n, chunk)]
  return np.concatenate(out)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data-dir", default=None)
  p.add_argument("--protocol", default="mnist_mlp")
  p.add_argument("--batches", type=int, default=8)
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--iterations", type=int, default=30)
  p.add_argument("--with-replacement", action="store_true",
                 help="draw each batch with replacement, as LiSSA does")
  p.add_argument("--per-example", action="store_true",
                 help="also every training image's own eigenvalue")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  protocol = pgt.get_protocol(args.protocol)
  data = pgt.load_protocol(protocol, args.data_dir)
  n = len(data.x_train)
  t0 = time.perf_counter()
  stack = gt.train_models(data.init, data.train_loss, data.x_train,
                          data.y_train, np.ones((1, n), bool), np.array([0]),
                          protocol.spec, jax.random.key(0))
  params = gt.unstack(stack, 0)
  print(f"trained the full-data model in {time.perf_counter() - t0:.0f} s")
  full = top_eigenvalue(data, params, data.x_train, data.y_train,
                        jax.random.key(1), args.iterations)
  print(f"largest GGN eigenvalue, all {n} images: {full:.3f}")
  rng = np.random.default_rng(0)
  batch = []
  for b in range(args.batches):
    idx = rng.choice(n, args.batch_size, replace=args.with_replacement)
    batch.append(top_eigenvalue(data, params, data.x_train[idx],
                                data.y_train[idx], jax.random.key(2 + b),
                                args.iterations))
    if args.batches <= 20 or b % 50 == 49:
      print(f"  batch {b}: {batch[-1]:.3f}")
  worst = max(batch)
  record = {}
  if args.batches > 20:
    q = np.quantile(batch, [0.5, 0.9, 0.99])
    print(f"batch eigenvalues: median {q[0]:.3f}, 90% {q[1]:.3f}, "
          f"99% {q[2]:.3f}, largest {worst:.3f}; "
          f"{np.mean(np.array(batch) > 2):.1%} above 2")
  if args.per_example:
    t1 = time.perf_counter()
    own = per_example_eigenvalues(data, params, args.iterations)
    top = np.argsort(-own)[:10]
    q = np.quantile(own, [0.5, 0.99, 0.999])
    print(f"per image ({time.perf_counter() - t1:.0f} s): median "
          f"{q[0]:.4f}, 99% {q[1]:.2f}, 99.9% {q[2]:.1f}, largest "
          f"{own[top[0]]:.1f} (image {top[0]})")
    record["per_example"] = {
        "quantiles": {"0.5": float(q[0]), "0.99": float(q[1]),
                      "0.999": float(q[2])},
        "largest": [{"index": int(i), "eigenvalue": float(own[i]),
                     "label": int(data.y_train[i])} for i in top]}
  scale = next(m * 10.0 ** e for e in range(0, 10) for m in (1, 2, 5)
               if m * 10.0 ** e >= worst)
  print(f"largest batch eigenvalue {worst:.3f}: scale {scale:g}")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps({
        "protocol": args.protocol, "iterations": args.iterations,
        "full_data_lambda_max": full, "batch_size": args.batch_size,
        "with_replacement": args.with_replacement,
        "batch_lambda_max": batch, **record, "rule": "the smallest of 1, 2, 5, 10, 20, "
        "... >= the largest batch lambda_max", "scale": scale}, indent=1) + "\n")


if __name__ == "__main__":
  main()
