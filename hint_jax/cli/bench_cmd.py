"""``hint-jax bench``: throughput benchmarks (not tests).

Timings on a shared machine are noisy: each figure is the median of several
repeats, and variants are always compared inside one run.
"""

import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax.cli.common import info, positive_int, write_json_atomic


def register(sub):
  p = sub.add_parser("bench", help="benchmarks (throughput, ratios)")
  bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
  t = bsub.add_parser("train", help="MNIST ConvNet training throughput "
                      "(images/s) at batch 128")
  t.add_argument("--data-dir", default=None)
  t.add_argument("--batch-size", type=positive_int, default=128)
  t.add_argument("--steps", type=positive_int, default=100,
                 help="steps per timed repeat")
  t.add_argument("--repeats", type=positive_int, default=5)
  t.add_argument("--json", default=None, help="write the figures here")
  t.set_defaults(func=bench_train)


def _median_seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times), times


def bench_train(args):
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.train import Trainer  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top

  dataset = data_lib.load_dataset("mnist", args.data_dir)
  splits = data_lib.split_train_val(dataset)
  cfg = preset("mnist", batch_size=args.batch_size,
               steps_per_call=args.steps)
  model = get_model("convnet", 10, (28, 28, 1))
  trainer = Trainer(model, cfg, len(splits.x_train))
  state = trainer.init_state(jax.random.key(0))
  x_dev, y_dev = jnp.asarray(splits.x_train), jnp.asarray(splits.y_train)
  batches = jnp.asarray(trainer.epoch_batches(state, 0, len(x_dev))
                        [:args.steps])
  holder = {"state": state}

  def run_chunk():
    holder["state"], m = trainer.train_steps(holder["state"], x_dev, y_dev,
                                             batches)
    return m

  info("compiling ...")
  run_chunk()  # compile + warm up
  info(f"timing {args.repeats} x {args.steps} steps ...")
  median, times = _median_seconds(run_chunk, args.repeats)
  ips = args.steps * args.batch_size / median
  result = {"benchmark": "train_throughput", "model": "convnet",
            "dataset": "mnist", "batch_size": args.batch_size,
            "steps_per_repeat": args.steps, "repeat_seconds": times,
            "median_seconds": median, "images_per_second": ips,
            "backend": jax.default_backend(), "devices": len(jax.devices()),
            "machine": platform.machine(), "jax_version": jax.__version__}
  print(f"MNIST ConvNet training, batch {args.batch_size}: {ips:.0f} "
        f"images/s (median of {args.repeats} x {args.steps} steps; "
        f"{jax.default_backend()})")
  if args.json:
    write_json_atomic(args.json, result)
  return 0
