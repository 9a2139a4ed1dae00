"""The protocol every defence meets, and the registry of defences.

A `JobDefence` is built for one training set (`make_defence`). What it
keeps between epochs is a *state*, a dict of arrays and JSON-ready values
that it never holds itself: ``init()`` gives the first, ``before_epoch``
takes one and returns the next (the optax shape), and the job checkpoints
it with the train state (`hint_jax.pipeline.checkpoint.save`'s
``defence_state``; no defence writes or reads its own files for that).
The job asks, in this order: `train_config` (a defence may change the
training configuration), `adversary` (a per-step attack for the trainer),
`init` or, on resume, `check` of the checkpoint's state and `images` (the
images to train on under it), `starting` / `before_epoch` / `note` (the
hook of `hint_jax.train.fit`), `active_indices` (the examples still
trained on), `record` and `write_files` (the result); `transfer_hook` in
the transfer scenario. The base class is "no defence".

A defence is known to the jobs, the command line, the benchmarks and the
experiments through the `DefenceKind` given to `register`: its name, its
spec type, how a spec becomes the checked configuration of a run, how its
`JobDefence` is built, and its command-line options. Nothing outside a
defence's own module asks which defence it is.
"""

import dataclasses
import json
from typing import Any, Callable, Dict, Optional, Tuple

from hint_jax.errors import ConfigError
from hint_jax.pipeline.options import Option, spec_from_values


def plain(cfg) -> dict:
  """A configuration as JSON-ready data (tuples as lists)."""
  return json.loads(json.dumps(dataclasses.asdict(cfg)))


class JobDefence:
  """No defence; the base of the others. ``config`` is the resolved
  configuration (None here). Every method taking a ``state`` is a pure
  function of it: the object itself does not change during a run."""

  name = "none"   # the registered DefenceKind's name (make_defence checks)

  def __init__(self, config=None):
    self.config = config

  def settings(self) -> Optional[dict]:
    """The configuration as the checkpoint's identity keeps it."""
    return None if self.config is None else plain(self.config)

  def train_config(self, cfg):
    return cfg

  def adversary(self, model):
    return None

  def init(self) -> Dict[str, Any]:
    """The state before the first epoch: a dict whose values are arrays
    or JSON-ready data (its keys name them in the checkpoint)."""
    return {}

  def check(self, state: Dict[str, Any]) -> Dict[str, Any]:
    """A state read back from a checkpoint (absent keys mean None), typed
    and checked against this training set (raises ``DataError``)."""
    return state

  def before_epoch(self, state, epoch, train_state, x_train):
    """``fit``'s hook over the state: ``(state, x_train, seconds)``."""
    return state, x_train, 0.0

  def images(self, state, x_train):
    """The images to train on under ``state`` (after a resume)."""
    return x_train

  def starting(self, epoch) -> Optional[str]:
    """A line on what ``before_epoch(epoch)`` is about to do (None:
    nothing worth a line)."""
    return None

  def note(self, state, epoch) -> Optional[str]:
    """A line on what ``before_epoch(epoch)`` just did, given the state it
    returned (None: nothing)."""
    return None

  def active_indices(self, state):
    """The rows trained on under ``state`` (None: every row)."""
    return None

  def record(self, state, poison_mask=None, transfer=False) -> dict:
    """The defence's entries of result.json."""
    if self.config is None:
      return {}
    return {self.name: {"config": self.settings()}}

  def write_files(self, state, out, train_idx) -> None:
    """Writes the defence's own output files into ``out``."""

  def transfer_hook(self, hook, train_state, seed):
    """The ``before_epoch(epoch, params, x)`` hook of
    `hint_jax.train.transfer.train_top_layer` (None: none): the defence
    sees the frozen body's ``train_state`` with the current top layer,
    its state carried by ``hook`` (a `hint_jax.train.DefenceHook` of this
    defence); ``seed`` is the run's."""
    return None


class AlgorithmDefence(JobDefence):
  """A `JobDefence` whose state functions are those of its algorithm
  object ``algorithm`` (`hint_jax.hint.Hint`, `hint_jax.defences.Epic`,
  `hint_jax.defences.Friends`: ``init``, ``check``, ``before_epoch``)."""

  algorithm = None   # set by the subclass's constructor

  def init(self):
    return self.algorithm.init()

  def check(self, state):
    return self.algorithm.check(state)

  def before_epoch(self, state, epoch, train_state, x_train):
    return self.algorithm.before_epoch(state, epoch, train_state, x_train)


def epoch_hook_on_top_layer(hook, train_state):
  """A `JobDefence.transfer_hook` that runs ``hook`` (a
  `hint_jax.train.DefenceHook`) on the frozen body's ``train_state`` with
  the current top layer."""
  return lambda epoch, p, x: hook(epoch, train_state.replace(params=p), x)[0]


