"""Training throughput (images/s) of the paper's networks, against the same
network in PyTorch when torch is installed: the MNIST ConvNet at the
authors' MNIST step, resnet_tiny and ResNet-18 at the paper's CIFAR-10 step
(Nesterov SGD, weight decay, random crop + flip)."""

import platform
import statistics

import jax
import jax.numpy as jnp

from hint_jax import xla_options
from hint_jax.bench.timing import interleaved_medians, quiet

# model -> (dataset of its preset, input shape, torch twin's arguments)
MODELS = {
    "convnet": ("mnist", (28, 28, 1), None),
    "resnet_tiny": ("cifar10", (32, 32, 3),
                    dict(stage_sizes=(1, 1, 1, 1), widths=(16, 32, 64, 128))),
    "resnet18": ("cifar10", (32, 32, 3),
                 dict(stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512))),
}


def _jax_runner(model_name, x_u8, y, batch_size, steps, options):
  """``run()`` doing ``steps`` training steps of the library's train step,
  compiled with ``options`` (``"library"``: as the library compiles it,
  ``"xla_defaults"``: no compiler options)."""
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.train import Trainer  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top
  dataset, shape, _ = MODELS[model_name]
  model = get_model(model_name, 10, shape)
  trainer = Trainer(model, preset(dataset, batch_size=batch_size), len(x_u8))
  if options == "library":
    step = trainer.train_steps.step
  else:
    step = jax.jit(lambda s, xs, ys, idx: trainer.train_step(s, xs[idx],
                                                             ys[idx]),
                   donate_argnums=0)
  holder = {"state": trainer.init_state(jax.random.key(0))}
  x_dev, y_dev = jnp.asarray(x_u8), jnp.asarray(y)
  batches = jnp.asarray(trainer.epoch_batches(holder["state"], 0,
                                              len(x_u8))[:steps])

  def run():
    m = None
    for idx in batches:
      holder["state"], m = step(holder["state"], x_dev, y_dev, idx)
    return m

  return run


def train_throughput(x_u8, y, *, model="convnet", batch_size=128, steps=50,
                     repeats=5, torch=True, note=quiet) -> dict:
  """Images/s of ``steps`` training steps of ``model`` (a key of
  ``MODELS``) on the images ``x_u8`` (uint8 NHWC) and labels ``y``:

  * ``hint_jax``: the library's train step, as it compiles it
    (``hint_jax.xla_options``);
  * ``hint_jax_xla_defaults``: the same step without compiler options;
  * ``pytorch``: the same network and step in PyTorch (when ``torch`` and
    torch is importable; random uint8 batches of the same shape).

  Medians of ``repeats`` interleaved repeats, and per repeat the ratio of
  each runner's time to PyTorch's in that repeat (their median is the
  figure to quote on a noisy machine).
  """
  if model not in MODELS:
    raise ValueError(f"unknown model {model!r}; one of {', '.join(MODELS)}")
  runners = {"hint_jax": _jax_runner(model, x_u8, y, batch_size, steps,
                                     "library"),
             "hint_jax_xla_defaults": _jax_runner(model, x_u8, y, batch_size,
                                                  steps, "xla_defaults")}
  torch_version = None
  if torch:
    try:
      import torch as torch_lib  # pylint: disable=g-import-not-at-top
      from hint_jax.bench import torch_reference  # pylint: disable=g-import-not-at-top
      twin = MODELS[model][2]
      torch_run = (torch_reference.make_torch_step(batch_size) if twin is None
                   else torch_reference.make_torch_resnet_step(batch_size,
                                                               **twin))
      runners["pytorch"] = lambda: torch_run(steps)
      torch_version = torch_lib.__version__
    except ImportError:
      note("torch is not installed: no PyTorch reference (pip install "
           "torch to add it)")
  note(f"{model}: compiling / warming up ...")
  for fn in runners.values():
    jax.block_until_ready(fn())
  note(f"{model}: timing {repeats} interleaved repeats x {steps} steps ...")
  medians = interleaved_medians(runners, repeats)
  images = steps * batch_size
  figures = {name: {"images_per_second": images / med, "median_seconds": med,
                    "repeat_seconds": ts}
             for name, (med, ts) in medians.items()}
  if "pytorch" in medians:
    torch_ts = medians["pytorch"][1]
    for name, (_, ts) in medians.items():
      per_repeat = [t_ref / t for t_ref, t in zip(torch_ts, ts)]
      figures[name]["speed_vs_pytorch_per_repeat"] = per_repeat
      figures[name]["speed_vs_pytorch_median"] = statistics.median(per_repeat)
  return {"benchmark": "train_throughput", "model": model,
          "dataset": MODELS[model][0], "batch_size": batch_size,
          "steps_per_repeat": steps, "repeats": repeats,
          "figures": figures, "backend": jax.default_backend(),
          "xla_options": xla_options.status(),
          "machine": platform.machine(), "jax_version": jax.__version__,
          "torch_version": torch_version}
