"""``hint-jax experiment TABLE --profile P --out DIR``: run a paper table.

Layout of DIR (shared by every table and profile run into it):

* ``cells/<cell id>/`` -- one ``hint-jax train`` run per cell (its
  ``result.json``, ``metrics.jsonl``, checkpoint and ``cell.json`` with the
  cell's settings). A cell whose ``result.json`` exists is finished and is
  skipped; an unfinished one resumes from its last finished epoch. Cells of
  different tables with the same settings are the same directory.
* ``poison/<dataset>_<digest>/p1.npz`` -- the mixed-attack set crafted once
  (``hint-jax poison`` at p = 1, resumable), and ``p<ratio>.npz`` for each
  lower ratio, a keyed subset of it (`hint_jax.attacks.lower_ratio`; the
  subsets are nested: the poisons at p = 0.3 are among those at p = 0.6).
* ``experiment_<table>_<profile>.json`` -- the profile, its cells, the
  machine and every command that ran it; ``hint-jax report DIR`` reads these.

Several invocations may run on one DIR at once (say, one crafting the next
trial's poisons while another trains a finished trial's cells): the
manifest is re-read and changed under a lock at every write, so none of
them drops another's records; a cell or targeted set that another
invocation is working on is left to it (``.locks/``). The locks are
``fcntl`` locks, released when their holder exits, killed or not; where
``fcntl`` does not exist (Windows) there are none, and invocations must run
one at a time.
"""

import argparse
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
import uuid

try:
  import fcntl
except ImportError:  # Windows: no locks (see the module docstring)
  fcntl = None

import jax

from hint_jax import attacks
from hint_jax import experiment as exp
from hint_jax.cli import poison_cmd, target_poison_cmd, train_cmd
from hint_jax.cli.common import (check_out, info, make_out, positive_int,
                                 write_json_atomic)
from hint_jax.errors import ConfigError

POISON_LOWER_STREAM = 7   # key of lower_ratio: fold_in(key(poison seed), 7)


def register(sub):
  p = sub.add_parser(
      "experiment", help="run a paper table (every cell a resumable train "
      "run; finished cells are skipped)")
  p.add_argument("table", choices=exp.TABLES)
  p.add_argument("--profile", choices=exp.PROFILE_NAMES, required=True,
                 help="quick: embedded digits, minutes; cpu: real MNIST on a "
                 "CPU, hours; paper: the paper's settings (accelerator)")
  p.add_argument("--out", required=True, help="experiment directory")
  p.add_argument("--data-dir", default=None,
                 help="directory with the dataset files (default: "
                 "$HINT_JAX_DATA_DIR)")
  p.add_argument("--poison-file", action="append", default=[],
                 metavar="FILE", help="use this p = 1 poisoned set (from "
                 "`hint-jax poison --ratio 1`) for its dataset instead of "
                 "crafting one; repeatable, one per dataset")
  p.add_argument("--ratios", type=_floats, default=None,
                 help="run only the cells at these p (comma list); the "
                 "report shows what has finished")
  p.add_argument("--methods", type=_labels, default=None,
                 help="run only these methods (comma list of report labels, "
                 "e.g. none,HINT,ATDA)")
  p.add_argument("--attacks", type=_labels, default=None,
                 help="table3: run only these attacks (comma list of gm, mp, "
                 "bp, fc)")
  p.add_argument("--trials", type=positive_int, default=None,
                 help="table3: run only the first N trials")
  p.add_argument("--dry-run", action="store_true",
                 help="list the cells and which are finished; run nothing")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def _floats(text):
  try:
    return [float(t) for t in text.split(",") if t.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of "
                                     f"numbers")


def _labels(text):
  return [t.strip() for t in text.split(",") if t.strip()]


