"""Mixed poisoning and the poisoned-dataset file.

A poisoned training set is stored as one ``.npz`` file:

============  ===============================================================
key           content
============  ===============================================================
x             uint8 images (n, H, W, C): the training set as the victim gets it
y             int32 labels (n,) in [0, num_classes) (poisons keep true labels)
attack_id     int8 (n,): index into ``meta["attacks"]``, or -1 for clean
clean_index   int64 (n,): each example's index in the clean training split
meta          a 0-d string array holding JSON: ``format`` (FORMAT),
              ``num_classes``, ``ratio``, ``seed``, ``attacks`` (a list of
              dicts, each with at least ``name`` and ``eps``) and any details
              (steps, victim, reductions from the paper's settings)
target_x      targeted attacks only: the uint8 target image (H, W, C); the
              metadata then holds ``target``: ``{"index": its index in the
              test split, "true_class", "intended_class"}`` (and may say
              more, e.g. the scenario)
============  ===============================================================

`load_poisoned` validates all of it and, given the clean images, that every
poisoned image is within its attack's budget and every clean one unchanged.
"""

import dataclasses
import hashlib
import json
import math
import os
import pathlib

import jax
import numpy as np

from hint_jax.attacks.untargeted import budget_levels
from hint_jax.errors import ConfigError, DataError

FORMAT = "hint_jax.poison/1"


def assign_attacks(n: int, ratio: float, num_attacks: int,
                   key: jax.Array) -> np.ndarray:
  """Which examples each attack poisons: ``round(ratio n)`` examples chosen
  by a keyed permutation, split into ``num_attacks`` equal shares (the first
  shares one larger when it does not divide). Returns int8 (n,) attack ids,
  -1 for clean. MNIST, p = 0.6, 4 attacks: 23600 clean + 4 x 8850."""
  if not 0.0 <= ratio <= 1.0:
    raise ConfigError(f"poison ratio must be in [0, 1], got {ratio}")
  if not 1 <= num_attacks <= 127:
    raise ConfigError(f"need 1 to 127 attacks, got {num_attacks}")
  m = int(round(ratio * n))
  perm = np.asarray(jax.random.permutation(key, n))
  ids = np.full(n, -1, np.int8)
  for a, share in enumerate(np.array_split(perm[:m], num_attacks)):
    ids[share] = a
  return ids


@dataclasses.dataclass
class PoisonedSet:
  x: np.ndarray
  y: np.ndarray
  attack_id: np.ndarray
  clean_index: np.ndarray
  meta: dict
  target_x: np.ndarray | None = None

  @property
  def target(self) -> dict | None:
    """``{"index", "true_class", "intended_class", ...}`` of a targeted
    attack's file, else None."""
    return self.meta.get("target")

  def counts(self) -> dict:
    """Examples per attack name, and "clean"."""
    out = {"clean": int(np.sum(self.attack_id < 0))}
    for a, att in enumerate(self.meta["attacks"]):
      out[att["name"]] = int(np.sum(self.attack_id == a))
    return out


def save_poisoned(path, ps: PoisonedSet) -> None:
  """Writes ``ps`` atomically (validated first)."""
  validate(ps, str(path))
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp.npz")
  extra = {} if ps.target_x is None else {"target_x": ps.target_x}
  np.savez_compressed(tmp, x=ps.x, y=ps.y.astype(np.int32),
                      attack_id=ps.attack_id.astype(np.int8),
                      clean_index=ps.clean_index.astype(np.int64),
                      meta=np.array(json.dumps({**ps.meta, "format": FORMAT},
                                               sort_keys=True)), **extra)
  os.replace(tmp, path)


