"""HINT as a registered defence: its spec, how the spec becomes a run's
`HintConfig`, its `JobDefence`, and its command-line options."""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from hint_jax import hint as hint_lib
from hint_jax.errors import ConfigError
from hint_jax.pipeline.defences.base import (AlgorithmDefence, DefenceKind,
                                             epoch_hook_on_top_layer,
                                             register)
from hint_jax.pipeline.options import (Option, epoch_list, number,
                                       whole_number)
from hint_jax.train.presets import PRESETS, preset_key, scale_epoch

NOISE_FILE = "hint_noise.npz"


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


def hint_poison_record(selected, x_orig, x_noised, poison_mask) -> dict:
  """How HINT treated the poisons of a poisoned training set: how many of
  them it selected, and the mean absolute change it made to the selected
  poisons' and the other selected images, in grey levels (the noised
  images as stored, uint8). ``selected``: row indices into ``x_orig`` /
  ``x_noised`` (the images as received / as now noised);
  ``poison_mask``: which rows are poisons. ``selected`` None (no update
  yet) counts as none selected."""
  selected = np.asarray([] if selected is None else selected, np.int64)
  poison_mask = np.asarray(poison_mask, bool)
  hit = poison_mask[selected]
  # Rows first, then the widening: the whole training set is never copied.
  change = np.abs(np.asarray(x_noised[selected], np.int16)
                  - np.asarray(x_orig[selected], np.int16))
  per_image = change.reshape(len(selected), -1).mean(axis=1) if len(
      selected) else np.zeros(0)
  mean = lambda v: float(v.mean()) if v.size else None
  return {"count": int(poison_mask.sum()), "selected": int(hit.sum()),
          "num_selected": len(selected),
          "levels_changed_mean_poisons": mean(per_image[hit]),
          "levels_changed_mean_others": mean(per_image[~hit])}



class HintDefence(AlgorithmDefence):
  name = "hint"

  def __init__(self, config, model, x_train, y_train, x_val, y_val, *,
               epochs, x_clean=None, mesh=None, on_stage=None):
    super().__init__(config)
    self.hint = hint_lib.Hint(
        model, config, x_train, y_train, x_val, y_val, epochs=epochs,
        on_progress=None if on_stage is None else
        (lambda s, d, t: on_stage(f"HINT {s}", d, t)),
        x_clean=x_clean, mesh=mesh)
    self.algorithm = self.hint

  def images(self, state, x_train):
    return self.hint.images(state)

  def starting(self, epoch):
    if epoch not in self.config.schedule:
      return None
    return f"HINT: noise update before epoch {epoch + 1}"

  def note(self, state, epoch):
    if epoch not in self.config.schedule or not state["hint"]:
      return None
    u = self.hint.updates(state)[-1]
    return (f"HINT: {u.num_selected} examples; selection "
            f"{u.selection_seconds:.1f} s, s_test {u.s_test_seconds:.1f} s, "
            f"I_pert {u.pert_seconds:.1f} s, write {u.write_seconds:.2f} s; "
            f"mean |delta| {255 * u.delta_abs_mean:.2f}/255, "
            f"{100 * u.at_bound_fraction:.1f}% at the bound")

  def record(self, state, poison_mask=None, transfer=False):
    summary = self.hint.summary(state)
    entry = {"config": self.settings(), **summary}
    if not transfer:
      entry["noise_file"] = NOISE_FILE
    if poison_mask is not None:
      entry["poisons"] = hint_poison_record(
          state["hint_selected"], self.hint.x_orig, self.hint.images(state),
          poison_mask)
    out = {"hint": entry}
    if not transfer:
      out["num_selected"] = summary["num_selected"]
      for phase in ("selection", "s_test", "pert", "write"):
        out[f"hint_{phase}_seconds"] = summary[f"{phase}_seconds"]
    return out

  def write_files(self, state, out, train_idx):
    self.hint.save_noise(state, out / NOISE_FILE, train_idx)

  def transfer_hook(self, hook, train_state, seed):
    return epoch_hook_on_top_layer(hook, train_state)


def _build(config, model, splits, *, epochs, x_clean=None, mesh=None,
           on_stage=None):
  return HintDefence(config, model, splits.x_train, splits.y_train,
                     splits.x_val, splits.y_val, epochs=epochs,
                     x_clean=x_clean, mesh=mesh, on_stage=on_stage)


def _notes(spec, dataset, epochs, epoch_schedule):
  note = hint_schedule(spec, dataset, epochs, epoch_schedule)[1]
  return [note] if note else []


_D = HintSpec()

OPTIONS = (
    Option("--ratio", "ratio", number, help="fraction r of training "
           "examples given noise (default 0.5; 1 noises all and skips "
           "scoring)"),
    Option("--gamma", "gamma", number, help="noise step size (default 0.1)"),
    Option("--beta", "beta", number, help="L-inf bound of the noise in "
           "[0,1] pixel units (default 16/255)"),
    Option("--schedule", "schedule", epoch_list, help="0-based epochs "
           "before which the noise is updated, e.g. 5,15,40 (default: mnist "
           "9, cifar10 5,15,40, digits 5,15, scaled to a shorter run, or "
           "trimmed to it under --epoch-schedule absolute)"),
    Option("--gamma-decay-epoch", "gamma_decay_epoch", whole_number(0),
           help="use gamma/10 from this epoch on (default: the authors' "
           "40, scaled with the schedule under --epoch-schedule scaled)"),
    Option("--no-gamma-decay", "gamma_decay", default=True, switch=False,
           help="keep gamma for every update"),
    Option("--sign-step", "sign", default=_D.sign, switch=True,
           help="step along sign(I_pert)"),
    Option("--rounding", "rounding", str, _D.rounding,
           choices=hint_lib.config.ROUNDINGS,
           help="how noised images are stored as uint8 (authors: "
           "truncate)"),
    Option("--hessian-from", "hessian_from", str, _D.hessian_from,
           choices=hint_lib.config.HESSIAN_FROM,
           help="images the Hessian of later updates is taken over "
           "(authors: the selected set)"),
    Option("--grad-space", "grad_space", str, _D.grad_space,
           choices=hint_lib.config.GRAD_SPACES,
           help="for models that normalise inputs: gradient w.r.t. the "
           "normalised input (authors) or the pixels"),
    Option("--solver", "solver", str, _D.solver,
           choices=hint_lib.config.SOLVERS,
           help="s_test solver (cg: the fixed point of the authors' LiSSA; "
           "lissa: theirs)"),
    Option("--damping", "damping", number, _D.damping,
           help="lambda of (H + lambda I) (authors' LiSSA: 0.5)"),
    Option("--hint-seed", "seed", whole_number(0), _D.seed,
           help="seed of HINT's own randomness (LiSSA batches, the "
           "controls' draws)"),
    Option("--hint-direction", "direction", str, _D.direction,
           choices=hint_lib.config.DIRECTIONS,
           help="control: random_sign keeps each update's per-pixel "
           "magnitude |gamma I_pert| and draws its sign at random"),
    Option("--hint-selection", "selection", str, _D.selection,
           choices=hint_lib.config.SELECTIONS,
           help="control: random noises a random subset of the same size "
           "instead of the top |I_up|"),
)

KIND = register(DefenceKind(
    name="hint", label="HINT", spec_type=HintSpec,
    config_type=hint_lib.HintConfig,
    resolve=resolve_hint, build=_build, options=OPTIONS,
    help="HINT (--defence hint; defaults are the authors' settings)",
    whole_training_set=True, notes=_notes, trial_seed_flag="--hint-seed"))
