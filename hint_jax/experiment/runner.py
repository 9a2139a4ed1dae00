"""The paper runner: every cell of a table's profile a resumable training
job in one experiment folder, the poisoned sets crafted once, a manifest of
what ran (``hint-jax experiment`` is its command).

A cell's settings are written in the command line's vocabulary (the flags
a user would type; a cell's id is a digest of them, so a committed cell
keeps its folder), and the manifest records every command as it could be
retyped. The runner turns those flags into the library's specs through the
`Flags` it is given and runs `hint_jax.pipeline`'s jobs.

Layout of DIR (shared by every table and profile run into it):

* ``cells/<cell id>/`` -- one training job per cell (its
  ``result.json``, ``metrics.jsonl``, checkpoint and ``cell.json`` with the
  cell's settings). A cell whose ``result.json`` exists is finished and is
  skipped; an unfinished one resumes from its last finished epoch. Cells of
  different tables with the same settings are the same directory.
* ``poison/<dataset>_<digest>/p1.npz`` -- the mixed-attack set crafted once
  (a poisoning job at p = 1, resumable), and ``p<ratio>.npz`` for each
  lower ratio, a keyed subset of it (`hint_jax.attacks.lower_ratio`; the
  subsets are nested: the poisons at p = 0.3 are among those at p = 0.6).
* ``poison/targeted/<attack set id>.npz`` -- Table III's targeted sets, one
  per (attack, trial), and ``<attack set id>_clean.npz``, its clean twin
  (`hint_jax.attacks.clean_twin`), written when a cell on it hits; the
  twin's cell (``..._clean_<digest>``) trains the hit cell's victim on it.
* ``experiment_<table>_<profile>.json`` -- the profile, its cells, the
  machine and every command that ran it; `hint_jax.experiment.report`
  (``hint-jax report DIR``) reads these.

Several invocations may run on one DIR at once (say, one crafting the next
trial's poisons while another trains a finished trial's cells): the
manifest is re-read and changed under a lock at every write, so none of
them drops another's records; a cell or targeted set that another
invocation is working on is left to it (``.locks/``). The locks are
``fcntl`` locks, released when their holder exits, killed or not; where
``fcntl`` does not exist (Windows) there are none, and invocations must run
one at a time.
"""

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import platform
import shlex
import shutil
import time
from typing import Callable, Optional, Tuple
import uuid

try:
  import fcntl
except ImportError:  # Windows: no locks (see the module docstring)
  fcntl = None

import jax

from hint_jax import attacks
from hint_jax import data as data_lib
from hint_jax import pipeline
from hint_jax.experiment import configs as exp_configs
from hint_jax.experiment.configs import (TargetedCell, TargetedProfile,
                                         get_profile)
from hint_jax.errors import ConfigError, DataError
from hint_jax.pipeline import poisons
from hint_jax.pipeline.files import check_out, make_out, write_json_atomic

POISON_LOWER_STREAM = 7   # key of lower_ratio: fold_in(key(poison seed), 7)


@dataclasses.dataclass(frozen=True)
class Flags:
  """Turns the commands the runner records into the library's specs:
  ``train(argv) -> (TrainJob, out)``, ``poison(argv) -> (DataSpec,
  PoisonSpec, out)``, ``target_poison(argv) -> (DataSpec, TargetSpec,
  out)``, each given the command's flags without its name. The command
  line supplies them (`hint_jax.cli`), as it owns the vocabulary."""
  train: Callable
  poison: Callable
  target_poison: Callable


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """One invocation of the runner.

  Attributes:
    table, profile: which profile of `hint_jax.experiment.configs`.
    out: the experiment folder.
    data_dir: the data folder (None: ``$HINT_JAX_DATA_DIR``).
    poison_files: p = 1 poisoned sets to use instead of crafting them.
    ratios, methods, datasets, attacks, trials: run only these cells
      (None: all).
    dataset: run the profile on this dataset instead of its own (a
      one-dataset profile; e.g. the user's ``npz:PATH`` or ``folder:PATH``
      with ``quick``); None: the profile's.
    dry_run: list the cells, run nothing.
    progress: progress bars in the recorded commands (no: ``--no-progress``).
    invocation: this invocation as typed, for the manifest.
  """
  table: str
  profile: str
  out: str
  data_dir: Optional[str] = None
  poison_files: Tuple[str, ...] = ()
  ratios: Optional[Tuple[float, ...]] = None
  methods: Optional[Tuple[str, ...]] = None
  datasets: Optional[Tuple[str, ...]] = None
  attacks: Optional[Tuple[str, ...]] = None
  trials: Optional[int] = None
  dataset: Optional[str] = None
  dry_run: bool = False
  progress: bool = True
  invocation: Tuple[str, ...] = ()


