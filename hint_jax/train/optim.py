"""The paper's optimizers and learning-rate schedules."""

import dataclasses
from typing import Tuple

import optax

from hint_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """SGD with optional (Nesterov) momentum, PyTorch-style weight decay and a
  piecewise-constant schedule: the rate is multiplied by ``lr_decay`` at each
  epoch in ``lr_milestones``."""
  lr: float = 0.01
  momentum: float = 0.0
  nesterov: bool = False
  weight_decay: float = 0.0
  lr_milestones: Tuple[int, ...] = ()
  lr_decay: float = 0.1

  def validate(self):
    if not self.lr > 0:
      raise ConfigError(f"learning rate must be > 0, got {self.lr}")
    if not 0 <= self.momentum < 1:
      raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
    if self.nesterov and self.momentum == 0:
      raise ConfigError("nesterov needs momentum > 0")
    if self.weight_decay < 0:
      raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}")
    return self


# The HINT paper: MNIST plain SGD 0.01; CIFAR SGD 0.1, Nesterov 0.9, wd 5e-4,
# x0.1 at epochs 30, 50, 70.
PAPER_OPTIM = {
    "mnist": OptimConfig(lr=0.01),
    "digits": OptimConfig(lr=0.05),
    "cifar10": OptimConfig(lr=0.1, momentum=0.9, nesterov=True,
                           weight_decay=5e-4, lr_milestones=(30, 50, 70)),
}


def learning_rate_schedule(cfg: OptimConfig, steps_per_epoch: int):
  if not cfg.lr_milestones:
    return optax.constant_schedule(cfg.lr)
  boundaries = {int(m) * steps_per_epoch: cfg.lr_decay
                for m in cfg.lr_milestones}
  return optax.piecewise_constant_schedule(cfg.lr, boundaries)


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int):
  """Builds the optax transformation.

  Weight decay is added to the gradient before momentum, as torch.optim.SGD
  does (and applied to every parameter, BatchNorm and biases included, as the
  authors' code does).
  """
  cfg.validate()
  sgd = optax.sgd(learning_rate_schedule(cfg, steps_per_epoch),
                  momentum=cfg.momentum or None, nesterov=cfg.nesterov)
  if cfg.weight_decay:
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), sgd)
  return sgd