def given_poisons(paths, profile) -> dict:
  """``{dataset: (path, sha256)}`` of ``--poison-file`` sets, checked to be
  well-formed p = 1 sets of the profile's datasets."""
  given = {}
  for path in paths:
    ps = attacks.load_poisoned(path)
    dataset = ps.meta.get("dataset")
    if dataset not in profile.datasets:
      raise ConfigError(f"--poison-file {path} is a {dataset!r} set; this "
                        f"profile runs {', '.join(profile.datasets)}")
    if ps.meta.get("ratio") != 1.0:
      raise ConfigError(f"--poison-file {path} has ratio "
                        f"{ps.meta.get('ratio')}; give a p = 1 set (lower "
                        f"ratios are kept subsets of it)")
    if dataset in given:
      raise ConfigError(f"two --poison-file sets for {dataset}")
    digest = hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    given[dataset] = (pathlib.Path(path), digest)
  return given


def machine() -> dict:
  return {"platform": platform.platform(), "machine": platform.machine(),
          "cpus": os.cpu_count(), "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()],
          "jax_version": jax.__version__, "python": platform.python_version()}


def _parser():
  from hint_jax.cli.main import build_parser  # pylint: disable=g-import-not-at-top
  return build_parser()


def _common(args):
  return ((["--data-dir", args.data_dir] if args.data_dir else [])
          + (["--no-progress"] if args.no_progress else []))


def poison_dir(out, profile, dataset) -> pathlib.Path:
  key = profile.poison_key(dataset)
  return out / "poison" / f"{dataset}_{exp.configs.digest(key)}"


def poison_file(out, profile, dataset, ratio) -> pathlib.Path:
  return poison_dir(out, profile, dataset) / f"p{ratio:g}.npz"


def ensure_poison(args, out, profile, dataset, ratios, log, given=None):
  """Crafts (or finds, or copies from ``given``, a path) the p = 1 set of
  ``dataset`` and writes each lower ratio of ``ratios``."""
  ratios = sorted({r for r in ratios if r > 0})
  if not ratios:
    return
  full = poison_file(out, profile, dataset, 1.0)
  if not full.exists() and given is not None:
    full.parent.mkdir(parents=True, exist_ok=True)
    tmp = full.with_name(".p1.npz.tmp")
    shutil.copyfile(given, tmp)
    os.replace(tmp, full)
    write_json_atomic(full.parent / "poison.json",
                      dict(profile.poison_key(dataset),
                           copied_from=str(pathlib.Path(given).resolve())))
    info(f"experiment: using {given} as the {dataset} p = 1 set")
  elif not full.exists():
    argv = (["poison", "--dataset", dataset, "--ratio", "1", "--seed",
             str(profile.poison_seed)] + list(profile.poison_flags)
            + profile.poison_key(dataset)["split"]
            + ["--out", str(full)] + _common(args))
    info(f"experiment: crafting the poisoned {dataset} set (p = 1) into "
         f"{full}")
    write_json_atomic(full.parent / "poison.json",
                      profile.poison_key(dataset))
    log(argv)
    poison_cmd.run(_parser().parse_args(argv))
  lower = [r for r in ratios if r < 1.0 and
           not poison_file(out, profile, dataset, r).exists()]
  if not lower:
    return
  ps = attacks.load_poisoned(full)
  split_argv = (["train", "--dataset", dataset, "--out", str(out)]
                + profile.poison_key(dataset)["split"]
                + (["--data-dir", args.data_dir] if args.data_dir else []))
  _, splits = train_cmd.load_splits(_parser().parse_args(split_argv))
  key = jax.random.fold_in(jax.random.key(profile.poison_seed),
                           POISON_LOWER_STREAM)
  for r in lower:
    low = attacks.lower_ratio(ps, r, splits.x_train, key)
    attacks.save_poisoned(poison_file(out, profile, dataset, r), low)
    info(f"experiment: {dataset} p = {r:g}: {low.counts()} (kept from the "
         f"p = 1 set)")


def cell_dir(out, cell) -> pathlib.Path:
  return out / "cells" / cell.cell_id


