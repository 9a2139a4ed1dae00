"""The paper's experiments as configurations: one per table, three profiles.

Every table is a grid of *cells* (dataset x poison ratio p x method x trial);
a cell is one ``hint-jax train`` run and its ``result.json``. Profiles:

* ``quick`` -- the embedded 8x8 digits, a few minutes on a laptop CPU; CI
  runs it. It checks the machinery, not the paper's numbers.
* ``cpu`` -- real MNIST at the paper's MNIST settings on a 2-core CPU, with
  fewer trials (one) than the paper; each table's docstring below gives the
  command and the run time measured on such a machine.
* ``paper`` -- the paper's settings, MNIST and CIFAR-10, five trials; for an
  accelerator.

Trials differ only by the training seed (``--seed`` and ``--hint-seed`` are
``trial``); the poisoned set is crafted once per dataset, at p = 1, from
the profile's poison seed, and every lower ratio keeps a keyed subset of
those poisons (`hint_jax.attacks.lower_ratio`), so all tables share it.
"""

import dataclasses
import hashlib
import json
import pathlib
from typing import Optional, Tuple

from hint_jax.errors import ConfigError
from hint_jax.pipeline import defences


@dataclasses.dataclass(frozen=True)
class Method:
  """A defence and its ``hint-jax train`` flags.

  Attributes:
    label: the name in reports ("none", "HINT", "HINT r=0.25", ...).
    defense: the ``--defense`` value.
    flags: further ``hint-jax train`` flags.
  """
  label: str
  defense: str
  flags: Tuple[str, ...] = ()

  @property
  def slug(self) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "_"
                   for c in self.label.replace("=", "")).lower()


NONE = Method("none", "none")
HINT = Method("HINT", "hint")
# The norm is named in the flags (not left to the default) so ATDA cells of
# the earlier L-inf default keep ids of their own.
ATDA = Method("ATDA", "atda", ("--atda-norm", "l2"))
FRIENDS = Method("FRIENDS", "friends")
EPIC = Method("EPIC", "epic")
TABLE2_METHODS = (NONE, HINT, ATDA, FRIENDS, EPIC)
# Against the targeted attacks the paper gives ATDA a budget of 0.062
# (the HINT paper's baseline settings) rather than the untargeted 0.25.
TABLE3_METHODS = (NONE, HINT, Method("ATDA", "atda", ("--atda-eps", "0.062",
                                                    "--atda-norm", "l2")),
                  FRIENDS, EPIC)


def _hint_r(r):
  return Method(f"HINT r={r:g}", "hint", ("--ratio", repr(r)))


def _hint_beta(levels):
  return Method(f"HINT beta={levels / 255:.3f}", "hint",
                ("--beta", repr(levels / 255)))


def _hint_random_sign_beta(levels):
  return Method(f"HINT random-sign beta={levels / 255:.3f}", "hint",
                ("--hint-direction", "random_sign", "--beta",
                 repr(levels / 255)))


# Table IV: r at beta = 16/255 (the default), and beta = 8, 16, 32, 64 / 255
# (the paper's 0.031, 0.062, 0.125, 0.251) at r = 0.5. "HINT" is the shared
# r = 0.5, beta = 16/255 cell.
TABLE4_METHODS = (_hint_r(0.25), HINT, _hint_r(0.75), _hint_r(1.0),
                  _hint_beta(8), _hint_beta(32), _hint_beta(64))
TABLE5_METHODS = (NONE, _hint_r(0.25), HINT, _hint_r(0.75), _hint_r(1.0),
                  ATDA, FRIENDS, EPIC)
# The controls table: HINT beside variants that keep one part of it and
# replace the other by chance, and larger doses of its own noise.
# (b) the same examples and per-pixel step magnitude, random signs;
# (c) a random subset of the same size, HINT's noise;
# (d) gamma x10, x100, and a sign step of beta per update (noise at the
#     bound after one update).
HINT_RANDOM_SIGN = Method("HINT random-sign", "hint",
                          ("--hint-direction", "random_sign"))
