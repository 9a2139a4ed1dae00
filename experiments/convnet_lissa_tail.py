"""Is the ConvNet benchmark's LiSSA scale safe? The batch Gauss-Newton
eigenvalues of the attributed MNIST ConvNet.

LiSSA's recursion contracts only while every batch's largest curvature
eigenvalue stays below 2 x scale; on the MLP a heavy tail that eight
sampled batches missed made scale 1 diverge
(``experiments/mlp_curvature_scale.py``). This script measures, on the
model and the 5000 curvature images of the ConvNet attribution benchmark
(``experiments/bench_attribution_convnet.py``; the images are read from
the lissa run's saved state, so LiSSA must have been prepared once), the
largest Gauss-Newton eigenvalue of 300 batches of 32 drawn with
replacement (as LiSSA draws them) and of every one of the 5000 images
alone, by 30 power iterations. The products are called one by one from
Python: inside a ``fori_loop`` the ConvNet's convolutions run many times
slower on XLA:CPU.

    python experiments/convnet_lissa_tail.py --work runs/attr_convnet \\
        --json experiments/results/bench/convnet_lissa_tail.json
"""

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from hint_jax import xla_options
from hint_jax.attribution import functions
from hint_jax.models import capture, get_model
from hint_jax.pipeline import checkpoint

ITERATIONS = 30


def _unit(v):
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--work", default="runs/attr_convnet")
  p.add_argument("--batches", type=int, default=300)
  p.add_argument("--batch-size", type=int, default=32)
  p.add_argument("--json", required=True)
  args = p.parse_args()
  work = pathlib.Path(args.work)
  settings, params, model_state = checkpoint.read_final(work / "model")
  model = get_model(settings["model"], 10, (28, 28, 1))
  params = jax.tree.map(jnp.asarray, params)
  apply = capture.tapped_apply(model, jax.tree.map(jnp.asarray,
                                                   model_state))
  with np.load(work / "lissa" / "state.npz") as z:
    cx = jnp.asarray(z["arrays/curvature_x"])
    cy = jnp.asarray(z["arrays/curvature_y"])
  flat = ravel_pytree(params)[0]
  ggn = functions.curvature_matvec("ggn")
  batch_ggn = xla_options.jit(
      lambda idx, v: ggn(apply, params, cx[idx], cy[idx], v))
  image_ggn = xla_options.jit(jax.vmap(
      lambda x, y, v: ggn(apply, params, x[None], y[None], v)))

  def batch_eigenvalue(idx, key):
    v = _unit(jax.random.normal(key, flat.shape))
    for _ in range(ITERATIONS):
      v = _unit(batch_ggn(idx, v))
    return float(jnp.vdot(v, batch_ggn(idx, v)))

  rng = np.random.default_rng(0)
  t0 = time.perf_counter()
  batch = np.array([batch_eigenvalue(
      jnp.asarray(rng.integers(0, len(cx), args.batch_size)),
      jax.random.key(b)) for b in range(args.batches)])
  q = np.quantile(batch, [0.5, 0.9, 0.99])
  print(f"{args.batches} batches of {args.batch_size} "
        f"({time.perf_counter() - t0:.0f} s): median {q[0]:.1f}, 90% "
        f"{q[1]:.1f}, 99% {q[2]:.1f}, largest {batch.max():.1f}", flush=True)

  keys = jax.random.split(jax.random.key(7), len(cx))
  t0 = time.perf_counter()
  own = []
  for i in range(0, len(cx), 50):
    v = _unit(jax.vmap(lambda k: jax.random.normal(k, flat.shape))(
        keys[i:i + 50]))
    for _ in range(ITERATIONS):
      v = _unit(image_ggn(cx[i:i + 50], cy[i:i + 50], v))
    own.append(np.asarray(jnp.sum(
        v * image_ggn(cx[i:i + 50], cy[i:i + 50], v), axis=1)))
  own = np.concatenate(own)
  top = np.argsort(-own)[:10]
  qo = np.quantile(own, [0.5, 0.99, 0.999])
  print(f"per image ({time.perf_counter() - t0:.0f} s): median {qo[0]:.2f},"
        f" 99% {qo[1]:.1f}, 99.9% {qo[2]:.1f}, largest {own[top[0]]:.1f}")
  pathlib.Path(args.json).write_text(json.dumps({
      "model": str(work / "model"), "curvature_images": len(cx),
      "iterations": ITERATIONS, "batch_size": args.batch_size,
      "with_replacement": True,
      "batch_lambda_max": batch.tolist(),
      "batch_quantiles": {"0.5": q[0], "0.9": q[1], "0.99": q[2]},
      "fraction_above_200": float(np.mean(batch > 200)),
      "per_image_quantiles": {"0.5": qo[0], "0.99": qo[1], "0.999": qo[2]},
      "per_image_largest": [{"curvature_row": int(i),
                             "eigenvalue": float(own[i])} for i in top],
  }, indent=1) + "\n")


if __name__ == "__main__":
  main()