def load_poisoned(path, clean_x: np.ndarray | None = None) -> PoisonedSet:
  """Reads and validates a poisoned-dataset file.

  Args:
    path: the ``.npz`` file.
    clean_x: the clean training split's images; if given, every poisoned
      image must be within its attack's budget of ``clean_x[clean_index]``
      and every clean example identical to it.

  Raises:
    DataError: naming the file and what is wrong.
  """
  path = pathlib.Path(path)
  if not path.exists():
    raise DataError(f"poisoned-dataset file {path} does not exist")
  try:
    with open(path, "rb") as f:
      magic = f.read(4)
  except OSError as e:
    raise DataError(f"cannot read poisoned-dataset file {path}: "
                    f"{e.strerror or e}") from None
  if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
    raise DataError(f"{path} is not a poisoned-dataset file (not an .npz "
                    "archive); make one with `hint-jax poison` or "
                    "`hint-jax target-poison`")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = {"x", "y", "attack_id", "clean_index", "meta"} - set(f.files)
      if missing:
        raise DataError(f"{path} is not a poisoned-dataset file: missing "
                        f"{sorted(missing)}")
      arrays = {k: f[k] for k in f.files}
  except DataError:
    raise
  except Exception as e:  # zipfile, zlib and numpy each raise their own
    raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}); "
                    "craft it again") from None
  try:
    meta = json.loads(str(arrays["meta"]))
  except ValueError:
    raise DataError(f"{path}: its metadata is not valid JSON") from None
  ps = PoisonedSet(arrays["x"], arrays["y"], arrays["attack_id"],
                   arrays["clean_index"], meta, arrays.get("target_x"))
  validate(ps, str(path), clean_x)
  return ps


def _attack_eps(att, a, bad) -> float:
  """The attack's budget from its metadata entry, or ``bad(...)``."""
  eps = att.get("eps") if isinstance(att, dict) else None
  if isinstance(eps, bool) or not isinstance(eps, (int, float)):
    bad(f"attack {a} of the metadata has no numeric budget 'eps'")
  if not (math.isfinite(eps) and 0.0 <= eps <= 1.0):
    bad(f"attack {a}'s budget eps is {eps}, not in [0, 1]")
  return float(eps)


def validate(ps: PoisonedSet, where: str, clean_x=None) -> None:
  """Raises DataError (prefixed by ``where``) unless ``ps`` is well formed
  and, given the clean images, within its budgets (see `load_poisoned`)."""
  def bad(msg):
    raise DataError(f"{where}: {msg}")

  meta = ps.meta
  if not isinstance(meta, dict) or not isinstance(meta.get("attacks"), list):
    bad("metadata must be a dict with a list of attacks")
  if meta.get("format", FORMAT) != FORMAT:
    bad(f"unknown format {meta.get('format')!r} (expected {FORMAT})")
  x, y, ids, idx = ps.x, ps.y, ps.attack_id, ps.clean_index
  if x.dtype != np.uint8 or x.ndim != 4:
    bad(f"images must be uint8 (n, H, W, C), got {x.dtype} {x.shape}")
  n = len(x)
  for name, arr in (("y", y), ("attack_id", ids), ("clean_index", idx)):
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
      bad(f"{name} must be {n} integers, got {arr.dtype} {arr.shape}")
  k = meta.get("num_classes")
  if not isinstance(k, int) or k < 2:
    bad("metadata needs num_classes >= 2")
  if n and (y.min() < 0 or y.max() >= k):
    bad(f"labels outside [0, {k})")
  attacks = meta["attacks"]
  for a, att in enumerate(attacks):
    _attack_eps(att, a, bad)
  if n and (ids.min() < -1 or ids.max() >= len(attacks)):
    bad(f"attack ids outside [-1, {len(attacks)})")
  if len(np.unique(idx)) != n or (n and idx.min() < 0):
    bad("clean_index must be distinct non-negative indices")
  target = meta.get("target")
  if (target is None) != (ps.target_x is None):
    bad("a targeted file needs both the target image (target_x) and the "
        "target's metadata")
  if target is not None:
    tx = ps.target_x
    if tx.dtype != np.uint8 or tx.shape != x.shape[1:]:
      bad(f"the target image must be uint8 {x.shape[1:]}, got {tx.dtype} "
          f"{tx.shape}")
    fields = ("index", "true_class", "intended_class")
    if not isinstance(target, dict) or not all(
        isinstance(target.get(f), int) for f in fields):
      bad(f"target metadata needs integer {', '.join(fields)}")
    if target["index"] < 0:
      bad("the target's test index must be >= 0")
    for f in fields[1:]:
      if not 0 <= target[f] < k:
        bad(f"target {f} outside [0, {k})")
    if target["true_class"] == target["intended_class"]:
      bad("the intended class must differ from the target's true class")
  if clean_x is None:
    return
  if n and idx.max() >= len(clean_x):
    bad(f"clean_index points past the {len(clean_x)} clean images")
  if clean_x.shape[1:] != x.shape[1:]:
    bad(f"image shape {x.shape[1:]} differs from the clean images' "
        f"{clean_x.shape[1:]}")
  diff = np.abs(x.astype(np.int16) - clean_x[idx].astype(np.int16))
  per_example = diff.reshape(n, -1).max(axis=1) if n else diff
  if np.any(per_example[ids < 0] != 0):
    bad("examples marked clean differ from the clean images")
  for a, att in enumerate(attacks):
    levels = budget_levels(_attack_eps(att, a, bad))
    worst = per_example[ids == a].max(initial=0)
    if worst > levels:
      bad(f"attack {att['name']} moves a pixel by {worst} grey levels, more "
          f"than its budget eps = {att['eps']} ({levels} levels)")


