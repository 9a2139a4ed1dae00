"""Typed, frozen descriptions of whole jobs: which data, how to train, which
defence. A spec's ``None`` field means "the dataset's preset" (or the
paper's default); `resolve_defence` turns a defence's spec into the
concrete configuration for a run of a given length, checking it."""

import dataclasses
from typing import Any, Optional

# The defence specs and their resolution live with each defence
# (`hint_jax.pipeline.defences`); re-exported here for existing imports.
from hint_jax.pipeline.defences import (EpicSpec, HintSpec, defence_name,
                                        hint_schedule, resolve_defence,
                                        resolve_epic, resolve_friends,
                                        resolve_hint)
from hint_jax.train.presets import preset


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


# A defence is None (no defence) or the spec of a registered defence
# (`hint_jax.pipeline.defences`: HintSpec, EpicSpec, FriendsConfig,
# AtdaConfig, or one of your own).
DefenceSpec = Any


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