@dataclasses.dataclass(frozen=True)
class DefenceKind:
  """A registered defence.

  Attributes:
    name: its name on the command line and in records ("hint").
    label: how a sentence names it ("HINT").
    spec_type: the frozen dataclass that describes it in a `TrainJob`
      (None for "none").
    resolve: ``(spec, dataset, epochs, epoch_schedule) -> config``, the
      checked configuration of a run (raises ``ConfigError``).
    build: ``(config, model, splits, *, epochs, x_clean, mesh, on_stage)
      -> JobDefence`` for ``splits``' training set.
    options: its command-line options (fields of ``spec_type``).
    help: the heading of its options in ``--help``.
    whole_training_set: it needs every training row on one host.
    notes: ``(spec, dataset, epochs, epoch_schedule) -> [str]``, lines a
      run says about how the spec's defaults were adapted.
    config_type: the type ``resolve`` returns, by which `make_defence`
      finds the kind of a configuration (None: ``spec_type``).
    trial_seed_flag: the option of its own randomness that an experiment
      sets to the trial's seed, as it sets ``--seed`` (None: none).
  """
  name: str
  label: str
  spec_type: Optional[type]
  resolve: Callable[..., Any]
  build: Callable[..., JobDefence]
  options: Tuple[Option, ...] = ()
  help: str = ""
  whole_training_set: bool = False
  notes: Optional[Callable[..., list]] = None
  config_type: Optional[type] = None
  trial_seed_flag: Optional[str] = None

  def spec(self, values: Dict[str, Any]):
    """The spec of parsed option values (keyed by `Option.dest`)."""
    if self.spec_type is None:
      return None
    return spec_from_values(self.spec_type, self.options, values)


_KINDS: Dict[str, DefenceKind] = {}


def register(kind: DefenceKind, *, replace: bool = False) -> DefenceKind:
  """Adds ``kind`` to the defences every job and command knows; returns
  it. A name or spec type registered already is refused unless
  ``replace``."""
  old = _KINDS.get(kind.name)
  if not replace:
    if old is not None:
      raise ConfigError(f"a defence named {kind.name!r} is registered "
                        "already (replace=True overrides it)")
    if kind.spec_type is not None and any(
        k.spec_type is kind.spec_type for k in _KINDS.values()):
      raise ConfigError(f"spec type {kind.spec_type.__name__} belongs to "
                        "another registered defence")
  _KINDS[kind.name] = kind
  return kind


def names() -> Tuple[str, ...]:
  """The registered defences' names, "none" first."""
  return tuple(_KINDS)


def get(name: str) -> DefenceKind:
  """The registered defence called ``name``."""
  if name not in _KINDS:
    raise ConfigError(f"unknown defence {name!r}; choose one of "
                      f"{', '.join(_KINDS)}")
  return _KINDS[name]


def kind_of(spec) -> DefenceKind:
  """The registered defence a spec describes (None: "none")."""
  for kind in _KINDS.values():
    if kind.spec_type is None if spec is None else (
        type(spec) is kind.spec_type):
      return kind
  known = ", ".join(k.spec_type.__name__ for k in _KINDS.values()
                    if k.spec_type is not None)
  raise ConfigError(f"defence must be None or a registered defence's spec "
                    f"({known}), got {type(spec).__name__}")


def defence_name(spec) -> str:
  """The name of the defence ``spec`` describes ("none" for None)."""
  return kind_of(spec).name


def resolve_defence(spec, dataset: str, epochs: int,
                    epoch_schedule: str = "scaled"):
  """The concrete, checked configuration of ``spec`` (None for none)."""
  return kind_of(spec).resolve(spec, dataset, epochs, epoch_schedule)


def defence_notes(spec, dataset: str, epochs: int,
                  epoch_schedule: str = "scaled") -> list:
  """What a run of ``spec`` says about how its defaults were adapted."""
  kind = kind_of(spec)
  return [] if kind.notes is None else list(
      kind.notes(spec, dataset, epochs, epoch_schedule))


def make_defence(config, model, splits, *, epochs, x_clean=None, mesh=None,
                 on_stage=None) -> JobDefence:
  """The `JobDefence` of a resolved configuration (None: no defence) for
  ``splits``' training set. ``on_stage(name, done, total)`` hears the
  defence's long passes."""
  for kind in _KINDS.values():
    wanted = kind.config_type or kind.spec_type
    if wanted is None if config is None else (
        wanted is not None and isinstance(config, wanted)):
      defence = kind.build(config, model, splits, epochs=epochs,
                           x_clean=x_clean, mesh=mesh, on_stage=on_stage)
      if defence.name != kind.name:   # its record() keys use the name
        raise ConfigError(f"defence {kind.name!r} built a JobDefence named "
                          f"{defence.name!r}; set its class's name to "
                          f"{kind.name!r}")
      return defence
  raise ConfigError(f"no registered defence takes a "
                    f"{type(config).__name__} configuration")


register(DefenceKind(
    name="none", label="no defence", spec_type=None,
    resolve=lambda spec, dataset, epochs, epoch_schedule: None,
    build=lambda config, model, splits, **_: JobDefence()))
