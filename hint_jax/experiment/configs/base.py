"""The types every experiment's configuration is made of: a `Method` (a
defence and its flags), a `Profile` of cells (`Cell`: dataset x poison
ratio x method x trial) or a `TargetedProfile` of targeted cells
(`TargetedCell`), and the registry of profiles (`add`, `get_profile`).

A cell's id is a digest of everything that determines its result (its
``hint-jax train`` flags, its poisoned set's key): two experiments with a
cell of equal key share its folder, and a change of the key's content
gives a new id, so results of other settings are never reused.
"""

import dataclasses
import hashlib
import json
import pathlib
from typing import Dict, Optional, Tuple

from hint_jax.errors import ConfigError
from hint_jax.pipeline import defences


@dataclasses.dataclass(frozen=True)
class Method:
  """A defence and its ``hint-jax train`` flags.

  Attributes:
    label: the name in reports ("none", "HINT", "HINT r=0.25", ...).
    defence: the ``--defence`` value (a registered defence's name).
    flags: further ``hint-jax train`` flags.
  """
  label: str
  defence: str
  flags: Tuple[str, ...] = ()

  @property
  def defense(self) -> str:
    """The old spelling of ``defence``, still readable."""
    return self.defence

  @property
  def slug(self) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_"
                   for c in self.label.replace("=", "")).lower()




# Bumped when `hint-jax poison`'s defaults for a dataset change the mix it
# crafts for the same flags, so sets and cells of the old mix are not reused
# (a dataset absent here is at revision 1, and its keys carry none).
# mnist 2: DeepConfuse uses the authors' published generator by default.
POISON_REVISIONS = {"mnist": 2}



@dataclasses.dataclass(frozen=True)
class Profile:
  """One profile of one table.

  Attributes:
    table: "table2", "table4" or "table5".
    name: "quick", "cpu" or "paper".
    datasets: the datasets, in report order.
    ratios: the poison ratios p.
    methods: the defences (with their flags).
    trials: trials per (dataset, p, method); trial t trains with seed t.
    train_flags: extra ``hint-jax train`` flags for every cell.
    poison_flags: extra ``hint-jax poison`` flags (the attacks, budgets and
      steps default to the HINT paper's).
    poison_seed: seed of the crafting (victim, assignment, attacks).
    poison_files: ``(dataset, sha256)`` pairs of p = 1 sets given by the
      user (``hint-jax experiment --poison-file``) instead of crafted ones;
      part of the cells' keys, so cells of other poisons are never mixed.
    description: what the profile reduces from the paper, the command and
      the measured run time.
    more_trials: ``(p, label, n)`` triples: that method runs ``n`` trials
      at that p (the others ``trials``).
    only_at: ``(label, ratios)`` pairs: that method runs at those p only
      (the others at every p of ``ratios``).
    plans: per-dataset plans (`DatasetPlan`) replacing, for their dataset,
      the ratios, methods, trials and flags above; a dataset without one
      runs the profile-wide settings.
    data_sha256: the content digest of a user dataset the profile runs on
      (`on_dataset`), part of every key so cells of other contents are
      never reused; None for the built-in datasets.
  """
  table: str
  name: str
  datasets: Tuple[str, ...]
  ratios: Tuple[float, ...]
  methods: Tuple[Method, ...]
  trials: int
  train_flags: Tuple[str, ...] = ()
  poison_flags: Tuple[str, ...] = ()
  poison_seed: int = 0
  poison_files: Tuple[Tuple[str, str], ...] = ()
  description: str = ""
  more_trials: Tuple[Tuple[float, str, int], ...] = ()
  only_at: Tuple[Tuple[str, Tuple[float, ...]], ...] = ()
  plans: Tuple["DatasetPlan", ...] = ()
  data_sha256: Optional[str] = None

  def __post_init__(self):
    labels = {m.label for m in self.methods}
    for plan in self.plans:
      if (plan.dataset not in self.datasets
          or not set(plan.ratios) <= set(self.ratios)
          or not set(plan.methods) <= labels):
        raise ConfigError(f"{self.table}/{self.name}: the {plan.dataset} "
                          "plan needs one of the profile's datasets and "
                          "only its ratios and methods")

  def on_dataset(self, dataset: str, data_sha256: Optional[str] = None):
    """This profile run on ``dataset`` instead of its one dataset (a
    dataset plan of it carries over)."""
    if len(self.datasets) != 1:
      raise ConfigError(f"{self.table}/{self.name} runs "
                        f"{', '.join(self.datasets)}; another dataset can "
                        "replace the dataset of a one-dataset profile only "
                        "(e.g. --profile quick)")
    plans = tuple(dataclasses.replace(p, dataset=dataset) for p in self.plans)
    return dataclasses.replace(self, datasets=(dataset,), plans=plans,
                               data_sha256=data_sha256)

  def plan(self, dataset: str) -> Optional["DatasetPlan"]:
    for plan in self.plans:
      if plan.dataset == dataset:
        return plan
    return None

  def train_flags_of(self, dataset: str) -> Tuple[str, ...]:
    plan = self.plan(dataset)
    return self.train_flags if plan is None else plan.train_flags

  def poison_flags_of(self, dataset: str) -> Tuple[str, ...]:
    plan = self.plan(dataset)
    return self.poison_flags if plan is None else plan.poison_flags

  def trials_of(self, ratio: float, method: Method,
                dataset: Optional[str] = None) -> int:
    plan = None if dataset is None else self.plan(dataset)
    if plan is not None:
      wanted = ratio in plan.ratios and method.label in plan.methods
      return plan.trials if wanted else 0
    allowed = dict(self.only_at).get(method.label)
    if allowed is not None and ratio not in allowed:
      return 0
    for p, label, n in self.more_trials:
      if p == ratio and label == method.label:
        return n
    return self.trials

  def poison_key(self, dataset: str) -> dict:
    """Everything that determines the poisoned set of ``dataset``."""
    given = dict(self.poison_files).get(dataset)
    if given is not None:
      return {"dataset": dataset, "file_sha256": given,
              "split": _split_flags(self.train_flags_of(dataset))}
    key = {"dataset": dataset, "flags": list(self.poison_flags_of(dataset)),
           "seed": self.poison_seed,
           "split": _split_flags(self.train_flags_of(dataset))}
    if dataset in POISON_REVISIONS:
      key["revision"] = POISON_REVISIONS[dataset]
    if self.data_sha256 is not None:
      key["data_sha256"] = self.data_sha256
    return key

  def cells(self):
    return [Cell(self, d, p, m, t) for d in self.datasets
            for p in self.ratios for m in self.methods
            for t in range(self.trials_of(p, m, d))]


