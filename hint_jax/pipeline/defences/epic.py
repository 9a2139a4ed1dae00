"""EPIC as a registered defence: its spec (the paper's K and T per
dataset by default), its `JobDefence` and its command-line options."""

import dataclasses
from typing import Optional

from hint_jax import defences
from hint_jax.errors import ConfigError
from hint_jax.pipeline.defences.base import (AlgorithmDefence, DefenceKind,
                                             epoch_hook_on_top_layer,
                                             register)
from hint_jax.pipeline.options import Option, number, whole_number


@dataclasses.dataclass(frozen=True)
class EpicSpec:
  """EPIC's settings; ``warmup`` (K) and ``period`` (T) default to the
  paper's for the dataset."""
  warmup: Optional[int] = None
  period: Optional[int] = None
  budget: float = 0.1
  scale: float = 10.0


def resolve_epic(spec: EpicSpec, dataset: str,
                 epochs: int) -> defences.EpicConfig:
  """The checked `EpicConfig` of ``spec`` for an ``epochs``-epoch run."""
  base = defences.PAPER_EPIC.get(dataset, defences.EpicConfig())
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



class EpicDefence(AlgorithmDefence):
  name = "epic"

  def __init__(self, config, model, y_train):
    super().__init__(config)
    self.epic = self.algorithm = defences.Epic(model, config, y_train)

  def active_indices(self, state):
    return self.epic.active_indices(state)

  def note(self, state, epoch):
    if not self.config.selects_before(epoch) or not state["epic"]:
      return None
    r = state["epic"][-1]
    return (f"EPIC before epoch {epoch + 1}: {r['medoids']} medoids, "
            f"dropped {r['dropped']}, {r['active']} of {len(self.epic.y)} "
            f"left ({r['seconds']:.1f} s)")

  def record(self, state, poison_mask=None, transfer=False):
    out = {"epic": {"config": self.settings(), **self.epic.summary(state)}}
    if not transfer:
      out["num_train_kept"] = int(state["epic_active"].sum())
      out["epic_seconds"] = out["epic"]["epic_seconds"]
    return out

  def transfer_hook(self, hook, train_state, seed):
    return epoch_hook_on_top_layer(hook, train_state)


_D = EpicSpec()

OPTIONS = (
    Option("--epic-warmup", "warmup", whole_number(0),
           help="epochs before the first selection (K)"),
    Option("--epic-period", "period", whole_number(1),
           help="epochs between selections (T)"),
    Option("--epic-budget", "budget", number, _D.budget,
           help="medoids per class, fraction of the class (0.1)"),
    Option("--epic-scale", "scale", number, _D.scale,
           help="similarity exp(-||g_i - g_j|| / scale) (10)"),
)

KIND = register(DefenceKind(
    name="epic", label="EPIC", spec_type=EpicSpec,
    config_type=defences.EpicConfig,
    resolve=lambda spec, dataset, epochs, _schedule: resolve_epic(
        spec, dataset, epochs),
    build=lambda config, model, splits, **_: EpicDefence(
        config, model, splits.y_train),
    options=OPTIONS,
    help="EPIC (--defence epic; defaults per dataset are the paper's: "
    "MNIST K = 5, T = 2; CIFAR-10 K = 10, T = 4)",
    whole_training_set=True))
