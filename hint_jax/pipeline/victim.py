"""The clean model a poisoning attack is crafted on (the victim), shared by
the untargeted and targeted jobs and by attacks that train further models
(MetaPoison's surrogates)."""

import dataclasses
from typing import Optional

from hint_jax.pipeline.specs import DataSpec
from hint_jax.pipeline.training import (Reporter, clean_model_folder,
                                        train_clean)
from hint_jax.train.presets import default_model


@dataclasses.dataclass(frozen=True)
class VictimSpec:
  """The clean model an attack is crafted on.

  Attributes:
    model: None for the dataset's default.
    epochs: clean training epochs (None: the dataset's preset).
    seed: seed of its initialisation and data order.
    augment: None for the preset's augmentation, else on/off.
    epoch_schedule: see `TrainSpec`.
    victim_dir: the shared clean-model cache (None: trained in the job's
      work folder and removed with it).
  """
  model: Optional[str] = None
  epochs: Optional[int] = None
  seed: int = 0
  augment: Optional[bool] = None
  epoch_schedule: str = "scaled"
  victim_dir: Optional[str] = None


def train_victim(data: DataSpec, splits, victim: VictimSpec, work,
                 reporter: Reporter, shape_epochs=None):
  """Trains (or reloads from the cache or ``work``) the clean victim on
  ``splits``: ``(model, state, meta)``, ``meta`` as the file records it."""
  model_name = victim.model or default_model(data.dataset,
                                                splits.x_train.shape[1:])
  schedule = {"epoch_schedule": victim.epoch_schedule,
              "shape_epochs": shape_epochs}
  folder, identity = work, {}
  if victim.victim_dir is not None:
    folder, identity = clean_model_folder(
        victim.victim_dir, data.dataset, data.split_seed, data.subset, splits,
        model_name, victim.epochs, victim.seed, victim.augment, **schedule)
  model, state, trainer, acc = train_clean(
      data.dataset, model_name, splits, victim.epochs, victim.seed, folder,
      reporter, "victim: training", augment=victim.augment, **schedule,
      **identity)
  reporter.note(f"victim: test accuracy {100 * acc:.2f}%")
  return model, state, {"model": model_name,
                        "epochs": trainer.config.epochs, "seed": victim.seed,
                        "augment": trainer.config.augment,
                        "epoch_schedule": victim.epoch_schedule,
                        "lr_milestones": list(
                            trainer.config.optim.lr_milestones),
                        "test_accuracy": acc}