@dataclasses.dataclass(frozen=True)
class DatasetPlan:
  """What a `Profile` runs on one of its datasets, when that differs from
  the profile-wide settings (e.g. a reduced CIFAR-10 part of a table).

  Attributes:
    dataset: the dataset it applies to.
    ratios: the poison ratios p it runs (each must be in the profile's).
    methods: labels of the profile's methods it runs.
    trials: trials per (p, method).
    train_flags: extra ``hint-jax train`` flags of its cells.
    poison_flags: extra ``hint-jax poison`` flags of its crafted set.
  """
  dataset: str
  ratios: Tuple[float, ...]
  methods: Tuple[str, ...]
  trials: int
  train_flags: Tuple[str, ...] = ()
  poison_flags: Tuple[str, ...] = ()


def _split_flags(flags):
  """The flags of ``flags`` that change the training split (and so must
  reach ``hint-jax poison`` too)."""
  out, it = [], iter(flags)
  for f in it:
    if f in ("--subset", "--num-val", "--split-seed", "--source"):
      out += [f, next(it)]
  return out


def dataset_slug(dataset: str) -> str:
  """A dataset's name as file names carry it: a built-in name unchanged; a
  user dataset (``folder:PATH``, ``npz:PATH``) as its kind and the file's
  stem, e.g. ``npz-mydata`` (the digest beside it in every id tells two
  paths of one stem apart)."""
  kind, sep, path = dataset.partition(":")
  if not sep:
    return dataset
  stem = pathlib.PurePath(path.rstrip("/\\") or "data").name.split(".")[0]
  safe = "".join(c if c.isalnum() or c == "-" else "_" for c in stem)
  return f"{kind}-{safe[:40] or 'data'}"


def digest(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()
                        ).hexdigest()[:10]


