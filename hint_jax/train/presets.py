"""Per-dataset defaults: the paper's settings (SPEC §1) and a small one for
the embedded digits."""

import dataclasses

from hint_jax.errors import ConfigError
from hint_jax.models import DEFAULT_MODEL
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
}


def preset(dataset: str, **overrides) -> TrainConfig:
  """The preset for ``dataset`` with the non-None ``overrides`` applied
  (``lr`` overrides the optimizer's learning rate)."""
  if dataset not in PRESETS:
    raise ConfigError(f"no training preset for {dataset!r}")
  cfg = PRESETS[dataset]
  lr = overrides.pop("lr", None)
  if lr is not None:
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr))
  overrides = {k: v for k, v in overrides.items() if v is not None}
  return dataclasses.replace(cfg, **overrides).validate()


def default_model(dataset: str) -> str:
  return DEFAULT_MODEL[dataset]