@dataclasses.dataclass
class Outcome:
  """What an invocation did: every cell's status ("done", "pending",
  "skipped" by the filters) before it ran, and, unless a dry run, how many
  cells are finished now and how many it trained."""
  table: str
  profile: str
  statuses: list
  finished: Optional[int] = None
  trained: Optional[int] = None


def given_poisons(paths, profile) -> dict:
  """``{dataset: (path, sha256)}`` of the given p = 1 sets, checked to be
  well-formed p = 1 sets of the profile's datasets."""
  given = {}
  for path in paths:
    ps = attacks.load_poisoned(path)
    dataset = ps.meta.get("dataset")
    if dataset not in profile.datasets:
      raise ConfigError(f"poison file {path} is a {dataset!r} set; this "
                        f"profile runs {', '.join(profile.datasets)}")
    if ps.meta.get("ratio") != 1.0:
      raise ConfigError(f"poison file {path} has ratio "
                        f"{ps.meta.get('ratio')}; give a p = 1 set (lower "
                        f"ratios are kept subsets of it)")
    if dataset in given:
      raise ConfigError(f"two poison files for {dataset}")
    digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    given[dataset] = (pathlib.Path(path), digest)
  return given


def machine() -> dict:
  return {"platform": platform.platform(), "machine": platform.machine(),
          "cpus": os.cpu_count(), "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()],
          "jax_version": jax.__version__, "python": platform.python_version()}


def poison_dir(out, profile, dataset) -> pathlib.Path:
  key = profile.poison_key(dataset)
  return out / "poison" / (f"{exp_configs.dataset_slug(dataset)}_"
                           f"{exp_configs.digest(key)}")


def poison_file(out, profile, dataset, ratio) -> pathlib.Path:
  return poison_dir(out, profile, dataset) / f"p{ratio:g}.npz"


def cell_dir(out, cell) -> pathlib.Path:
  return out / "cells" / cell.cell_id


def targeted_poison_file(out, cell) -> pathlib.Path:
  """The cell's targeted set (its clean twin's, for a twin cell)."""
  twin = "_clean" if getattr(cell, "clean_twin", False) else ""
  return out / "poison" / "targeted" / f"{cell.poison_id}{twin}.npz"


def is_hit(out, cell) -> bool:
  """Whether ``cell`` has finished and its victim gave the target the
  intended class."""
  path = cell_dir(out, cell) / "result.json"
  if not path.exists():
    return False
  try:
    return bool(json.loads(path.read_text())["target"]["success"])
  except (OSError, ValueError, KeyError, TypeError):
    raise DataError(f"{path} is not a targeted cell's result; remove the "
                    "cell's folder to run it again") from None


def cell_record(out, cell) -> dict:
  if isinstance(cell, TargetedCell):
    return {"id": cell.cell_id, "dataset": cell.dataset,
            "attack": cell.attack, "method": cell.method.label,
            "defence": cell.method.defence, "trial": cell.trial,
            "poison": cell.poison_id,
            "dir": str(cell_dir(out, cell).relative_to(out)),
            "key": cell.key(), **({"clean_twin": True}
                                  if cell.clean_twin else {})}
  return {"id": cell.cell_id, "dataset": cell.dataset, "ratio": cell.ratio,
          "method": cell.method.label, "defence": cell.method.defence,
          "trial": cell.trial, "dir": str(cell_dir(out, cell).relative_to(
              out)), "key": cell.key()}


def manifest_path(out, profile) -> pathlib.Path:
  return out / f"experiment_{profile.table}_{profile.name}.json"