# The defence flag as the ids were first computed: the command line now
# spells it ``--defence`` (``--defense`` still parses), and a key keeps the
# first spelling so every committed cell keeps its id.
_KEYED_DEFENCE_FLAG = "--defense"


def _keyed_flags(flags) -> list:
  """``flags`` as a cell's key holds them (see `_KEYED_DEFENCE_FLAG`)."""
  return [_KEYED_DEFENCE_FLAG if f == "--defence" else f for f in flags]


def _trial_seed_flags(method, seed: str) -> list:
  """The flag that gives a defence's own randomness the trial's seed
  (HINT's ``--hint-seed``), as the defence declares it."""
  flag = defences.get(method.defence).trial_seed_flag
  return [] if flag is None else [flag, seed]


@dataclasses.dataclass(frozen=True)
class Cell:
  """One training run of a profile."""
  profile: Profile
  dataset: str
  ratio: float
  method: Method
  trial: int

  def train_flags(self) -> list:
    """The ``hint-jax train`` flags, without ``--data-dir``, ``--poison``
    and ``--out`` (the runner adds them)."""
    return (["--dataset", self.dataset, "--defence", self.method.defence,
             "--seed", str(self.trial)]
            + _trial_seed_flags(self.method, str(self.trial))
            + list(self.method.flags)
            + list(self.profile.train_flags_of(self.dataset)))

  def key(self) -> dict:
    """Everything that determines the cell's result: cells of different
    tables with equal keys are the same run and are shared."""
    key = {"train": _keyed_flags(self.train_flags()), "ratio": self.ratio,
           "poison": (self.profile.poison_key(self.dataset)
                      if self.ratio > 0 else None)}
    if self.profile.data_sha256 is not None:
      key["data_sha256"] = self.profile.data_sha256
    return key

  @property
  def cell_id(self) -> str:
    return (f"{dataset_slug(self.dataset)}_p{self.ratio:g}_"
            f"{self.method.slug}_t{self.trial}_{digest(self.key())}")



# ------------------------------------------------------- targeted cells
@dataclasses.dataclass(frozen=True)
class TargetedProfile:
  """One profile of the targeted-attack table (Table III).

  Every (attack, trial) has its own target, intended class and poisons,
  crafted by ``hint-jax target-poison --seed trial`` with ``craft_flags``;
  every method then trains one victim on that file (seed ``100 + trial``,
  so the victim is not the crafting model), whose ``result.json`` says
  whether the target got the intended class. The transfer attacks (bp,
  fc) train the top layer only, and every defence acts there.

  ``method_trials``: ``(label, n)`` pairs giving some methods fewer trials
  than ``trials`` (their first ``n``), for profiles where a costly
  defence cannot run every trial; every other method runs ``trials``.
  ``attack_flags``: ``(attack, flags)`` pairs, crafting flags for one
  attack only (after ``craft_flags``). ``data_sha256``: as `Profile`'s.
  """
  table: str
  name: str
  dataset: str
  attacks: Tuple[str, ...]
  methods: Tuple[Method, ...]
  trials: int
  craft_flags: Tuple[str, ...] = ()
  train_flags: Tuple[str, ...] = ()
  description: str = ""
  method_trials: Tuple[Tuple[str, int], ...] = ()
  attack_flags: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
  data_sha256: Optional[str] = None

  def __post_init__(self):
    labels = {m.label for m in self.methods}
    for label, n in self.method_trials:
      if label not in labels or not 1 <= n <= self.trials:
        raise ConfigError(f"{self.table}/{self.name}: method_trials "
                          f"({label!r}, {n}) needs one of {sorted(labels)} "
                          f"and 1 <= n <= {self.trials}")

  @property
  def datasets(self):
    return (self.dataset,)

  def on_dataset(self, dataset: str, data_sha256: Optional[str] = None):
    """This profile run on ``dataset`` instead of its own."""
    return dataclasses.replace(self, dataset=dataset,
                               data_sha256=data_sha256)

  def trials_of(self, method: "Method") -> int:
    return dict(self.method_trials).get(method.label, self.trials)

  def cells(self):
    return [TargetedCell(self, a, m, t) for a in self.attacks
            for m in self.methods for t in range(self.trials_of(m))]


