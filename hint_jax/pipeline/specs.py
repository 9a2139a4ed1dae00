"""Typed, frozen descriptions of whole jobs: which data, how to train, which
defence. A spec's ``None`` field means "the dataset's preset" (or the
paper's default); `resolve_*` turns a spec into the concrete configuration
for a run of a given length, checking it."""

import dataclasses
from typing import Optional, Tuple, Union

from hint_jax import defenses
from hint_jax import hint as hint_lib
from hint_jax.errors import ConfigError
from hint_jax.train.presets import PRESETS, preset, preset_key, scale_epoch


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Where the images come from and how they are split.

  Attributes:
    dataset: a name of `hint_jax.data.DATASET_NAMES`, or the user's own
      data as ``folder:PATH`` / ``npz:PATH`` (`hint_jax.data.custom`).
    data_dir: the data folder (None: ``$HINT_JAX_DATA_DIR``, else the
      cache folder).
    source: auto, idx (mnist), pickle|jpeg (cifar10), npz, tfds.
    subset: train on at most this many training images (a seeded choice).
    num_val: validation images held out of the training set (None: the
      dataset's default).
    split_seed: seed of the train/validation split and of the subset.
    own_data: accept files whose checksums differ from the official ones.
  """
  dataset: str
  data_dir: Optional[str] = None
  source: str = "auto"
  subset: Optional[int] = None
  num_val: Optional[int] = None
  split_seed: int = 0
  own_data: bool = False


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """How the model is trained; ``None`` takes the dataset's preset.

  Attributes:
    model: a name of `hint_jax.models.MODEL_NAMES`.
    epochs, batch_size, lr, eval_every: overrides of the preset.
    momentum: the SGD momentum (None: the preset's; MNIST's is 0, the
      generic recipe's 0.9).
    seed: seed of initialisation, data order and augmentation.
    augment: None for the preset's augmentation, else on/off.
    epoch_schedule: "scaled" places the preset's learning-rate milestones
      (and HINT's default schedule) at the same fractions of a shorter run;
      "absolute" keeps the preset's epoch numbers.
  """
  model: Optional[str] = None
  epochs: Optional[int] = None
  batch_size: Optional[int] = None
  lr: Optional[float] = None
  seed: int = 0
  eval_every: Optional[int] = None
  augment: Optional[bool] = None
  epoch_schedule: str = "scaled"
  momentum: Optional[float] = None

  def config(self, dataset: str):
    """The `TrainConfig` of this spec on ``dataset``."""
    return preset(dataset, epochs=self.epochs, batch_size=self.batch_size,
                  lr=self.lr, momentum=self.momentum,
                  eval_every=self.eval_every,
                  augment=self.augment, epoch_schedule=self.epoch_schedule)


@dataclasses.dataclass(frozen=True)
class HintSpec:
  """HINT's settings; ``None`` takes the authors' default for the dataset
  (the other defaults are `HintConfig`'s).
  The default ``schedule`` and ``gamma_decay_epoch`` are scaled to a run
  shorter than the preset under the "scaled" epoch schedule, or trimmed to
  it under "absolute"; explicit values are used as given. The fields are
  those of `hint_jax.hint.HintConfig` (``gamma_decay`` False keeps gamma
  for every update)."""
  ratio: Optional[float] = None
  gamma: Optional[float] = None
  beta: Optional[float] = None
  schedule: Optional[Tuple[int, ...]] = None
  gamma_decay_epoch: Optional[int] = None
  gamma_decay: bool = True
  sign: bool = hint_lib.HintConfig.sign
  rounding: str = hint_lib.HintConfig.rounding
  hessian_from: str = hint_lib.HintConfig.hessian_from
  grad_space: str = hint_lib.HintConfig.grad_space
  solver: str = hint_lib.HintConfig.solver
  damping: float = hint_lib.HintConfig.damping
  seed: int = hint_lib.HintConfig.seed
  direction: str = hint_lib.HintConfig.direction
  selection: str = hint_lib.HintConfig.selection



@dataclasses.dataclass(frozen=True)
class EpicSpec:
  """EPIC's settings; ``warmup`` (K) and ``period`` (T) default to the
  paper's for the dataset."""
  warmup: Optional[int] = None
  period: Optional[int] = None
  budget: float = 0.1
  scale: float = 10.0



# A defence is one of these (None: no defence). FRIENDS and ATDA need no
# dataset-dependent defaults, so their configurations serve as specs.
DefenceSpec = Union[None, HintSpec, EpicSpec, defenses.FriendsConfig,
                    defenses.AtdaConfig]


def defence_name(spec: DefenceSpec) -> str:
  """"none", "hint", "epic", "friends" or "atda"."""
  if spec is None:
    return "none"
  names = {HintSpec: "hint", EpicSpec: "epic",
           defenses.FriendsConfig: "friends", defenses.AtdaConfig: "atda"}
  if type(spec) not in names:
    raise ConfigError(f"defence must be None, HintSpec, EpicSpec, "
                      f"FriendsConfig or AtdaConfig, got {type(spec).__name__}")
  return names[type(spec)]


def _scaled(dataset, epochs, epoch_schedule) -> bool:
  """Whether a run's default schedules are scaled to its length."""
  return (epoch_schedule == "scaled"
          and epochs < PRESETS[preset_key(dataset)].epochs)


def hint_schedule(spec: HintSpec, dataset: str, epochs: int,
                  epoch_schedule: str = "scaled"):
  """``(schedule, note)``: the spec's schedule, else the dataset's default
  scaled or trimmed to ``epochs``; ``note`` says how the default was
  altered (None when it was not).

  Raises:
    ConfigError: no epoch of the default schedule lies within a run whose
      default is trimmed.
  """
  if spec.schedule is not None:
    return tuple(spec.schedule), None
  default = hint_lib.DEFAULT_SCHEDULES.get(preset_key(dataset), ())
  if default and epochs < 1:
    raise ConfigError(f"HINT's default schedule {list(default)} has no "
                      f"epoch in a {epochs}-epoch run; train for at least "
                      "one epoch or set the schedule (--schedule)")
  scaled = _scaled(dataset, epochs, epoch_schedule)
  if scaled:
    schedule = hint_lib.config.scaled_schedule(
        default, epochs, PRESETS[preset_key(dataset)].epochs)
  else:
    schedule = tuple(e for e in default if e < epochs)
    if default and not schedule:
      raise ConfigError(f"no epoch of the default HINT schedule "
                        f"{list(default)} is within {epochs} epochs; set "
                        "the schedule (0-based epochs; --schedule)")
  if schedule == default:
    return schedule, None
  how = "scaled" if scaled else "trimmed"
  return schedule, (f"HINT: default schedule {list(default)} {how} to "
                    f"{list(schedule)} for {epochs} epochs")


def resolve_hint(spec: HintSpec, dataset: str, epochs: int,
                 epoch_schedule: str = "scaled") -> hint_lib.HintConfig:
  """The checked `HintConfig` of ``spec`` for an ``epochs``-epoch run."""
  schedule, _ = hint_schedule(spec, dataset, epochs, epoch_schedule)
  decay = spec.gamma_decay_epoch
  if decay is None:
    decay = hint_lib.HintConfig.gamma_decay_epoch
    if _scaled(dataset, epochs, epoch_schedule):
      decay = scale_epoch(decay, epochs, PRESETS[preset_key(dataset)].epochs)
  cfg = hint_lib.paper_config(
      dataset, ratio=spec.ratio, gamma=spec.gamma, beta=spec.beta,
      schedule=schedule, gamma_decay_epoch=decay, sign=spec.sign,
      rounding=spec.rounding, hessian_from=spec.hessian_from,
      grad_space=spec.grad_space, solver=spec.solver, damping=spec.damping,
      seed=spec.seed, direction=spec.direction, selection=spec.selection)
  if not spec.gamma_decay:  # (paper_config ignores None overrides)
    cfg = dataclasses.replace(cfg, gamma_decay_epoch=None)
  cfg.validate(epochs)
  return cfg


def resolve_epic(spec: EpicSpec, dataset: str,
                 epochs: int) -> defenses.EpicConfig:
  """The checked `EpicConfig` of ``spec`` for an ``epochs``-epoch run."""
  base = defenses.PAPER_EPIC.get(dataset, defenses.EpicConfig())
  cfg = dataclasses.replace(
      base, budget=spec.budget, scale=spec.scale,
      **{k: v for k, v in (("warmup", spec.warmup),
                           ("period", spec.period)) if v is not None})
  cfg.validate()
  if cfg.warmup >= epochs:
    raise ConfigError(f"EPIC warm-up of {cfg.warmup} epochs leaves no "
                      f"selection in a {epochs}-epoch run; lower the "
                      "warm-up")
  return cfg


def resolve_friends(cfg: defenses.FriendsConfig,
                    epochs: int) -> defenses.FriendsConfig:
  """``cfg`` checked for an ``epochs``-epoch run."""
  cfg = cfg.validate()
  if cfg.begin_epoch >= epochs:
    raise ConfigError(f"FRIENDS begin epoch {cfg.begin_epoch} is not "
                      f"before the end of a {epochs}-epoch run")
  return cfg


def resolve_defence(spec: DefenceSpec, dataset: str, epochs: int,
                    epoch_schedule: str = "scaled"):
  """The concrete, checked configuration of ``spec`` (None for none)."""
  name = defence_name(spec)
  if name == "hint":
    return resolve_hint(spec, dataset, epochs, epoch_schedule)
  if name == "epic":
    return resolve_epic(spec, dataset, epochs)
  if name == "friends":
    return resolve_friends(spec, epochs)
  if name == "atda":
    return spec.validate()
  return None


@dataclasses.dataclass(frozen=True)
class TrainJob:
  """One training run: data, training, an optional poisoned set and an
  optional defence.

  Attributes:
    poison: a poisoned set written by a poisoning job (made from the same
      split); a transfer-scenario file runs the transfer scenario.
    victim_dir: transfer files only: the folder of the shared clean-model
      cache (the pre-trained extractor is reused from it, or trained there).
    overwrite: discard a checkpoint of a run with other settings.
  """
  data: DataSpec
  train: TrainSpec = TrainSpec()
  defence: DefenceSpec = None
  poison: Optional[str] = None
  victim_dir: Optional[str] = None
  overwrite: bool = False