@contextlib.contextmanager
def lock(out, name, wait=True):
  """Holds the exclusive lock ``out/.locks/<name>.lock``; yields whether it
  was taken (always, when ``wait``; else False if another process holds
  it)."""
  if fcntl is None:
    yield True
    return
  path = out / ".locks" / f"{name}.lock"
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


class Manifest:
  """This invocation's handle on the profile's manifest. Every change is a
  locked read-modify-write of the file, so invocations running at once on
  one folder keep each other's commands and records."""

  def __init__(self, out, profile, header: dict, invocation: dict):
    self.out, self.path = out, manifest_path(out, profile)
    self.id = invocation["id"]

    def opened(manifest):
      manifest.update(header)
      manifest["invocations"].append(invocation)
    self._update(opened)

  def _update(self, change):
    with lock(self.out, self.path.name):
      manifest = (json.loads(self.path.read_text()) if self.path.exists()
                  else {"commands": [], "invocations": []})
      change(manifest)
      write_json_atomic(self.path, manifest)

  def log(self, argv):
    """Appends a command run by this invocation."""
    self._update(lambda m: m["commands"].append("hint-jax "
                                                + shlex.join(argv)))

  def timed(self, argv, seconds):
    """Records how long a logged command took (wall time, this process;
    a command resumed after an interruption records each part)."""
    self._update(lambda m: m.setdefault("command_seconds", []).append(
        ["hint-jax " + shlex.join(argv), round(seconds, 1)]))

  def set_cells(self, records):
    """Replaces the manifest's cell list (the twins found since it was
    opened are added)."""
    self._update(lambda m: m.update(cells=records))

  def record(self, **changes):
    """Updates this invocation's record (``cells_run``, ``finished``)."""
    def change(manifest):
      for inv in manifest["invocations"]:
        if inv.get("id") == self.id:
          inv.update(changes)
    self._update(change)