def poisoned_training_images(ps: PoisonedSet, x_train: np.ndarray,
                             y_train: np.ndarray, where: str = "poisoned set"
                             ) -> np.ndarray:
  """The clean training split's images with the poisons written in.

  Checks first that ``ps`` was made from this split (same images, by the
  sha256 in its metadata when present, same size and labels), then its
  budgets against the clean images.

  Raises:
    DataError: if the file belongs to another split or breaks its budget.
  """
  sha = hashlib.sha256(np.ascontiguousarray(x_train).tobytes()).hexdigest()
  if (ps.meta.get("clean_sha256") not in (None, sha)
      or len(ps.x) != len(x_train)):
    raise DataError(f"{where} was made from another training split (the "
                    f"dataset, --split-seed, --num-val and --subset must "
                    f"match those it was crafted with)")
  validate(ps, where, x_train)
  if np.any(y_train[ps.clean_index] != ps.y):
    raise DataError(f"{where}: labels differ from the training split's")
  x = np.array(x_train)
  x[ps.clean_index] = ps.x
  return x


def lower_ratio(ps: PoisonedSet, ratio: float, x_clean: np.ndarray,
                key: jax.Array) -> PoisonedSet:
  """The same poisons at a lower poison ratio.

  Keeps, for each attack, a keyed random subset of its poisoned examples and
  writes the clean image back into every other row, so that the result has
  the shares `assign_attacks` gives at ``ratio``: ``round(ratio n)`` poisoned
  examples split equally across the attacks (the first shares one larger).
  Every attack here crafts each example independently of the others (PGD
  and DAP against a fixed victim, DURP from one vector per class,
  DeepConfuse from a generator trained on the whole clean split), so the
  result is distributed as a set crafted at ``ratio`` from the same victim
  and generator; an experiment crafts once, at p = 1. With the same key the
  kept subsets are nested: those of a lower ratio are among a higher one's.

  Args:
    ps: a poisoned set of the whole training split (``clean_index`` a
      permutation of ``arange(n)``).
    ratio: the new poison ratio, at most ``ps``'s.
    x_clean: the clean training images ``ps`` was made from.
    key: chooses the kept examples.

  Raises:
    ConfigError: if ``ratio`` is outside [0, ps's ratio] or an attack has
      fewer examples than its new share.
    DataError: if ``x_clean`` is not the split ``ps`` was made from or
      ``ps`` breaks its budgets.
  """
  old = ps.meta.get("ratio")
  if not isinstance(old, (int, float)) or not 0.0 <= ratio <= old:
    raise ConfigError(f"a poisoned set at ratio {old} can only be lowered "
                      f"to a ratio in [0, {old}], got {ratio}")
  n, k = len(ps.x), len(ps.meta["attacks"])
  sha = hashlib.sha256(np.ascontiguousarray(x_clean).tobytes()).hexdigest()
  if (len(x_clean) != n or ps.meta.get("clean_sha256") not in (None, sha)
      or not np.array_equal(np.sort(ps.clean_index), np.arange(n))):
    raise DataError("lower_ratio needs a poisoned set of the whole training "
                    "split and that split's clean images")
  validate(ps, "the poisoned set to lower", x_clean)
  m = int(round(ratio * n))
  shares = [len(s) for s in np.array_split(np.arange(m), k)]
  new_ids = np.full(n, -1, np.int8)   # indexed like ps's rows
  for a, share in enumerate(shares):
    rows = np.flatnonzero(ps.attack_id == a)
    if share > len(rows):
      raise ConfigError(f"attack {ps.meta['attacks'][a]['name']} has "
                        f"{len(rows)} examples, fewer than its share {share} "
                        f"at ratio {ratio}")
    keep = np.asarray(jax.random.permutation(jax.random.fold_in(key, a),
                                             len(rows)))[:share]
    new_ids[rows[keep]] = a
  x = np.where((new_ids >= 0)[:, None, None, None], ps.x,
               x_clean[ps.clean_index])
  attacks_meta = [dict(att, count=int(np.sum(new_ids == a)))
                  for a, att in enumerate(ps.meta["attacks"])]
  meta = dict(ps.meta, ratio=ratio, attacks=attacks_meta,
              lowered_from={"ratio": old, "counts": ps.counts()})
  out = PoisonedSet(x.astype(np.uint8), ps.y, new_ids, ps.clean_index, meta,
                    ps.target_x)
  validate(out, "the lowered poisoned set", x_clean)
  return out