def cell_argv(args, out, cell) -> list:
  argv = ["train"] + cell.train_flags()
  if isinstance(cell, exp.TargetedCell):
    argv += ["--poison", str(targeted_poison_file(out, cell))]
    if cell.attack in exp.configs.TRANSFER_ATTACKS:
      # The extractor the set was crafted on, trained once (not part of
      # the cell's identity: it only saves the re-training).
      argv += ["--victim-dir", str(out / "victims")]
  elif cell.ratio > 0:
    argv += ["--poison", str(poison_file(out, cell.profile, cell.dataset,
                                         cell.ratio))]
  return argv + ["--out", str(cell_dir(out, cell))] + _common(args)


def cell_record(out, cell) -> dict:
  if isinstance(cell, exp.TargetedCell):
    return {"id": cell.cell_id, "dataset": cell.dataset,
            "attack": cell.attack, "method": cell.method.label,
            "defense": cell.method.defense, "trial": cell.trial,
            "poison": cell.poison_id,
            "dir": str(cell_dir(out, cell).relative_to(out)),
            "key": cell.key()}
  return {"id": cell.cell_id, "dataset": cell.dataset, "ratio": cell.ratio,
          "method": cell.method.label, "defense": cell.method.defense,
          "trial": cell.trial, "dir": str(cell_dir(out, cell).relative_to(
              out)), "key": cell.key()}


def manifest_path(out, profile) -> pathlib.Path:
  return out / f"experiment_{profile.table}_{profile.name}.json"


def run(args):
  profile = exp.get_profile(args.table, args.profile)
  out = check_out(args.out)   # created once the arguments have passed
  if isinstance(profile, exp.TargetedProfile):
    return run_targeted(args, profile, out)
  if args.attacks is not None or args.trials is not None:
    raise ConfigError("--attacks and --trials apply to table3 only")
  given = given_poisons(args.poison_file, profile)
  profile = dataclasses.replace(profile, poison_files=tuple(
      (d, sha) for d, (_, sha) in sorted(given.items())))
  cells = profile.cells()
  for name, wanted, have in (
      ("--ratios", args.ratios, {c.ratio for c in cells}),
      ("--methods", args.methods, {c.method.label for c in cells})):
    unknown = sorted(set(wanted or ()) - have, key=str)
    if unknown:
      raise ConfigError(f"{name}: {unknown} not in this profile "
                        f"({', '.join(str(h) for h in sorted(have, key=str))})")
  done = [(cell_dir(out, c) / "result.json").exists() for c in cells]
  chosen = [(args.ratios is None or c.ratio in args.ratios)
            and (args.methods is None or c.method.label in args.methods)
            for c in cells]
  if args.dry_run:
    return _dry_run(args, cells, done, chosen)
  _check_data_dir(args)
  make_out(out)
  manifest = _open_manifest(
      args, out, profile, [cell_record(out, c) for c in cells], sum(done),
      poison_files={d: str(p.resolve()) for d, (p, _) in given.items()})
  for dataset in profile.datasets:
    ratios = [c.ratio for c, d, ch in zip(cells, done, chosen)
              if c.dataset == dataset and ch and not d]
    with _lock(out, f"poison-{dataset}"):
      ensure_poison(args, out, profile, dataset, ratios, manifest.log,
                    given.get(dataset, (None,))[0])
  todo = [c for c, d, ch in zip(cells, done, chosen) if ch and not d]
  _run_cells(args, out, profile, cells, todo, manifest,
             lambda c: f"p = {c.ratio:g}")
  return 0


def _dry_run(args, cells, done, chosen) -> int:
  for c, d, ch in zip(cells, done, chosen):
    print(f"{'done   ' if d else 'pending' if ch else 'skipped'} "
          f"{c.cell_id}")
  print(f"{args.table} --profile {args.profile}: {len(cells)} cells, "
        f"{sum(done)} finished")
  return 0