class Runner:
  """One invocation: `run` runs the chosen cells of ``opts``' profile into
  its folder, crafting what they need first."""

  def __init__(self, opts: RunOptions, flags: Flags, reporter=None):
    self.opts, self.flags = opts, flags
    self.reporter = reporter or pipeline.Reporter()
    self.out = check_out(opts.out)
    self.manifest = None

  def note(self, text):
    self.reporter.note(text)

  # -------------------------------------------------------- commands
  def _common(self) -> list:
    return ((["--data-dir", self.opts.data_dir] if self.opts.data_dir
             else []) + ([] if self.opts.progress else ["--no-progress"]))

  def _logged(self, argv, run):
    """Records ``argv`` in the manifest, runs ``run()``, records its time."""
    self.manifest.log(argv)
    t0 = time.perf_counter()
    result = run()
    self.manifest.timed(argv, time.perf_counter() - t0)
    return result

  def train(self, argv):
    """Runs (and records) ``hint-jax train argv``."""
    job, out = self.flags.train(argv[1:])
    return self._logged(argv, lambda: pipeline.run_train(
        job, out, reporter=self.reporter))

  def poison(self, argv):
    data, spec, out = self.flags.poison(argv[1:])
    return self._logged(argv, lambda: pipeline.run_poison(
        data, spec, out, self.reporter))

  def target_poison(self, argv):
    data, spec, out = self.flags.target_poison(argv[1:])
    return self._logged(argv, lambda: pipeline.run_target_poison(
        data, spec, out, self.reporter))

  def cell_argv(self, cell) -> list:
    argv = ["train"] + cell.train_flags()
    if isinstance(cell, TargetedCell):
      argv += ["--poison", str(targeted_poison_file(self.out, cell))]
      if poisons.get_targeted(cell.attack).scenario == "transfer":
        # The extractor the set was crafted on, trained once (not part of
        # the cell's identity: it only saves the re-training).
        argv += ["--victim-dir", str(self.out / "victims")]
    elif cell.ratio > 0:
      argv += ["--poison", str(poison_file(self.out, cell.profile,
                                           cell.dataset, cell.ratio))]
    return argv + ["--out", str(cell_dir(self.out, cell))] + self._common()

  # ------------------------------------------------------------ run
  def profile(self):
    """The profile this invocation runs (on ``opts.dataset`` when given,
    with its contents' digest for a user dataset)."""
    profile = get_profile(self.opts.table, self.opts.profile)
    if self.opts.dataset is None:
      return profile
    name = data_lib.check_name(self.opts.dataset)
    sha = (data_lib.content_sha256(name)
           if data_lib.parse_custom(name) is not None else None)
    return profile.on_dataset(name, sha)

  def run(self) -> Outcome:
    profile = self.profile()
    if isinstance(profile, TargetedProfile):
      return self._run_targeted(profile)
    opts, out = self.opts, self.out
    if opts.attacks is not None or opts.trials is not None:
      raise ConfigError("attacks and trials apply to table3 only")
    given = given_poisons(opts.poison_files, profile)
    profile = dataclasses.replace(profile, poison_files=tuple(
        (d, sha) for d, (_, sha) in sorted(given.items())))
    cells = profile.cells()
    for name, wanted, have in (
        ("ratios", opts.ratios, {c.ratio for c in cells}),
        ("methods", opts.methods, {c.method.label for c in cells}),
        ("datasets", opts.datasets, {c.dataset for c in cells})):
      unknown = sorted(set(wanted or ()) - have, key=str)
      if unknown:
        raise ConfigError(f"{name}: {unknown} not in this profile ("
                          f"{', '.join(str(h) for h in sorted(have, key=str))}"
                          ")")
    done = [(cell_dir(out, c) / "result.json").exists() for c in cells]
    chosen = [(opts.ratios is None or c.ratio in opts.ratios)
              and (opts.methods is None or c.method.label in opts.methods)
              and (opts.datasets is None or c.dataset in opts.datasets)
              for c in cells]
    outcome = self._statuses(profile, cells, done, chosen)
    if opts.dry_run:
      return outcome
    self._check_data_dir()
    make_out(out)
    self._open_manifest(
        profile, [cell_record(out, c) for c in cells], sum(done),
        poison_files={d: str(p.resolve()) for d, (p, _) in given.items()})
    for dataset in profile.datasets:
      ratios = [c.ratio for c, d, ch in zip(cells, done, chosen)
                if c.dataset == dataset and ch and not d]
      with lock(out, f"poison-{exp_configs.dataset_slug(dataset)}"):
        self.ensure_poison(profile, dataset, ratios,
                           given.get(dataset, (None,))[0])
    todo = [c for c, d, ch in zip(cells, done, chosen) if ch and not d]
    trained = self.train_cells(todo, lambda c: f"p = {c.ratio:g}")
    return self._close(outcome, cells, trained)

  def _statuses(self, profile, cells, done, chosen) -> Outcome:
    return Outcome(profile.table, profile.name, [
        ("done" if d else "pending" if ch else "skipped", c.cell_id)
        for c, d, ch in zip(cells, done, chosen)])

  def _check_data_dir(self):
    d = self.opts.data_dir
    if d is not None and not pathlib.Path(d).is_dir():
      raise ConfigError(f"data folder {d} is not a directory")

  def ensure_poison(self, profile, dataset, ratios, given=None):
    """Crafts (or finds, or copies from ``given``, a path) the p = 1 set of
    ``dataset`` and writes each lower ratio of ``ratios``."""
    ratios = sorted({r for r in ratios if r > 0})
    if not ratios:
      return
    out = self.out
    full = poison_file(out, profile, dataset, 1.0)
    if not full.exists() and given is not None:
      full.parent.mkdir(parents=True, exist_ok=True)
      tmp = full.with_name(".p1.npz.tmp")
      shutil.copyfile(given, tmp)
      os.replace(tmp, full)
      write_json_atomic(full.parent / "poison.json",
                        dict(profile.poison_key(dataset),
                             copied_from=str(pathlib.Path(given).resolve())))
      self.note(f"experiment: using {given} as the {dataset} p = 1 set")
    elif not full.exists():
      argv = (["poison", "--dataset", dataset, "--ratio", "1", "--seed",
               str(profile.poison_seed)]
              + list(profile.poison_flags_of(dataset))
              + profile.poison_key(dataset)["split"]
              + ["--out", str(full)] + self._common())
      self.note(f"experiment: crafting the poisoned {dataset} set (p = 1) "
                f"into {full}")
      write_json_atomic(full.parent / "poison.json",
                        profile.poison_key(dataset))
      self.poison(argv)
    lower = [r for r in ratios if r < 1.0 and
             not poison_file(out, profile, dataset, r).exists()]
    if not lower:
      return
    ps = attacks.load_poisoned(full)
    splits = self._clean_split(dataset, profile.poison_key(dataset)["split"])
    key = jax.random.fold_in(jax.random.key(profile.poison_seed),
                             POISON_LOWER_STREAM)
    for r in lower:
      low = attacks.lower_ratio(ps, r, splits.x_train, key)
      attacks.save_poisoned(poison_file(out, profile, dataset, r), low)
      self.note(f"experiment: {dataset} p = {r:g}: {low.counts()} (kept "
                "from the p = 1 set)")

  def _clean_split(self, dataset, split_flags):
    """The clean splits a set of ``dataset`` made with ``split_flags`` (the
    split-changing ``hint-jax train`` flags) was crafted from."""
    argv = (["--dataset", dataset, "--out", str(self.out)] + split_flags
            + (["--data-dir", self.opts.data_dir] if self.opts.data_dir
               else []))
    return pipeline.load_splits(self.flags.train(argv)[0].data)[1]

  def _open_manifest(self, profile, records, num_done, **extra):
    """Records this invocation in the profile's manifest (started if
    absent)."""
    d = self.opts.data_dir
    header = dict(
        table=profile.table, profile=profile.name,
        description=profile.description,
        settings=json.loads(json.dumps(dataclasses.asdict(profile))),
        cells=records, machine=machine(),
        data_dir=(str(pathlib.Path(d).resolve()) if d
                  else os.environ.get("HINT_JAX_DATA_DIR")), **extra)
    self.manifest = Manifest(self.out, profile, header, {
        "id": uuid.uuid4().hex,   # a name, not data: any unique string
        "argv": list(self.opts.invocation), "started": _now(),
        "cells_skipped": num_done, "cells_run": 0, "finished": None})
    self.note(f"experiment {profile.table}/{profile.name}: {len(records)} "
              f"cells, {num_done} already finished, in {self.out}")

  def train_cells(self, todo, where, only=None, trained=0):
    """Trains the cells of ``todo`` (those in ``only``, if given; numbered
    by their place in ``todo``; ``where(cell)`` names it in the notes)
    that no other invocation has finished or is training. ``trained``:
    cells this invocation trained before. Returns that count with these
    added."""
    out = self.out
    for i, cell in enumerate(todo):
      if only is not None and cell not in only:
        continue
      d = cell_dir(out, cell)
      name = (f"experiment [{i + 1}/{len(todo)}] {cell.dataset}, "
              f"{where(cell)}, {cell.method.label}, trial {cell.trial}")
      with lock(out, cell.cell_id, wait=False) as mine:
        if not mine or (d / "result.json").exists():
          self.note(f"{name}: {'finished' if mine else 'being trained'} by "
                    "another invocation, skipped")
          continue
        d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(d / "cell.json", cell_record(out, cell))
        self.note(name)
        t0 = time.perf_counter()
        self.train(self.cell_argv(cell))
        trained += 1
        self.manifest.record(cells_run=trained)
        self.note(f"experiment: cell done in {time.perf_counter() - t0:.0f} "
                  "s")
    return trained

  def _close(self, outcome, cells, trained) -> Outcome:
    self.manifest.record(finished=_now())
    outcome.finished = sum((cell_dir(self.out, c) / "result.json").exists()
                           for c in cells)
    outcome.trained = trained
    return outcome

  # ------------------------------------------------------- targeted
  def _run_targeted(self, profile) -> Outcome:
    """Table III: crafts each (attack, trial)'s targeted set once
    (resumable, shared by that trial's methods), then trains every cell
    on it."""
    opts, out = self.opts, self.out
    if (opts.poison_files or opts.ratios is not None
        or opts.datasets is not None):
      raise ConfigError(f"{profile.table} crafts its own targeted sets: "
                        "poison files, ratios and datasets do not apply")
    cells = profile.cells()
    for name, wanted, have in (
        ("methods", opts.methods, {c.method.label for c in cells}),
        ("attacks", opts.attacks, {c.attack for c in cells})):
      unknown = sorted(set(wanted or ()) - have)
      if unknown:
        raise ConfigError(f"{name}: {unknown} not in this profile "
                          f"({', '.join(sorted(have))})")
    done = [(cell_dir(out, c) / "result.json").exists() for c in cells]
    chosen = [self._chosen_targeted(c) for c in cells]
    todo = [c for c, d, ch in zip(cells, done, chosen) if ch and not d]
    # Every hit gets its clean twin, trained after the cells (so a hit the
    # twin shares is not counted as the poisons' doing); the twins known
    # now are listed with the cells.
    twins = self._twins(cells)
    twin_done = [(cell_dir(out, c) / "result.json").exists() for c in twins]
    outcome = self._statuses(profile, cells + twins, done + twin_done,
                             chosen + [self._chosen_targeted(c)
                                       for c in twins])
    if opts.dry_run:
      return outcome
    self._check_data_dir()
    make_out(out)
    self._open_manifest(profile, [cell_record(out, c)
                                  for c in cells + twins], sum(done))
    # A set another invocation is crafting is passed over at first: this
    # one crafts the others and trains their cells meanwhile, then waits
    # for it and trains its cells.
    sets = list({c.poison_id: c for c in todo}.values())
    busy = {c.poison_id for c in sets if not self.craft_set(c, False)}
    where = lambda cell: cell.attack
    trained = self.train_cells(todo, where,
                               [c for c in todo if c.poison_id not in busy])
    for cell in sets:
      if cell.poison_id in busy:
        self.craft_set(cell, True)
    trained = self.train_cells(todo, where,
                               [c for c in todo if c.poison_id in busy],
                               trained)
    twins = self._twins(cells)
    self.manifest.set_cells([cell_record(out, c) for c in cells + twins])
    twin_todo = [c for c in twins if self._chosen_targeted(c)
                 and not (cell_dir(out, c) / "result.json").exists()]
    for cell in {c.poison_id: c for c in twin_todo}.values():
      self.twin_set(cell)
    trained = self.train_cells(
        twin_todo, lambda cell: f"{cell.attack}, clean twin", None, trained)
    return self._close(outcome, cells + twins, trained)

  def _twins(self, cells) -> list:
    """The clean twins of ``cells``' finished hits."""
    return [c.twin() for c in cells if is_hit(self.out, c)]

  def _chosen_targeted(self, cell) -> bool:
    """Whether the filters of the invocation select ``cell`` (or twin)."""
    opts = self.opts
    return ((opts.methods is None or cell.method.label in opts.methods)
            and (opts.attacks is None or cell.attack in opts.attacks)
            and (opts.trials is None or cell.trial < opts.trials))

  def twin_set(self, twin):
    """Writes the clean twin of ``twin``'s targeted set unless it exists."""
    f = targeted_poison_file(self.out, twin)
    with lock(self.out, f"{twin.poison_id}_clean"):
      if f.exists():
        return
      splits = self._clean_split(twin.dataset, twin.poison_key()["split"])
      crafted = targeted_poison_file(self.out, dataclasses.replace(
          twin, clean_twin=False))
      attacks.save_poisoned(f, attacks.clean_twin(
          attacks.load_poisoned(crafted), splits.x_train))
      self.note(f"experiment: {twin.attack} trial {twin.trial}: clean twin "
                f"of its set written to {f}")

  def craft_set(self, cell, wait) -> bool:
    """Crafts ``cell``'s targeted set unless its file exists; False (and
    nothing done) when another invocation holds the set's lock and not
    ``wait``."""
    f = targeted_poison_file(self.out, cell)
    with lock(self.out, cell.poison_id, wait=wait) as mine:
      if not mine:
        self.note(f"experiment: {cell.attack} trial {cell.trial}'s set is "
                  "being crafted by another invocation; coming back to it "
                  "later")
        return False
      if not f.exists():
        argv = (["target-poison"] + cell.craft_flags() + ["--out", str(f)]
                + ["--victim-dir", str(self.out / "victims")]
                + self._common())
        self.note(f"experiment: crafting {cell.attack} for trial "
                  f"{cell.trial} into {f}")
        self.target_poison(argv)
    return True


def run(opts: RunOptions, flags: Flags, reporter=None) -> Outcome:
  """Runs ``opts``' cells (see `Runner`); returns what it did."""
  return Runner(opts, flags, reporter).run()


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")