HINT_RANDOM_SUBSET = Method("HINT random-subset", "hint",
                            ("--hint-selection", "random"))
HINT_GAMMA10 = Method("HINT gamma x10", "hint", ("--gamma", "1.0"))
HINT_GAMMA100 = Method("HINT gamma x100", "hint", ("--gamma", "10.0"))
HINT_SIGN_BETA = Method("HINT sign-step beta", "hint",
                        ("--sign-step", "--gamma", repr(16 / 255)))
# (b) at the doses of (d): does the direction matter once the noise is
#     large enough to change the outcome?
HINT_RANDOM_SIGN_GAMMA100 = Method(
    "HINT random-sign gamma x100", "hint",
    ("--hint-direction", "random_sign", "--gamma", "10.0"))
HINT_RANDOM_SIGN_SIGN_BETA = Method(
    "HINT random-sign sign-step beta", "hint",
    ("--hint-direction", "random_sign", "--sign-step", "--gamma",
     repr(16 / 255)))
CONTROLS_METHODS = (NONE, HINT, HINT_RANDOM_SIGN, HINT_RANDOM_SUBSET,
                    HINT_GAMMA10, HINT_GAMMA100, HINT_SIGN_BETA, ATDA)
# Table IV's beta line with random signs (each update's per-pixel
# magnitudes kept, signs drawn): whether HINT's direction or only the
# noise's size moves the accuracy as beta grows. "HINT random-sign" is the
# controls' beta = 16/255 cell.
TABLE4_RANDOM_SIGN = (_hint_random_sign_beta(8), HINT_RANDOM_SIGN,
                      _hint_random_sign_beta(32), _hint_random_sign_beta(64))


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


def _trial_seed_flags(method, seed: str) -> list:
  """The flag that gives a defence's own randomness the trial's seed
  (HINT's ``--hint-seed``), as the defence declares it."""
  flag = defences.get(method.defense).trial_seed_flag
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
    return (["--dataset", self.dataset, "--defense", self.method.defense,
             "--seed", str(self.trial)]
            + _trial_seed_flags(self.method, str(self.trial))
            + list(self.method.flags)
            + list(self.profile.train_flags_of(self.dataset)))

  def key(self) -> dict:
    """Everything that determines the cell's result: cells of different
    tables with equal keys are the same run and are shared."""
    key = {"train": self.train_flags(), "ratio": self.ratio,
           "poison": (self.profile.poison_key(self.dataset)
                      if self.ratio > 0 else None)}
    if self.profile.data_sha256 is not None:
      key["data_sha256"] = self.profile.data_sha256
    return key

  @property
  def cell_id(self) -> str:
    return (f"{dataset_slug(self.dataset)}_p{self.ratio:g}_"
            f"{self.method.slug}_t{self.trial}_{digest(self.key())}")


_QUICK_POISON = ("--dc-steps", "300")

# The CIFAR-10 cpu runs: 15 of the preset's 80 epochs in the preset's shape
# (learning rate x0.1 at 6/9/13, HINT at 1/3/8, gamma/10 from 8), named in
# the flags so cells of the earlier absolute schedule keep their own ids.
CPU_CIFAR_CRAFT = ("--model", "resnet_tiny", "--victim-epochs", "15",
                   "--restarts", "4", "--ensemble", "4", "--epoch-schedule",
                   "scaled")
CPU_CIFAR_TRAIN = ("--model", "resnet_tiny", "--subset", "10000", "--epochs",
                   "15", "--epoch-schedule", "scaled")
# The untargeted CIFAR-10 mix crafted against the same reduced victim.
CPU_CIFAR_POISON = ("--model", "resnet_tiny", "--victim-epochs", "15",
                    "--epoch-schedule", "scaled")

PROFILES = {}


