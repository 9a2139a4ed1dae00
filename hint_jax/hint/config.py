"""HINT's hyper-parameters, with the defaults of the authors' code."""

import dataclasses
import math
from typing import Optional, Tuple

from hint_jax.data import metadata
from hint_jax.errors import ConfigError, DataError

SOLVERS = ("cg", "lissa", "direct")
ROUNDINGS = ("truncate", "round")
HESSIAN_FROM = ("selected", "all")
GRAD_SPACES = ("normalized", "pixel")
# Controls that keep one part of HINT and replace the other: by chance
# (random_sign, random selection) or by a structured direction that carries
# no validation information (negative, random_stest, train_loss).
DIRECTIONS = ("influence", "random_sign", "negative", "random_stest",
              "train_loss")
SELECTIONS = ("influence", "random")

# The schedule (0-based epochs before which the noise is updated) the
# authors' code runs: MNIST {9} with 10 epochs (the paper's text: {5, 15}
# with 30), CIFAR-10 {5, 15, 40} with 80. The digits set is ours: 30 epochs
# like the paper's MNIST text, so its schedule.
DEFAULT_SCHEDULES = {"mnist": (9,), "cifar10": (5, 15, 40),
                     "digits": (5, 15),
                     # The user's own data (generic 10-epoch preset): one
                     # update before the last epoch, as MNIST's.
                     "generic": (9,)}


@dataclasses.dataclass(frozen=True)
class HintConfig:
  """How HINT selects examples and crafts their healthy noise.

  Attributes:
    ratio: r, the fraction of training examples that receive noise; the top
      ceil(r * n) by |I_up| are selected once, at the first scheduled
      epoch. r = 1 selects everything and skips the scoring pass.
    gamma: step size of the noise update, delta += gamma * I_pert.
    beta: L-inf bound of the accumulated noise delta, in [0, 1] pixel units
      (16/255 by default; the paper's text says 0.062).
    schedule: sorted 0-based epochs before which the noise is updated.
    gamma_decay_epoch: from this epoch on the step is gamma *
      gamma_decay_factor (the authors hard-code gamma/10 from epoch 40);
      None disables it.
    gamma_decay_factor: see gamma_decay_epoch.
    sign: step along sign(I_pert) instead of I_pert (an option; the
      authors step along I_pert itself).
    rounding: how noised images are stored as uint8: "truncate" (floor,
      as the authors' ``.byte()``) or "round" (to nearest).
    hessian_from: which images the Hessian of later updates is taken over:
      "selected" (the noised selected set, as the authors' code) or "all"
      (the whole current training set). The first update always uses the
      whole received training set.
    grad_space: for models that normalise their input inside (the CIFAR
      ResNets): "normalized" takes I_pert w.r.t. the normalised input and
      adds it in [0, 1] pixel space (the authors' code); "pixel" uses the
      chain rule, the gradient w.r.t. the [0, 1] pixels. The same for
      models without normalisation.
    solver: inverse-HVP method for s_test: "cg" (deterministic; the fixed
      point of the authors' LiSSA), "lissa" (the authors' method and
      settings) or "direct" (dense Cholesky; small top layers only).
    damping: lambda of (H + lambda I) s = grad L_val; 0.5 is the authors'
      LiSSA fixed point (damp 0.01 x scale 50).
    cg_tol: relative residual at which CG stops.
    lissa_depth, lissa_batch_size, lissa_scale: LiSSA settings (authors:
      980 steps of 50 examples, scale 50).
    chunk_size: examples per batch through the network in the feature and
      I_pert passes (250 was fastest for the MNIST ConvNet on a 2-core CPU).
    seed: seed of HINT's own randomness (LiSSA's batches, the controls'
      draws); independent of the training seed, so HINT never changes the
      training data order.
    direction: "influence" (HINT) or a control. Every control keeps each
      update's per-pixel step magnitude |gamma * I_pert| (gamma with
      ``sign``) and HINT's selection, and takes each pixel's sign from
      elsewhere:
      "random_sign": a fair random sign, drawn anew at each update from
      ``seed``. Does the influence direction matter?
      "negative": the opposite of HINT's (the step along -I_pert).
      "random_stest": the sign of I_pert computed with s_test replaced by
      a Gaussian vector of the same L2 norm (drawn anew at each update from
      ``seed``): the structure of an influence direction without the
      validation set's information.
      "train_loss": the sign of the input gradient of the image's own
      training loss, so the stored image moves against it
      (error-minimising noise): a loss-lowering structured direction.
    selection: "influence" (HINT: the top ceil(r n) by |I_up|) or
      "random", a control: a uniformly random subset of the same size,
      drawn once from ``seed``, then HINT's own noise. Does the selection
      matter?
  """
  ratio: float = 0.5
  gamma: float = 0.1
  beta: float = 16.0 / 255.0
  schedule: Tuple[int, ...] = DEFAULT_SCHEDULES["cifar10"]
  gamma_decay_epoch: Optional[int] = 40
  gamma_decay_factor: float = 0.1
  sign: bool = False
  rounding: str = "truncate"
  hessian_from: str = "selected"
  grad_space: str = "normalized"
  solver: str = "cg"
  damping: float = 0.5
  cg_tol: float = 1e-6
  lissa_depth: int = 980
  lissa_batch_size: int = 50
  lissa_scale: float = 50.0
  chunk_size: int = 250
  seed: int = 0
  direction: str = "influence"
  selection: str = "influence"

  def validate(self, epochs: Optional[int] = None) -> "HintConfig":
    """Raises ConfigError for impossible settings; returns self.

    Args:
      epochs: the number of training epochs, if known: every scheduled
        epoch must be one of them.
    """
    def finite(v):
      return isinstance(v, (int, float)) and math.isfinite(v)

    if not (finite(self.ratio) and 0.0 < self.ratio <= 1.0):
      raise ConfigError(f"HINT ratio must be in (0, 1], got {self.ratio}")
    if not (finite(self.gamma) and self.gamma >= 0.0):
      raise ConfigError(f"HINT gamma must be >= 0, got {self.gamma}")
    if not (finite(self.beta) and 0.0 < self.beta <= 1.0):
      raise ConfigError(f"HINT beta must be in (0, 1] (pixel units; 16/255 "
                        f"is {16 / 255:.4f}; 0 would allow no noise), got "
                        f"{self.beta}")
    sched = tuple(self.schedule)
    if any(not isinstance(e, int) or isinstance(e, bool) or e < 0
           for e in sched):
      raise ConfigError(f"HINT schedule must hold epochs >= 0 (0-based), got "
                        f"{list(sched)}")
    if list(sched) != sorted(set(sched)):
      raise ConfigError(f"HINT schedule must be increasing without repeats, "
                        f"got {list(sched)}")
    if epochs is not None and sched and sched[-1] >= epochs:
      raise ConfigError(f"HINT schedule epoch {sched[-1]} is not one of the "
                        f"{epochs} training epochs (0-based, so at most "
                        f"{epochs - 1}); give a schedule that fits (--schedule)")
    if self.gamma_decay_epoch is not None and self.gamma_decay_epoch < 0:
      raise ConfigError("gamma_decay_epoch must be >= 0 or None")
    if not (finite(self.gamma_decay_factor) and self.gamma_decay_factor >= 0):
      raise ConfigError("gamma_decay_factor must be >= 0")
    for name, value, choices in (("rounding", self.rounding, ROUNDINGS),
                                 ("hessian_from", self.hessian_from,
                                  HESSIAN_FROM),
                                 ("grad_space", self.grad_space, GRAD_SPACES),
                                 ("direction", self.direction, DIRECTIONS),
                                 ("selection", self.selection, SELECTIONS),
                                 ("solver", self.solver, SOLVERS)):
      if value not in choices:
        raise ConfigError(f"HINT {name} must be one of {choices}, got "
                          f"{value!r}")
    if not (finite(self.damping) and self.damping >= 0):
      raise ConfigError(f"damping must be >= 0, got {self.damping}")
    if self.solver == "lissa" and not self.damping > 0:
      raise ConfigError("LiSSA needs damping > 0")
    if self.chunk_size < 1 or self.lissa_depth < 1 or self.lissa_batch_size < 1:
      raise ConfigError("chunk_size, lissa_depth and lissa_batch_size must "
                        "be >= 1")
    if not (finite(self.lissa_scale) and self.lissa_scale >= self.damping):
      raise ConfigError(f"lissa_scale must be >= damping, got "
                        f"{self.lissa_scale}")
    return self

  def step_size(self, epoch: int) -> float:
    """gamma, or gamma * gamma_decay_factor from gamma_decay_epoch on."""
    if self.gamma_decay_epoch is not None and epoch >= self.gamma_decay_epoch:
      return self.gamma * self.gamma_decay_factor
    return self.gamma