def _check_data_dir(args):
  if args.data_dir is not None and not pathlib.Path(args.data_dir).is_dir():
    raise ConfigError(f"--data-dir {args.data_dir} is not a directory")


@contextlib.contextmanager
def _lock(out, name, wait=True):
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


class _Manifest:
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
    with _lock(self.out, self.path.name):
      manifest = (json.loads(self.path.read_text()) if self.path.exists()
                  else {"commands": [], "invocations": []})
      change(manifest)
      write_json_atomic(self.path, manifest)

  def log(self, argv):
    """Appends a command run by this invocation."""
    self._update(lambda m: m["commands"].append("hint-jax "
                                                + shlex.join(argv)))

  def record(self, **changes):
    """Updates this invocation's record (``cells_run``, ``finished``)."""
    def change(manifest):
      for inv in manifest["invocations"]:
        if inv.get("id") == self.id:
          inv.update(changes)
    self._update(change)


def _open_manifest(args, out, profile, records, num_done, **extra):
  """Records this invocation in the profile's manifest (started if absent)
  and returns its `_Manifest`."""
  header = dict(
      table=profile.table, profile=profile.name,
      description=profile.description,
      settings=json.loads(json.dumps(dataclasses.asdict(profile))),
      cells=records, machine=machine(),
      data_dir=(str(pathlib.Path(args.data_dir).resolve()) if args.data_dir
                else os.environ.get("HINT_JAX_DATA_DIR")), **extra)
  manifest = _Manifest(out, profile, header, {
      "id": uuid.uuid4().hex,   # a name, not data: any unique string
      "argv": invocation_argv(args), "started": _now(),
      "cells_skipped": num_done, "cells_run": 0, "finished": None})
  info(f"experiment {profile.table}/{profile.name}: {len(records)} cells, "
       f"{num_done} already finished, in {out}")
  return manifest


def _run_cells(args, out, profile, cells, todo, manifest, where):
  """Trains every cell of ``todo`` (``where(cell)`` names it in the
  progress lines) that no other invocation has finished or is training,
  and closes this invocation's record."""
  trained = _train_cells(args, out, todo, manifest, where)
  _close(out, profile, cells, manifest, trained)


def _train_cells(args, out, todo, manifest, where, only=None, trained=0):
  """`_run_cells`'s training: the cells of ``todo`` (those in ``only``, if
  given; numbered by their place in ``todo``). ``trained``: cells this
  invocation trained before. Returns that count with these added."""
  for i, cell in enumerate(todo):
    if only is not None and cell not in only:
      continue
    d = cell_dir(out, cell)
    name = (f"experiment [{i + 1}/{len(todo)}] {cell.dataset}, "
            f"{where(cell)}, {cell.method.label}, trial {cell.trial}")
    with _lock(out, cell.cell_id, wait=False) as mine:
      if not mine or (d / "result.json").exists():
        info(f"{name}: {'finished' if mine else 'being trained'} by "
             "another invocation, skipped")
        continue
      d.mkdir(parents=True, exist_ok=True)
      write_json_atomic(d / "cell.json", cell_record(out, cell))
      info(name)
      argv = cell_argv(args, out, cell)
      manifest.log(argv)
      t0 = time.perf_counter()
      train_cmd.run(_parser().parse_args(argv))
      trained += 1
      manifest.record(cells_run=trained)
      info(f"experiment: cell done in {time.perf_counter() - t0:.0f} s")
  return trained


def _close(out, profile, cells, manifest, trained):
  manifest.record(finished=_now())
  finished = sum((cell_dir(out, c) / "result.json").exists() for c in cells)
  print(f"experiment {profile.table}/{profile.name}: {finished} of "
        f"{len(cells)} cells finished ({trained} run now); "
        f"`hint-jax report {out}` writes the tables")


