"""Training throughput of the MNIST ConvNet (images/s), against the same
network in PyTorch when torch is installed."""

import platform

import jax
import jax.numpy as jnp

from hint_jax.bench.timing import interleaved_medians, quiet


def _jax_runner(conv_impl, splits, batch_size, steps):
  from hint_jax.models import ConvNet, Model  # pylint: disable=g-import-not-at-top
  from hint_jax.train import Trainer  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top
  model = Model("convnet", ConvNet(10, conv_impl=conv_impl), (28, 28, 1))
  cfg = preset("mnist", batch_size=batch_size)
  trainer = Trainer(model, cfg, len(splits.x_train))
  holder = {"state": trainer.init_state(jax.random.key(0))}
  x_dev, y_dev = jnp.asarray(splits.x_train), jnp.asarray(splits.y_train)
  batches = trainer.epoch_batches(holder["state"], 0, len(x_dev))
  batches = jnp.asarray(batches[:steps])

  def run():
    holder["state"], m = trainer.train_steps(holder["state"], x_dev, y_dev,
                                             batches)
    return m

  return run


def train_throughput(splits, *, batch_size=128, steps=50, repeats=5,
                     torch=True, note=quiet) -> dict:
  """Images/s of ``steps`` training steps of the MNIST ConvNet on
  ``splits`` (first convolution as im2col, "hint_jax", and as XLA's own,
  "hint_jax_xla_conv"), and of the PyTorch reference when ``torch`` and
  torch is importable; medians of ``repeats`` interleaved repeats."""
  runners = {"hint_jax": _jax_runner("auto", splits, batch_size, steps),
             "hint_jax_xla_conv": _jax_runner("xla", splits, batch_size,
                                              steps)}
  if torch:
    try:
      from hint_jax.bench.torch_reference import make_torch_step  # pylint: disable=g-import-not-at-top
      torch_run = make_torch_step(batch_size)
      runners["pytorch"] = lambda: torch_run(steps)
    except ImportError:
      note("torch is not installed: no PyTorch reference (pip install "
           "torch to add it)")
  note("compiling / warming up ...")
  for fn in runners.values():
    jax.block_until_ready(fn())
  note(f"timing {repeats} interleaved repeats x {steps} steps ...")
  medians = interleaved_medians(runners, repeats)
  images = steps * batch_size
  figures = {name: {"images_per_second": images / med, "median_seconds": med,
                    "repeat_seconds": ts}
             for name, (med, ts) in medians.items()}
  return {"benchmark": "train_throughput", "model": "convnet",
          "dataset": "mnist", "batch_size": batch_size,
          "steps_per_repeat": steps, "repeats": repeats,
          "figures": figures, "backend": jax.default_backend(),
          "machine": platform.machine(), "jax_version": jax.__version__}