def clean_twin(ps: PoisonedSet, x_clean: np.ndarray) -> PoisonedSet:
  """``ps`` with every poisoned image replaced by its clean image: the same
  rows, labels and (targeted) target, no poisons. A victim trained on it
  with the same flags and seed as one trained on ``ps`` is that victim's
  clean twin: where the twin also gives the target the intended class,
  the poisons are not what did it.

  Raises:
    DataError: if ``x_clean`` is not the split ``ps`` was made from or
      ``ps`` breaks its budgets.
  """
  sha = hashlib.sha256(np.ascontiguousarray(x_clean).tobytes()).hexdigest()
  if ps.meta.get("clean_sha256") not in (None, sha):
    raise DataError("clean_twin needs the clean training split the poisoned "
                    "set was made from")
  validate(ps, "the poisoned set to twin", x_clean)
  attacks_meta = [dict(att, count=0) for att in ps.meta["attacks"]]
  meta = dict(ps.meta, ratio=0.0, attacks=attacks_meta,
              clean_twin_of={"ratio": ps.meta.get("ratio"),
                             "counts": ps.counts()})
  out = PoisonedSet(np.array(x_clean[ps.clean_index], np.uint8), ps.y,
                    np.full(len(ps.x), -1, np.int8), ps.clean_index, meta,
                    ps.target_x)
  validate(out, "the clean twin", x_clean)
  return out


def check_target(ps: PoisonedSet, x_test: np.ndarray, y_test: np.ndarray,
                 where: str = "poisoned set") -> None:
  """Raises DataError unless ``ps``'s target is image ``index`` of this
  test split, with its true class (a file crafted on another split)."""
  t = ps.target
  if t is None:
    return
  i = t["index"]
  if (i >= len(x_test) or not np.array_equal(x_test[i], ps.target_x)
      or int(y_test[i]) != t["true_class"]):
    raise DataError(f"{where}: its target is not test image {i} of this "
                    "test split (the dataset, --split-seed and --num-val "
                    "must match those it was crafted with)")