def targeted_poison_file(out, cell) -> pathlib.Path:
  return out / "poison" / "targeted" / f"{cell.poison_id}.npz"


def run_targeted(args, profile, out):
  """Table III: crafts each (attack, trial)'s targeted set once (resumable,
  shared by that trial's methods), then trains every cell on it."""
  if args.poison_file or args.ratios is not None:
    raise ConfigError(f"{profile.table} crafts its own targeted sets: "
                      "--poison-file and --ratios do not apply")
  cells = profile.cells()
  for name, wanted, have in (
      ("--methods", args.methods, {c.method.label for c in cells}),
      ("--attacks", args.attacks, {c.attack for c in cells})):
    unknown = sorted(set(wanted or ()) - have)
    if unknown:
      raise ConfigError(f"{name}: {unknown} not in this profile "
                        f"({', '.join(sorted(have))})")
  done = [(cell_dir(out, c) / "result.json").exists() for c in cells]
  chosen = [(args.methods is None or c.method.label in args.methods)
            and (args.attacks is None or c.attack in args.attacks)
            and (args.trials is None or c.trial < args.trials)
            for c in cells]
  todo = [c for c, d, ch in zip(cells, done, chosen) if ch and not d]
  if args.dry_run:
    return _dry_run(args, cells, done, chosen)
  _check_data_dir(args)
  make_out(out)
  manifest = _open_manifest(
      args, out, profile, [cell_record(out, c) for c in cells], sum(done))
  # A set another invocation is crafting is passed over at first: this
  # one crafts the others and trains their cells meanwhile, then waits for
  # it and trains its cells.
  sets = list({c.poison_id: c for c in todo}.values())
  busy = {c.poison_id for c in sets
          if not _craft_set(args, out, c, manifest, False)}

  def where(cell):
    return cell.attack

  trained = _train_cells(args, out, todo, manifest, where,
                         [c for c in todo if c.poison_id not in busy])
  for cell in sets:
    if cell.poison_id in busy:
      _craft_set(args, out, cell, manifest, True)
  trained = _train_cells(args, out, todo, manifest, where,
                         [c for c in todo if c.poison_id in busy], trained)
  _close(out, profile, cells, manifest, trained)
  return 0


def _craft_set(args, out, cell, manifest, wait) -> bool:
  """Crafts ``cell``'s targeted set unless its file exists; False (and
  nothing done) when another invocation holds the set's lock and not
  ``wait``."""
  f = targeted_poison_file(out, cell)
  with _lock(out, cell.poison_id, wait=wait) as mine:
    if not mine:
      info(f"experiment: {cell.attack} trial {cell.trial}'s set is being "
           "crafted by another invocation; coming back to it later")
      return False
    if not f.exists():
      argv = (["target-poison"] + cell.craft_flags() + ["--out", str(f)]
              + ["--victim-dir", str(out / "victims")] + _common(args))
      info(f"experiment: crafting {cell.attack} for trial {cell.trial} "
           f"into {f}")
      manifest.log(argv)
      target_poison_cmd.run(_parser().parse_args(argv))
  return True


def invocation_argv(args) -> list:
  """This command as typed, rebuilt from ``args`` (``sys.argv`` is not it
  when `main` is called in-process)."""
  argv = ["hint-jax", "experiment", args.table, "--profile", args.profile,
          "--out", str(args.out)]
  if args.data_dir:
    argv += ["--data-dir", args.data_dir]
  for f in args.poison_file:
    argv += ["--poison-file", str(f)]
  if args.ratios is not None:
    argv += ["--ratios", ",".join(f"{r:g}" for r in args.ratios)]
  if args.methods is not None:
    argv += ["--methods", ",".join(args.methods)]
  if args.attacks is not None:
    argv += ["--attacks", ",".join(args.attacks)]
  if args.trials is not None:
    argv += ["--trials", str(args.trials)]
  return argv + (["--no-progress"] if args.no_progress else [])


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")

