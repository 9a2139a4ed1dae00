"""The registries of poisoning attacks: untargeted (`AttackKind`, mixed in
one poisoned set by `hint_jax.pipeline.run_poison`) and targeted
(`TargetedKind`, one target image, `run_target_poison`).

An attack is known to the jobs and the command line only through the kind
it registers: its name, its settings (a frozen dataclass and its
command-line options), how those settings are checked against a dataset,
and how it crafts. Nothing outside an attack's own module asks which
attack it is.
"""

import dataclasses
import json
import pathlib
from typing import Any, Callable, Dict, Optional, Tuple

from hint_jax.errors import ConfigError
from hint_jax.pipeline.options import Option, spec_from_values


def plain(config) -> dict:
  """A dataclass as JSON-ready data (tuples as lists; {} for None)."""
  if config is None:
    return {}
  return json.loads(json.dumps(dataclasses.asdict(config)))


@dataclasses.dataclass(frozen=True)
class AttackContext:
  """What an untargeted attack's settings are checked against.

  Attributes:
    dataset: the dataset's name (``"mnist"``, ``"npz:PATH"``, ...).
    preset: its preset key (`hint_jax.train.presets.preset_key`:
      ``"generic"`` for the user's own data).
    eps: the job's L-infinity budget, [0, 1] pixel units.
    data_dir: the data folder (None: the default).
  """
  dataset: str
  preset: str
  eps: float
  data_dir: Optional[str] = None


@dataclasses.dataclass
class Crafting:
  """What one attack of an untargeted job crafts with.

  Attributes:
    name: the attack's registered name.
    config: its resolved settings (what `AttackKind.resolve` returned).
    eps: the budget.
    key: the attack's own random key (the same for all its chunks;
      ``jax.random.fold_in(key, chunk)`` gives a chunk its own).
    num_classes: classes of the dataset.
    x_train, y_train: the whole clean training split (uint8 images).
    work: the job's work folder: files named after the attack that make
      an interrupted job resume (e.g. a trained generator).
    logits_fn: the clean victim's ``x -> logits`` when the kind
      ``uses_victim``, else None.
    on_stage: ``(stage, done, total)``, progress of a long pass.
    note: ``(line)``, one line worth saying.
    state: what `AttackKind.prepare` returned (None without one).
  """
  name: str
  config: Any
  eps: float
  key: Any
  num_classes: int
  x_train: Any
  y_train: Any
  work: pathlib.Path
  logits_fn: Optional[Callable] = None
  on_stage: Callable[[str, int, int], None] = lambda *a: None
  note: Callable[[str], None] = lambda line: None
  state: Any = None


@dataclasses.dataclass(frozen=True)
class AttackKind:
  """A registered untargeted attack.

  Attributes:
    name: its name in ``--attacks`` and in the poisoned file.
    label: how a sentence names it ("PGD").
    spec_type: the frozen dataclass of its settings (``None`` fields take
      a dataset's default in ``resolve``).
    resolve: ``(spec, AttackContext) -> config``: the checked settings of
      one job (raises ``ConfigError``); equal configs craft equal images.
    craft: ``(Crafting, x, y, chunk, report) -> images``: the poisoned
      uint8 images of one chunk of rows (``report(done, total)`` hears
      progress within it).
    record: ``config -> dict``: what the poisoned file records of the
      settings beside name, eps and count (default: the config's fields).
    prepare: ``(Crafting, rows, meta) -> state``, run once before the
      first chunk (``rows``: the training rows it will poison, maybe
      none; ``meta``: the file's entry, to add to); None: nothing.
    uses_victim: it needs the clean victim's logits.
    reductions: ``config -> [str]``: how the settings fall short of the
      attack's specification (said in the file and the reports).
    options: its command-line options (fields of ``spec_type``).
    help: the heading of its options in ``--help``.
  """
  name: str
  label: str
  spec_type: type
  resolve: Callable[[Any, AttackContext], Any]
  craft: Callable[..., Any]
  record: Callable[[Any], dict] = plain
  prepare: Optional[Callable[..., Any]] = None
  uses_victim: bool = False
  reductions: Optional[Callable[[Any], list]] = None
  options: Tuple[Option, ...] = ()
  help: str = ""

  def spec(self, values: Dict[str, Any]):
    """The spec of parsed option values (keyed by `Option.dest`)."""
    return spec_from_values(self.spec_type, self.options, values)