VICTIM_SEED_OFFSET = 100
# Bumped when an attack's implementation changes the poisons it crafts for
# the same flags, so finished sets and cells of the old version are not
# reused (an attack absent here is at revision 1, and its keys carry none).
# mp 2: the authors' Carlini-Wagner clamp (kappa 100) and the loss averaged
# over the unrolled steps. mp 3: the members continue their own clean
# training between craft steps (``--member-steps``), instead of one SGD
# step on the poisons.
ATTACK_REVISIONS = {"mp": 3}
# Attacks whose victims (and crafting models) train without augmentation:
# the paper runs MetaPoison so (Table III's caption, "following the setting
# in" the MetaPoison papers), hence its lower clean accuracy there.
NO_AUGMENT_ATTACKS = ("mp",)


@dataclasses.dataclass(frozen=True)
class TargetedCell:
  """One victim trained on one targeted poisoned set; with ``clean_twin``,
  the same victim (flags, seed) trained on that set with every poison
  replaced by its clean image (`hint_jax.attacks.clean_twin`)."""
  profile: TargetedProfile
  attack: str
  method: Method
  trial: int
  clean_twin: bool = False

  def twin(self) -> "TargetedCell":
    return dataclasses.replace(self, clean_twin=True)

  @property
  def dataset(self) -> str:
    return self.profile.dataset

  def _augment_flags(self) -> list:
    return ["--no-augment"] if self.attack in NO_AUGMENT_ATTACKS else []

  def poison_key(self) -> dict:
    key = {"dataset": self.dataset, "attack": self.attack,
           "seed": self.trial,
           "flags": (list(self.profile.craft_flags)
                     + list(dict(self.profile.attack_flags).get(
                         self.attack, ())) + self._augment_flags()),
           "split": _split_flags(self.profile.train_flags)}
    if self.attack in ATTACK_REVISIONS:
      key["revision"] = ATTACK_REVISIONS[self.attack]
    if self.profile.data_sha256 is not None:
      key["data_sha256"] = self.profile.data_sha256
    return key

  def craft_flags(self) -> list:
    """The ``hint-jax target-poison`` flags, without ``--data-dir`` and
    ``--out``."""
    key = self.poison_key()
    return (["--dataset", self.dataset, "--attack", self.attack, "--seed",
             str(self.trial)] + key["flags"] + key["split"])

  def train_flags(self) -> list:
    seed = str(VICTIM_SEED_OFFSET + self.trial)
    return (["--dataset", self.dataset, "--defence", self.method.defence,
             "--seed", seed]
            + _trial_seed_flags(self.method, seed)
            + list(self.method.flags) + list(self.profile.train_flags)
            + self._augment_flags())

  def key(self) -> dict:
    key = {"train": _keyed_flags(self.train_flags()),
           "poison": self.poison_key()}
    if self.clean_twin:
      key["clean_twin"] = True
    return key

  @property
  def poison_id(self) -> str:
    return (f"{dataset_slug(self.dataset)}_{self.attack}_t{self.trial}_"
            + digest(self.poison_key()))

  @property
  def cell_id(self) -> str:
    twin = "_clean" if self.clean_twin else ""
    return (f"{dataset_slug(self.dataset)}_{self.attack}_{self.method.slug}"
            f"_t{self.trial}{twin}_{digest(self.key())}")




PROFILES: Dict[Tuple[str, str], object] = {}


def add(profile):
  """Registers ``profile`` (a `Profile` or `TargetedProfile`) under its
  ``(table, name)``; returns it. A name taken already is refused."""
  key = (profile.table, profile.name)
  if key in PROFILES:
    raise ConfigError(f"profile {profile.name!r} of {profile.table!r} is "
                      "defined twice")
  PROFILES[key] = profile
  return profile


def get_profile(table: str, name: str):
  """The registered profile ``name`` of experiment ``table``."""
  if (table, name) not in PROFILES:
    tables = sorted({t for t, _ in PROFILES})
    have = sorted(n for t, n in PROFILES if t == table)
    raise ConfigError(f"no profile {name!r} for {table!r}; tables: "
                      f"{', '.join(tables)}"
                      + (f"; {table}'s profiles: {', '.join(have)}"
                         if have else ""))
  return PROFILES[(table, name)]