def _add(p: Profile):
  PROFILES[(p.table, p.name)] = p


_add(Profile(
    "table2", "quick", ("digits",), (0.0, 0.5, 1.0), TABLE2_METHODS, 1,
    poison_flags=_QUICK_POISON, description=(
        "The embedded 8x8 digits (1297 training images), the digits "
        "training preset (30 epochs), DeepConfuse's generator trained for "
        "300 steps; one trial. A smoke test of the machinery: the numbers "
        "are not the paper's. Command: hint-jax experiment table2 --profile "
        "quick --out runs/exp. About 3 minutes on a 2-core CPU.")))
# Table II cpu: no defence and HINT at six ratios, three seeds; the
# baselines (costlier: ATDA trains about 5x longer) at three ratios, one
# seed, and three at p = 1.
_BASELINES = (ATDA, FRIENDS, EPIC)
_add(Profile(
    "table2", "cpu", ("mnist", "cifar10"), (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
    TABLE2_METHODS, 3,
    only_at=tuple((m.label, (0.0, 0.6, 1.0)) for m in _BASELINES),
    more_trials=tuple((p, m.label, 1) for p in (0.0, 0.6)
                      for m in _BASELINES),
    plans=(DatasetPlan("cifar10", (0.0, 0.6, 1.0), (NONE.label, HINT.label),
                       1, train_flags=CPU_CIFAR_TRAIN,
                       poison_flags=CPU_CIFAR_POISON),),
    description=(
        "Real MNIST at the paper's MNIST settings (ConvNet, 10 epochs of "
        "SGD 0.01, batch 128; HINT r = 0.5 before epoch 10; each baseline "
        "at its paper defaults, ATDA in L2); the four-attack mix crafted "
        "once at p = 1 with `hint-jax poison`'s MNIST defaults (DAP at 50 "
        "steps, listed in the file's metadata; DeepConfuse from the "
        "authors' published generator), every lower p keeping a keyed "
        "subset of it. Reduced from the paper: no defence and HINT at "
        "p = 0, 0.2, ..., 1 with 3 training seeds (paper: 5 trials), the "
        "baselines at p = 0, 0.6, 1 with one seed and 3 at p = 1. Command: "
        "hint-jax experiment table2 --profile cpu --data-dir DATA --out "
        "runs/exp (--ratios / --methods / --datasets run it in parts). "
        "Shares its p = 1 and p = 0.6 cells with controls. "
        "CIFAR-10, reduced: the JPEG copy of the training set, 10000 "
        "images, the narrow resnet_tiny (paper: ResNet-18 on 50000) for 15 "
        "of the preset's 80 epochs in the preset's shape (lr x0.1 at 6, 9, "
        "13; HINT before epochs 1, 3, 8, gamma/10 from 8); the mix crafted "
        "against a resnet_tiny victim of the same 15 epochs with `hint-jax "
        "poison`'s CIFAR-10 defaults (DAP 100 steps; DeepConfuse from the "
        "reduced generator trained here for 1000 steps, as no published "
        "CIFAR-10 generator is in DATA); p = 0, 0.6, 1, no defence and HINT, "
        "one seed.")))
_add(Profile(
    "table2", "paper", ("mnist", "cifar10"), (0.0, 0.6, 1.0),
    TABLE2_METHODS, 5, description=(
        "The paper's Table II: MNIST and CIFAR-10, p = 0, 0.6, 1, five "
        "trials, every setting at its paper default. For an accelerator.")))

_add(Profile(
    "table4", "quick", ("digits",), (0.5,),
    (_hint_r(0.25), HINT, _hint_beta(8)), 1, poison_flags=_QUICK_POISON,
    description=(
        "Digits, p = 0.5, three of the seven variants; a smoke test. "
        "Command: hint-jax experiment table4 --profile quick --out runs/exp. "
        "About a minute.")))
_add(Profile(
    "table4", "cpu", ("mnist",), (1.0,), TABLE4_METHODS + TABLE4_RANDOM_SIGN,
    1, description=(
        "The paper's Table IV on real MNIST at p = 1 (the paper's p = 0.6 "
        "is not used: there all but about 1e-5 of HINT's noised pixel "
        "values stay below 8/255, so beta cannot matter; the report gives "
        "the measured reach): r = 0.25, 0.5, 0.75, 1 at beta = 16/255 and "
        "beta = 8, "
        "32, 64 /255 at r = 0.5; one seed instead of five. A control the "
        "paper does not run: the beta line again with random signs (HINT's "
        "per-pixel step magnitudes, signs drawn; --hint-direction "
        "random_sign), so the report can tell HINT's direction from the "
        "noise's size. Shares the crafted set and the HINT p = 1 cell with "
        "table2 and the random-sign beta = 16/255 cell with controls. "
        "Command: hint-jax experiment table4 --profile cpu --data-dir DATA "
        "--out runs/exp.")))
_add(Profile(
    "table4", "paper", ("mnist", "cifar10"), (0.6,), TABLE4_METHODS, 5,
    description="The paper's Table IV: MNIST and CIFAR-10, p = 0.6, five "
    "trials. For an accelerator."))

_add(Profile(
    "controls", "quick", ("digits",), (1.0,), CONTROLS_METHODS, 1,
    poison_flags=_QUICK_POISON, description=(
        "HINT against its controls on the embedded digits at p = 1, one "
        "trial: a smoke test of the machinery, not a result. Command: "
        "hint-jax experiment controls --profile quick --out runs/exp.")))
_add(Profile(
    "controls", "cpu", ("mnist",), (1.0, 0.6), CONTROLS_METHODS, 1,
    more_trials=tuple((1.0, m.label, 3) for m in (NONE, HINT,
                                                   HINT_RANDOM_SIGN)),
    description=(
        "HINT against its controls on real MNIST, the table2 cpu settings "
        "and crafted set (shared cells): p = 1 and 0.6; at p = 1 no "
        "defence, HINT and its random-sign twin with 3 training seeds "
        "(trial t: --seed t --hint-seed t), every other method one. "
        "Command: hint-jax experiment controls --profile cpu --data-dir "
        "DATA --out runs/exp.")))
_add(Profile(
    "controls", "paper", ("mnist", "cifar10"), (1.0, 0.6), CONTROLS_METHODS,
    5, description=(
        "HINT against its controls at the paper's settings, MNIST and "
        "CIFAR-10, p = 1 and 0.6, five trials. For an accelerator; not yet "
        "run.")))

_add(Profile(
    "table5", "quick", ("digits",), (1.0,), TABLE5_METHODS, 1,
    poison_flags=_QUICK_POISON, description=(
        "Wall time of each defence on the digits at p = 1 as a ratio to no "
        "defence; a smoke test (the digits train in seconds, so the ratios "
        "say little). Command: hint-jax experiment table5 --profile quick "
        "--out runs/exp.")))
_add(Profile(
    "table5", "cpu", ("mnist",), (1.0,), TABLE5_METHODS, 1, description=(
        "Wall time of each defence on real MNIST at p = 1 (the paper's "
        "Table V is CIFAR-10 on a V100), one run each; shares the p = 1 "
        "cells of table2. Cells run at different times on a shared machine, "
        "so ratios carry that noise; `hint-jax bench defenses` measures "
        "side by side. Command: hint-jax experiment table5 --profile cpu "
        "--data-dir DATA --out runs/exp.")))
_add(Profile(
    "table5", "paper", ("cifar10",), (1.0,), TABLE5_METHODS, 1,
    description="The paper's Table V: CIFAR-10 wall time of each defence. "
    "For an accelerator."))



# ---------------------------------------------------------------- Table III
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
    return (["--dataset", self.dataset, "--defense", self.method.defense,
             "--seed", seed]
            + _trial_seed_flags(self.method, seed)
            + list(self.method.flags) + list(self.profile.train_flags)
            + self._augment_flags())

  def key(self) -> dict:
    key = {"train": self.train_flags(), "poison": self.poison_key()}
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


TABLE3_ATTACKS = ("gm", "mp", "bp", "fc")
QUICK_TARGETED_CRAFT = ("--budget", "0.005", "--steps", "20", "--restarts",
                        "2", "--ensemble", "2", "--victim-epochs", "5")
_add(TargetedProfile(
    "table3", "quick", "digits", TABLE3_ATTACKS, (NONE, HINT), 1,
    craft_flags=QUICK_TARGETED_CRAFT,
    description=(
        "The embedded 8x8 digits: 6 poisons (0.5%), 20 attack steps, 2 "
        "gradient-matching restarts, a MetaPoison ensemble of 2, victims "
        "trained with the digits preset; one trial. A smoke test of the "
        "machinery, not the paper's numbers. Command: hint-jax experiment "
        "table3 --profile quick --out runs/exp. About 2 minutes on a "
        "2-core CPU.")))
_add(TargetedProfile(
    "table3", "cpu", "cifar10", TABLE3_ATTACKS, TABLE3_METHODS, 3,
    craft_flags=CPU_CIFAR_CRAFT, train_flags=CPU_CIFAR_TRAIN,
    method_trials=(("ATDA", 1), ("FRIENDS", 1), ("EPIC", 1)),
    attack_flags=(("mp", ("--member-steps", "5")),),
    description=(
        "CPU settings: the CIFAR-10 copy in DATA, 10000 training images, "
        "the narrow resnet_tiny, 15 epochs for victims and crafting models "
        "in the preset's shape (lr x0.1 at epochs 6, 9, 13; HINT before "
        "epochs 1, 3, 8 and gamma/10 from 8), "
        "1% budget (100 poisons), gradient matching with 4 restarts, a "
        "MetaPoison ensemble of 4 (trained 15, 4, 8 and 11 epochs, then "
        "each takes 5 clean training steps after every craft step, where "
        "the original trains each member a whole epoch per step, so over "
        "the 60 steps the members sweep epochs 4 to 19; one meta-gradient "
        "per member per craft step; its victims and crafting models train "
        "without augmentation, as in the paper). "
        "Three trials (random "
        "target and intended class each) for no defence and HINT, the "
        "first trial only for the "
        "baselines ATDA, FRIENDS and EPIC: the paper runs five. Every "
        "hit then gets its clean twin (the same training and seed on the "
        "set with its poisons replaced by their clean images), and a hit "
        "counts as the poisons' doing only where the twin misses. On a "
        "2-core CPU a trial's crafting takes from about 1 min (FC) to "
        "about an hour (gradient matching, MetaPoison) and a cell about 5 "
        "min (ATDA several times that); the results README gives the "
        "measured times. "
        "Command: hint-jax experiment table3 --profile cpu --data-dir DATA "
        "--out runs/exp (--attacks, --trials for a part).")))
_add(TargetedProfile(
    "table3", "paper", "cifar10", TABLE3_ATTACKS, TABLE3_METHODS, 5,
    description=(
        "The paper's Table III: CIFAR-10, ResNet-18, 1% budget (490 "
        "poisons), eps 16/255 (MetaPoison 8/255), gradient matching with 8 "
        "restarts of 250 signed-Adam steps, MetaPoison's victims and "
        "crafting models without augmentation (the paper's caption), "
        "five trials with random targets "
        "and intended classes, every defence at its default (ATDA at the "
        "paper's targeted budget 0.062). For an accelerator; not yet "
        "run.")))

CONTROLS_TARGETED_METHODS = (NONE, HINT, HINT_RANDOM_SIGN, HINT_GAMMA100,
                             HINT_SIGN_BETA, HINT_RANDOM_SIGN_GAMMA100,
                             HINT_RANDOM_SIGN_SIGN_BETA)
_add(TargetedProfile(
    "controls_targeted", "quick", "digits", ("bp", "gm"),
    (NONE, HINT, HINT_RANDOM_SIGN, HINT_SIGN_BETA), 1,
    craft_flags=QUICK_TARGETED_CRAFT,
    description=(
        "HINT and its controls against Bullseye Polytope and gradient "
        "matching on the embedded digits, one trial (the table3 quick "
        "sets and cells are shared): a smoke test. "
        "Command: hint-jax experiment controls_targeted --profile quick "
        "--out runs/exp.")))
_add(TargetedProfile(
    "controls_targeted", "cpu", "cifar10", ("bp", "fc", "gm"),
    CONTROLS_TARGETED_METHODS, 3,
    craft_flags=CPU_CIFAR_CRAFT, train_flags=CPU_CIFAR_TRAIN,
    description=(
        "HINT, its random-sign twin and the two strongest doses (gamma x "
        "100, a sign step of beta per update) with their own random-sign "
        "twins against Bullseye Polytope, "
        "Feature Collision and gradient matching, 3 trials, at the table3 "
        "cpu settings in the preset's shape (shared sets and cells). "
        "Gradient matching crafts slowly on a CPU (about 40 minutes a "
        "trial): its no defence, HINT and strongest-dose cells first with "
        "--attacks gm --methods 'none,HINT,HINT sign-step beta'. "
        "Command: hint-jax experiment controls_targeted --profile "
        "cpu --data-dir DATA --out runs/exp (--attacks, --methods, "
        "--trials for a part).")))
_add(TargetedProfile(
    "controls_targeted", "paper", "cifar10", ("bp", "fc", "gm"),
    CONTROLS_TARGETED_METHODS, 5,
    description=(
        "HINT and its controls against BP, FC and GM at the paper's "
        "CIFAR-10 settings, five trials. For an accelerator; not yet "
        "run.")))

# ------------------------------------------------------------- robustness
# Does the MNIST result survive other poison draws, structured directions
# that carry no validation information, and the recipe most users train
# with? Every control keeps HINT's selection and per-pixel step magnitude
# (`hint_jax.hint.HintConfig.direction`).
HINT_NEGATIVE = Method("HINT negative", "hint",
                       ("--hint-direction", "negative"))
HINT_RANDOM_STEST = Method("HINT random s_test", "hint",
                           ("--hint-direction", "random_stest"))
HINT_TRAIN_LOSS = Method("HINT train-loss", "hint",
                         ("--hint-direction", "train_loss"))
STRUCTURED_CONTROLS = (HINT_NEGATIVE, HINT_RANDOM_STEST, HINT_TRAIN_LOSS)
# SGD momentum 0.9, the generic recipe (`presets.PRESETS["generic"]`).
MOMENTUM = ("--momentum", "0.9")
NONE_MOMENTUM = Method("none momentum", "none", MOMENTUM)
HINT_MOMENTUM = Method("HINT momentum", "hint", MOMENTUM)
HINT_RANDOM_SIGN_MOMENTUM = Method(
    "HINT random-sign momentum", "hint",
    ("--hint-direction", "random_sign") + MOMENTUM)
ROBUSTNESS_METHODS = ((NONE, HINT, HINT_RANDOM_SIGN) + STRUCTURED_CONTROLS
                      + (NONE_MOMENTUM, HINT_MOMENTUM,
                         HINT_RANDOM_SIGN_MOMENTUM))
_P1_ONLY = tuple((m.label, (1.0,)) for m in STRUCTURED_CONTROLS
                 + (NONE_MOMENTUM, HINT_MOMENTUM, HINT_RANDOM_SIGN_MOMENTUM))
_PRIMARY = (NONE, HINT, HINT_RANDOM_SIGN)
# The further draws: (poison seed, split seed). Draw 0 is the profile
# "cpu" (seed 0, split 0: the set and cells of table2/controls cpu).
ROBUSTNESS_DRAWS = ((1, 1), (2, 2))


def draw_profile(base: str, draw: int) -> str:
  """The profile name of draw ``draw`` > 0 of profile ``base`` (its own
  crafted set and split)."""
  return f"{base}-draw{draw}"


_add(Profile(
    "robustness", "quick", ("digits",), (1.0,),
    (NONE, HINT, HINT_RANDOM_SIGN) + STRUCTURED_CONTROLS, 1,
    poison_flags=_QUICK_POISON, description=(
        "The robustness grid's machinery on the embedded digits at p = 1, "
        "one trial: HINT, its random-sign twin and the three structured "
        "controls; quick-draw1 repeats none and HINT on another poison "
        "draw and split. A smoke test, not a result. Command: hint-jax "
        "experiment robustness --profile quick --out runs/exp (and "
        "--profile quick-draw1).")))
_add(Profile(
    "robustness", draw_profile("quick", 1), ("digits",), (1.0,),
    (NONE, HINT), 1, poison_flags=_QUICK_POISON, poison_seed=1,
    train_flags=("--split-seed", "1"), description=(
        "robustness quick on a second draw: poison seed 1, split seed 1. "
        "Command: hint-jax experiment robustness --profile quick-draw1 "
        "--out runs/exp.")))
_add(Profile(
    "robustness", "cpu", ("mnist",), (0.0, 0.9, 0.95, 1.0),
    ROBUSTNESS_METHODS, 3,
    only_at=_P1_ONLY + ((HINT_RANDOM_SIGN.label, (0.0, 1.0)),),
    description=(
        "Real MNIST at the table2 cpu settings (ConvNet, 10 epochs of SGD "
        "0.01, batch 128; HINT r = 0.5, gamma 0.1, beta 16/255 before epoch "
        "10), poison draw 0 (seed 0, split 0: table2/controls cpu's set and "
        "p = 1 and p = 0 cells), 3 training seeds: at p = 1 no defence, "
        "HINT, random signs, and the structured controls (-I_pert; I_pert "
        "with a random s_test of the same norm; the training-loss input "
        "gradient, error-minimising), each at HINT's per-pixel magnitude; "
        "none, HINT and random signs again with SGD momentum 0.9 (the "
        "generic recipe); none and HINT at p = 0.9 and 0.95; random signs "
        "at p = 0 beside table2's none and HINT there. The plan, the "
        "comparison and its rule: experiments/results/robustness_cpu/"
        "README.md. Command: hint-jax experiment robustness --profile cpu "
        "--data-dir DATA --out runs/exp (then cpu-draw1, cpu-draw2).")))
for _draw, (_pseed, _sseed) in enumerate(ROBUSTNESS_DRAWS, start=1):
  _add(Profile(
      "robustness", draw_profile("cpu", _draw), ("mnist",), (1.0,),
      _PRIMARY, 3, poison_seed=_pseed,
      train_flags=("--split-seed", str(_sseed)), description=(
          f"robustness cpu's primary comparison on poison draw {_draw}: "
          f"the mix crafted again with seed {_pseed} (victim, attack "
          f"assignment, PGD starts, DURP signs) on the train/validation "
          f"split of seed {_sseed}; p = 1, no defence, HINT and random "
          f"signs, 3 training seeds. Command: hint-jax experiment "
          f"robustness --profile cpu-draw{_draw} --data-dir DATA --out "
          f"runs/exp.")))
_add(Profile(
    "robustness", "paper", ("mnist", "cifar10"), (1.0,),
    (NONE, HINT, HINT_RANDOM_SIGN) + STRUCTURED_CONTROLS, 5,
    description=(
        "The robustness controls at the paper's settings, MNIST and "
        "CIFAR-10, p = 1, five trials (draws: run with --poison-file sets "
        "crafted with other seeds). For an accelerator; not yet run.")))

TABLES = ("table2", "table3", "table4", "table5", "controls",
          "controls_targeted", "robustness")
PROFILE_NAMES = ("quick", "cpu", "paper")
# Every profile name of any table (the standard three and a table's extra
# ones, e.g. robustness's cpu-draw1).
ALL_PROFILE_NAMES = tuple(sorted({name for _, name in PROFILES}))


def get_profile(table: str, name: str):
  if (table, name) not in PROFILES:
    have = sorted(n for t, n in PROFILES if t == table)
    raise ConfigError(f"no profile {name!r} for {table!r}; tables: "
                      f"{', '.join(TABLES)}"
                      + (f"; {table}'s profiles: {', '.join(have)}"
                         if have else ""))
  return PROFILES[(table, name)]


# The paper's numbers (Tables II, IV, V of the HINT paper), for the reports.
PAPER_TABLE2 = {
    "mnist": {0.0: {"none": 98.44, "HINT": 98.87},
              0.6: {"none": 96.64, "HINT": 96.87},
              1.0: {"none": 74.62, "HINT": 88.92, "ATDA": 80.60,
                    "FRIENDS": 77.08, "EPIC": 77.84}},
    "cifar10": {0.0: {"none": 93.86, "HINT": 93.64},
                0.6: {"none": 83.51, "HINT": 91.94},
                1.0: {"none": 48.62, "HINT": 90.79, "ATDA": 89.41,
                      "FRIENDS": 86.76, "EPIC": 84.73}},
}
PAPER_TABLE4 = {  # p = 0.6; mean (std) over five trials
    "mnist": {"HINT r=0.25": (97.13, 0.03), "HINT": (96.87, 0.02),
              "HINT r=0.75": (96.62, 0.03), "HINT r=1": (96.46, 0.05),
              "HINT beta=0.031": (96.76, 0.01),
              "HINT beta=0.125": (96.74, 0.05),
              "HINT beta=0.251": (96.43, 0.01)},
    "cifar10": {"HINT r=0.25": (92.06, 0.08), "HINT": (91.94, 0.21),
                "HINT r=0.75": (91.83, 0.11), "HINT r=1": (91.72, 0.15),
                "HINT beta=0.031": (91.80, 0.18),
                "HINT beta=0.125": (91.77, 0.13),
                "HINT beta=0.251": (91.40, 0.20)},
}
PAPER_TABLE5 = {  # CIFAR-10 seconds on a V100
    "none": 1600, "HINT r=0.25": 2113, "HINT": 2427, "HINT r=0.75": 2745,
    "HINT r=1": 2875, "ATDA": 5760, "FRIENDS": 2426, "EPIC": 3147}
# Table III, per dataset (only CIFAR-10 in the paper): per method and
# attack, (attack successes, trials, clean test accuracy %).
PAPER_TABLE3 = {"cifar10": {
    "none": {"gm": (5, 5, 93.69), "mp": (4, 5, 87.48),
             "bp": (5, 5, 91.41), "fc": (5, 5, 89.40)},
    "HINT": {"gm": (0, 5, 92.99), "mp": (1, 5, 87.15),
             "bp": (1, 5, 92.41), "fc": (1, 5, 92.21)},
    "ATDA": {"gm": (3, 5, 93.64), "mp": (3, 5, 87.45),
             "bp": (4, 5, 89.50), "fc": (4, 5, 88.37)},
    "FRIENDS": {"gm": (0, 5, 89.17), "mp": (1, 5, 78.26),
                "bp": (3, 5, 89.53), "fc": (2, 5, 88.84)},
    "EPIC": {"gm": (0, 5, 90.36), "mp": (2, 5, 86.68),
             "bp": (4, 5, 89.65), "fc": (3, 5, 89.19)},
}}