def num_selected(n: int, ratio: float) -> int:
  """ceil(ratio * n), robust to float products such as 0.1 * 30 =
  3.0000000000000004 (which is 3 examples, not 4)."""
  return min(n, math.ceil(round(ratio * n, 9)))


def scaled_schedule(schedule, run_epochs: int, preset_epochs: int):
  """HINT's schedule of a ``preset_epochs``-epoch run placed at the same
  fractions of a ``run_epochs``-epoch run (``floor(e * E / P + 1/2)``,
  at most the last epoch, without repeats); unchanged when the run is not
  shorter."""
  if run_epochs >= preset_epochs:
    return tuple(schedule)
  return tuple(sorted({min(run_epochs - 1, int(math.floor(
      e * run_epochs / preset_epochs + 0.5))) for e in schedule}))


def paper_config(dataset: Optional[str] = None, **overrides) -> HintConfig:
  """The authors' settings for a dataset, with ``overrides`` applied.
  ``dataset`` None, or a user dataset (``folder:PATH``, ``npz:PATH``):
  the ``"generic"`` schedule (one update before epoch 10 of 10)."""
  key = dataset
  if dataset not in DEFAULT_SCHEDULES:
    try:
      key = metadata.defaults_key(dataset)
    except DataError:
      raise ConfigError(f"no HINT defaults for dataset {dataset!r}; choose "
                        f"one of {sorted(DEFAULT_SCHEDULES)}, a user dataset "
                        "(folder:PATH, npz:PATH) or None") from None
  fields = {"schedule": DEFAULT_SCHEDULES[key]}
  fields.update({k: v for k, v in overrides.items() if v is not None})
  return HintConfig(**fields)
