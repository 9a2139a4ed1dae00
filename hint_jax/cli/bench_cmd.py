"""``hint-jax bench``: throughput benchmarks (not tests).

Timings on a shared machine are noisy: every variant is timed in the same
run, repeats are interleaved (A, B, C, A, B, C, ...) so that load changes hit
all variants alike, and medians are reported.
"""

import platform
import statistics
import time

import jax
import jax.numpy as jnp

from hint_jax.cli.common import info, positive_int, write_json_atomic


def register(sub):
  p = sub.add_parser("bench", help="benchmarks (throughput, ratios)")
  bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
  t = bsub.add_parser("train", help="MNIST ConvNet training throughput "
                      "(images/s) at batch 128, against a PyTorch reference "
                      "when torch is installed")
  t.add_argument("--data-dir", default=None)
  t.add_argument("--batch-size", type=positive_int, default=128)
  t.add_argument("--steps", type=positive_int, default=50,
                 help="steps per timed repeat")
  t.add_argument("--repeats", type=positive_int, default=5)
  t.add_argument("--no-torch", action="store_true",
                 help="skip the PyTorch reference even if torch is installed")
  t.add_argument("--json", default=None, help="write the figures here")
  t.set_defaults(func=bench_train)
  from hint_jax.cli import bench_defenses, bench_hint, bench_influence  # pylint: disable=g-import-not-at-top
  bench_influence.register(bsub)
  bench_hint.register(bsub)
  bench_defenses.register(bsub)


def interleaved_medians(fns: dict, repeats: int):
  """Times each ``fn()`` ``repeats`` times, interleaved; returns
  ``{name: (median_seconds, all_seconds)}``."""
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - t0)
  return {name: (statistics.median(ts), ts) for name, ts in times.items()}


def _jax_runner(conv_impl, splits, args):
  from hint_jax.models import ConvNet, Model  # pylint: disable=g-import-not-at-top
  from hint_jax.train import Trainer  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top
  model = Model("convnet", ConvNet(10, conv_impl=conv_impl), (28, 28, 1))
  cfg = preset("mnist", batch_size=args.batch_size)
  trainer = Trainer(model, cfg, len(splits.x_train))
  holder = {"state": trainer.init_state(jax.random.key(0))}
  x_dev, y_dev = jnp.asarray(splits.x_train), jnp.asarray(splits.y_train)
  batches = trainer.epoch_batches(holder["state"], 0, len(x_dev))
  batches = jnp.asarray(batches[:args.steps])

  def run():
    holder["state"], m = trainer.train_steps(holder["state"], x_dev, y_dev,
                                             batches)
    return m

  return run


def bench_train(args):
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  dataset = data_lib.load_dataset("mnist", args.data_dir)
  splits = data_lib.split_train_val(dataset)
  runners = {"hint_jax": _jax_runner("auto", splits, args),
             "hint_jax_xla_conv": _jax_runner("xla", splits, args)}
  if not args.no_torch:
    try:
      from hint_jax.cli.torch_reference import make_torch_step  # pylint: disable=g-import-not-at-top
      torch_run = make_torch_step(args.batch_size)
      runners["pytorch"] = lambda: torch_run(args.steps)
    except ImportError:
      info("torch is not installed: no PyTorch reference "
           "(pip install torch to add it)")
  info("compiling / warming up ...")
  for fn in runners.values():
    jax.block_until_ready(fn())
  info(f"timing {args.repeats} interleaved repeats x {args.steps} steps ...")
  medians = interleaved_medians(runners, args.repeats)
  images = args.steps * args.batch_size
  figures = {name: {"images_per_second": images / med, "median_seconds": med,
                    "repeat_seconds": ts}
             for name, (med, ts) in medians.items()}
  for name, fig in figures.items():
    print(f"{name:20s} {fig['images_per_second']:8.0f} images/s")
  for name in figures:
    if name != "hint_jax":
      ratio = (figures["hint_jax"]["images_per_second"]
               / figures[name]["images_per_second"])
      print(f"hint_jax / {name}: {ratio:.2f}x throughput")
  result = {"benchmark": "train_throughput", "model": "convnet",
            "dataset": "mnist", "batch_size": args.batch_size,
            "steps_per_repeat": args.steps, "repeats": args.repeats,
            "figures": figures, "backend": jax.default_backend(),
            "machine": platform.machine(), "jax_version": jax.__version__}
  if args.json:
    write_json_atomic(args.json, result)
  return 0