@dataclasses.dataclass
class TargetCrafting:
  """What a targeted attack crafts with.

  Attributes:
    data: the job's `DataSpec`.
    spec: the job's `TargetSpec`.
    splits: the clean splits (the whole training split).
    work: the job's work folder (files that make it resume).
    model, state: the crafting model: the victim trained on the clean
      training split (from scratch) or the pre-trained extractor
      (transfer).
    bases: ``(x, y)``, the clean images the poisons start from.
    target: ``(image, intended class)``.
    key: the job's random key.
    meta: the file's entry of the attack (name, eps, count, steps are
      set): add the settings used.
    reporter: the job's `Reporter`.
  """
  data: Any
  spec: Any
  splits: Any
  work: pathlib.Path
  model: Any
  state: Any
  bases: Tuple[Any, Any]
  target: Tuple[Any, int]
  key: Any
  meta: dict
  reporter: Any

  def stage(self, name):
    """A ``(done, total)`` progress callback under stage ``name``."""
    return lambda d, t: self.reporter.stage(name, d, t)


@dataclasses.dataclass(frozen=True)
class TargetedKind:
  """A registered targeted attack.

  Attributes:
    name: its name in ``--attack`` and in the poisoned file.
    label: how a sentence names it ("gradient matching").
    scenario: ``"scratch"`` (the victim trains on the poisoned set from
      scratch) or ``"transfer"`` (only a top layer over a frozen,
      pre-trained extractor trains on it).
    eps: its default budget.
    steps: its default number of optimisation steps.
    craft: ``TargetCrafting -> (poisons, objective per step)``.
  """
  name: str
  label: str
  scenario: str
  eps: float
  steps: int
  craft: Callable[[TargetCrafting], Any]


SCENARIOS = ("scratch", "transfer")
_UNTARGETED: Dict[str, AttackKind] = {}
_TARGETED: Dict[str, TargetedKind] = {}


def _register(table, kind, what, replace):
  if not replace:
    if kind.name in _UNTARGETED or kind.name in _TARGETED:
      raise ConfigError(f"an attack named {kind.name!r} is registered "
                        "already (replace=True overrides it)")
    if what == "untargeted" and any(
        k.spec_type is kind.spec_type for k in _UNTARGETED.values()):
      raise ConfigError(f"spec type {kind.spec_type.__name__} belongs to "
                        "another registered attack")
  table[kind.name] = kind
  return kind


def register_attack(kind: AttackKind, *, replace: bool = False):
  """Adds an untargeted attack every poisoning job and ``hint-jax poison``
  know; returns it. A name (of either kind) or spec type registered
  already is refused unless ``replace``."""
  return _register(_UNTARGETED, kind, "untargeted", replace)


def register_targeted(kind: TargetedKind, *, replace: bool = False):
  """Adds a targeted attack every targeted job and ``hint-jax
  target-poison`` know; returns it."""
  if kind.scenario not in SCENARIOS:
    raise ConfigError(f"scenario must be one of {SCENARIOS}, got "
                      f"{kind.scenario!r}")
  return _register(_TARGETED, kind, "targeted", replace)


def attack_names() -> Tuple[str, ...]:
  """The registered untargeted attacks' names, in registration order."""
  return tuple(_UNTARGETED)


def targeted_names() -> Tuple[str, ...]:
  """The registered targeted attacks' names, in registration order."""
  return tuple(_TARGETED)


def get_attack(name: str) -> AttackKind:
  if name not in _UNTARGETED:
    hint = (" (a targeted attack: hint-jax target-poison)"
            if name in _TARGETED else "")
    raise ConfigError(f"unknown attack {name!r}{hint}; choose from "
                      f"{', '.join(_UNTARGETED)}")
  return _UNTARGETED[name]


def get_targeted(name: str) -> TargetedKind:
  if name not in _TARGETED:
    hint = (" (an untargeted attack: hint-jax poison)"
            if name in _UNTARGETED else "")
    raise ConfigError(f"attack must be one of {', '.join(_TARGETED)}, got "
                      f"{name!r}{hint}")
  return _TARGETED[name]


def attack_of(item) -> Tuple[AttackKind, Any]:
  """``(kind, spec)`` of one entry of `PoisonSpec.attacks`: a registered
  name (its default spec) or a registered attack's spec."""
  if isinstance(item, str):
    kind = get_attack(item)
    return kind, kind.spec_type()
  for kind in _UNTARGETED.values():
    if type(item) is kind.spec_type:
      return kind, item
  known = ", ".join(k.spec_type.__name__ for k in _UNTARGETED.values())
  raise ConfigError(f"an attack must be a registered name or spec "
                    f"({known}), got {type(item).__name__}")
