"""Per-dataset defaults: the HINT paper's settings, a small one for the
embedded digits and a generic one for the user's own data.

A run shorter than its preset keeps the preset's *shape* by default
(``epoch_schedule="scaled"``; see experiments/README.md): every epoch
of the preset's schedules is placed at the same fraction of the shorter run,
``floor(e * E / P + 1/2)`` for a run of E epochs and a preset of P. E.g.
CIFAR-10's learning-rate milestones 30/50/70 of 80 become 6/9/13 in a
15-epoch run (and HINT's schedule 5/15/40 becomes 1/3/8, see
`hint_jax.hint.config.scaled_schedule`). ``"absolute"`` keeps the preset's
epoch numbers, so a short run may never reach them.
"""

import dataclasses
import math
from typing import Optional

from hint_jax.data import metadata
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import (CONVNET_MIN_SIZE, CONVNET_SMALL_MIN_SIZE,
                              DEFAULT_MODEL)
from hint_jax.train.loop import TrainConfig
from hint_jax.train.optim import OptimConfig

PRESETS = {
    # Authors' code: 10 epochs (Table I says 30), plain SGD 0.01, batch 128.
    "mnist": TrainConfig(epochs=10, batch_size=128,
                         optim=OptimConfig(lr=0.01)),
    # 80 epochs, SGD 0.1 Nesterov 0.9, wd 5e-4, x0.1 at 30/50/70, shift+flip.
    "cifar10": TrainConfig(epochs=80, batch_size=128, augment=True,
                           optim=OptimConfig(lr=0.1, momentum=0.9,
                                             nesterov=True, weight_decay=5e-4,
                                             lr_milestones=(30, 50, 70))),
    # Not in the paper: 1297 8x8 training images, sized to train in seconds.
    "digits": TrainConfig(epochs=30, batch_size=64,
                          optim=OptimConfig(lr=0.05, momentum=0.9)),
    # Not in the paper: the user's own data (folder:PATH, npz:PATH) and
    # preset(None). The MNIST step with momentum 0.9: a start, not tuned.
    "generic": TrainConfig(epochs=10, batch_size=128,
                           optim=OptimConfig(lr=0.01, momentum=0.9)),
}


EPOCH_SCHEDULES = ("scaled", "absolute")


def scale_epoch(epoch: int, run_epochs: int, preset_epochs: int) -> int:
  """``epoch`` of a ``preset_epochs``-epoch schedule placed at the same
  fraction of a ``run_epochs``-epoch run (halves round up)."""
  return int(math.floor(epoch * run_epochs / preset_epochs + 0.5))


def preset(dataset: Optional[str] = None, *, epoch_schedule: str = "scaled",
           shape_epochs: Optional[int] = None, **overrides) -> TrainConfig:
  """The preset for ``dataset`` with the non-None ``overrides`` applied
  (``lr`` and ``momentum`` override the optimizer's).

  Args:
    dataset: a key of ``PRESETS``, a user dataset name (``folder:PATH``,
      ``npz:PATH``) or None: those two take the ``"generic"`` preset.
    epoch_schedule: "scaled" (default): when the run is shorter than the
      preset, the learning-rate milestones are scaled to its length (kept
      >= 1 and below the run's end, without repeats); "absolute": the
      preset's milestones as they are.
    shape_epochs: the run length the milestones are scaled to, when it is
      not the run's own epochs (a model trained for part of a longer run,
      e.g. MetaPoison's staggered surrogates).
    **overrides: TrainConfig fields (and ``lr``, ``momentum``).
  """
  dataset = preset_key(dataset)
  if epoch_schedule not in EPOCH_SCHEDULES:
    raise ConfigError(f"epoch_schedule must be one of {EPOCH_SCHEDULES}, "
                      f"got {epoch_schedule!r}")
  cfg = PRESETS[dataset]
  optim = {k: overrides.pop(k) for k in ("lr", "momentum")
           if overrides.get(k) is not None}
  overrides.pop("lr", None)
  overrides.pop("momentum", None)
  if optim:
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim,
                                                             **optim))
  overrides = {k: v for k, v in overrides.items() if v is not None}
  cfg = dataclasses.replace(cfg, **overrides)
  run = cfg.epochs if shape_epochs is None else shape_epochs
  full = PRESETS[dataset].epochs
  if epoch_schedule == "scaled" and run < full and cfg.optim.lr_milestones:
    milestones = sorted({max(1, scale_epoch(m, run, full))
                         for m in cfg.optim.lr_milestones})
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(
        cfg.optim, lr_milestones=tuple(m for m in milestones if m < run)))
  return cfg.validate()


def preset_key(dataset: Optional[str]) -> str:
  """The ``PRESETS`` key of ``dataset`` (``"generic"`` for the user's own
  data and None)."""
  if dataset in PRESETS:
    return dataset
  try:
    key = metadata.defaults_key(dataset)
  except DataError as e:
    raise ConfigError(f"no training preset for {dataset!r}: {e}") from None
  if key not in PRESETS:
    raise ConfigError(f"no training preset for {dataset!r}")
  return key


def default_model(dataset: Optional[str], image_shape=None) -> str:
  """The model a dataset trains by default: the paper's for MNIST and
  CIFAR-10; for the user's own data (``image_shape`` (H, W, C) given) the
  MNIST ConvNet when the images are at least 16x16, else the small
  ConvNet when they are at least 4x4, else the MLP."""
  key = preset_key(dataset)
  if key in DEFAULT_MODEL:
    return DEFAULT_MODEL[key]
  if image_shape is None:
    raise ConfigError(f"the default model of {dataset} depends on its image "
                      f"size; pass image_shape or name a model")
  h, w = image_shape[:2]
  if min(h, w) >= CONVNET_MIN_SIZE:
    return "convnet"
  return "convnet_small" if min(h, w) >= CONVNET_SMALL_MIN_SIZE else "mlp"
