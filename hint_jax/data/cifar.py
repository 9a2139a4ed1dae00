"""CIFAR-10 from the official pickle batches or from an image-folder copy.

Files are looked up in `<data_dir>/cifar10/` and then `<data_dir>/`:

* pickle: `cifar-10-batches-py/` (official) or `cifar-10-batches-py-subset/`,
  each holding `data_batch_1..5`, `test_batch` and optionally `batches.meta`.
  A batch may hold fewer rows than the official 10000 (its label list may be
  longer than its data; only the first `len(data)` labels are used).
* jpeg: an image-folder tree `{train,test}/<class>/*.{png,jpg,jpeg}` named
  `cifar10-jpeg-q75` or `cifar10-images`, as `.tar.gz`, `.tgz`, `.tar` or an
  extracted folder. Decoded once and cached as `.npz` in
  `hint_jax.paths.cache_dir()`. If `labels-exact.npz` (arrays `y_train`,
  `y_test` in official order) lies next to it or in `<data_dir>/cifar10/`,
  the images are put back in the official order; otherwise they stay ordered
  by class, then file name (`meta["order"]` says which).
"""

import codecs
import pathlib
import pickle

import numpy as np

from hint_jax.data import cache
from hint_jax.data import dataset as dataset_lib
from hint_jax.data import image_folder
from hint_jax.data import metadata
from hint_jax.errors import DataError

PICKLE_DIRS = ("cifar-10-batches-py", "cifar-10-batches-py-subset")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
OFFICIAL_BATCH_ROWS = 10000

IMAGE_TREE_STEMS = ("cifar10-jpeg-q75", "cifar10-images")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
LABELS_FILE = "labels-exact.npz"

try:
  from numpy._core import multiarray as _multiarray
except ImportError:  # numpy < 2
  from numpy.core import multiarray as _multiarray
_reconstruct = getattr(_multiarray, "_reconstruct")

# The only globals a CIFAR batch pickle needs (written by numpy 1 or 2;
# Python 3 protocol-2 pickles spell bytes as `_codecs.encode(str, "latin1")`).
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): codecs.encode,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
}


class _NumpyUnpickler(pickle.Unpickler):
  """Unpickler that only builds numpy arrays and plain Python containers."""

  def find_class(self, module, name):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise pickle.UnpicklingError(
          f"forbidden global {module}.{name}") from None


def _unpickle(path: pathlib.Path):
  """Unpickles a CIFAR batch file with `encoding="bytes"` semantics."""
  try:
    with open(path, "rb") as f:
      return _NumpyUnpickler(f, encoding="bytes").load()
  except Exception as e:  # pylint: disable=broad-except
    # Any failure to unpickle (truncation, garbage, forbidden globals) is a
    # corrupt file from the user's point of view.
    raise DataError(f"CIFAR-10 file {path} is corrupt "
                    f"({dataset_lib.error_reason(e)}); replace it "
                    f"with the official {path.name} in {path.parent}") from None


def _key(record: dict, name: str):
  """Looks up a bytes or str key in an unpickled dict."""
  for key in (name.encode(), name):
    if key in record:
      return record[key]
  raise KeyError(name)


def read_batch(path) -> tuple:
  """Reads one pickle batch.

  Args:
    path: a `data_batch_*` or `test_batch` file.

  Returns:
    `(x, y)`: uint8 images (N, 32, 32, 3) and int32 labels (N,).

  Raises:
    DataError: the file is corrupt or has the wrong content.
  """
  path = pathlib.Path(path)
  record = _unpickle(path)
  fix = f"replace it with the official {path.name} in {path.parent}"
  try:
    data = np.asarray(_key(record, "data"))
    labels = np.asarray(_key(record, "labels"))
  except (KeyError, TypeError):
    raise DataError(f"CIFAR-10 file {path} lacks the 'data' or 'labels' "
                    f"entry; {fix}") from None
  if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
    raise DataError(f"CIFAR-10 file {path} holds data {data.dtype} "
                    f"{data.shape}, not uint8 (N, 3072); {fix}")
  n = data.shape[0]
  if labels.ndim != 1 or labels.shape[0] < n:
    raise DataError(f"CIFAR-10 file {path} has {labels.shape[0]} labels for "
                    f"{n} images; {fix}")
  labels = labels[:n]
  if n and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0
            or labels.max() > 9):
    raise DataError(f"CIFAR-10 file {path} has labels outside 0..9; {fix}")
  x = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(x), labels.astype(np.int32)


def batch_rows(folder) -> int:
  """Rows per batch announced by `batches.meta` (10000 if absent)."""
  path = pathlib.Path(folder) / META_FILE
  if not path.is_file():
    return OFFICIAL_BATCH_ROWS
  record = _unpickle(path)
  try:
    return int(_key(record, "num_cases_per_batch"))
  except (KeyError, TypeError, ValueError):
    return OFFICIAL_BATCH_ROWS


def has_batches(folder) -> bool:
  """Whether a folder holds all six batch files."""
  folder = pathlib.Path(folder)
  names = TRAIN_BATCHES + (TEST_BATCH,)
  return all((folder / name).is_file() for name in names)


def read_pickle_folder(folder) -> dataset_lib.Dataset:
  """Reads a `cifar-10-batches-py`-style folder.

  Args:
    folder: the folder with `data_batch_1..5` and `test_batch`.

  Returns:
    A `Dataset`; `meta["complete"]` is True when every batch holds the number
    of rows `batches.meta` announces (10000 if there is no meta file).

  Raises:
    DataError: a batch file is missing or corrupt.
  """
  folder = pathlib.Path(folder)
  parts = {}
  for name in TRAIN_BATCHES + (TEST_BATCH,):
    path = folder / name
    if not path.is_file():
      raise DataError(f"CIFAR-10 file {path} is missing; put the official "
                      f"{name} in {folder}")
    parts[name] = read_batch(path)
  rows = batch_rows(folder)
  complete = all(x.shape[0] == rows for x, _ in parts.values())
  x_train = np.concatenate([parts[n][0] for n in TRAIN_BATCHES])
  y_train = np.concatenate([parts[n][1] for n in TRAIN_BATCHES])
  x_test, y_test = parts[TEST_BATCH]
  x_train, y_train, x_test, y_test = dataset_lib.check_arrays(
      x_train, y_train, x_test, y_test, 10, folder)
  return dataset_lib.Dataset(
      x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
      num_classes=10, name="cifar10", source=f"cifar10-pickle:{folder}",
      class_names=metadata.CIFAR10_CLASS_NAMES,
      meta={"complete": complete, "lossy": False, "order": "official"})


def search_dirs(root) -> list:
  """Folders searched: `<root>/cifar10`, then `<root>`."""
  root = pathlib.Path(root)
  return [root / "cifar10", root]


def find_pickle_folders(root) -> list:
  """Existing pickle folders under `root`, official before subset."""
  return [d / name for name in PICKLE_DIRS for d in search_dirs(root)
          if (d / name).is_dir()]


def find_image_trees(root) -> list:
  """Existing image-folder archives or folders under `root`, archives first."""
  found = []
  for d in search_dirs(root):
    for stem in IMAGE_TREE_STEMS:
      found.extend(d / (stem + s) for s in ARCHIVE_SUFFIXES
                   if (d / (stem + s)).is_file())
  for d in search_dirs(root):
    found.extend(d / stem for stem in IMAGE_TREE_STEMS if (d / stem).is_dir())
  return found


def _official_labels(source: pathlib.Path, root):
  """Returns (y_train, y_test, path) from labels-exact.npz, or None."""
  for folder in [source.parent] + search_dirs(root):
    path = folder / LABELS_FILE
    if path.is_file():
      break
  else:
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      y_train, y_test = f["y_train"], f["y_test"]
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"CIFAR-10 label file {path} is corrupt "
                    f"({dataset_lib.error_reason(e)}); "
                    f"replace it or remove it from {path.parent}") from None
  return y_train, y_test, path


def _to_official_order(x, y, labels):
  """Reorders class-sorted images to match `labels`; None if they disagree.

  Image k of class c in the folder is the k-th image of class c in the
  official order, so the folder's class-sorted sequence maps onto the
  official positions sorted stably by label.
  """
  labels = np.asarray(labels)
  if labels.shape != y.shape:
    return None
  positions = np.argsort(labels, kind="stable")
  if not np.array_equal(labels[positions], y):
    return None
  x_out = np.empty_like(x)
  x_out[positions] = x
  return x_out, labels.astype(np.int32)


def read_image_tree(source, root) -> dataset_lib.Dataset:
  """Reads a CIFAR-10 image-folder tree, decoding once and caching it.

  Args:
    source: an archive or extracted folder (see module docstring).
    root: the data directory, also searched for `labels-exact.npz`.

  Returns:
    A `Dataset` whose `meta` records `cache` ("hit", "miss" or "off"),
    `cache_path`, `order` ("official" or "class-folder") and `lossy`.

  Raises:
    DataError: the tree or an image in it is malformed.
  """
  source = pathlib.Path(source)
  path = cache.cache_path("cifar10-images", source)
  arrays = cache.load(path)
  status = "hit"
  if arrays is None or set(arrays) != {"x_train", "y_train", "x_test",
                                       "y_test"}:
    tree = image_folder.read_tree(source, metadata.CIFAR10_CLASS_NAMES)
    arrays = {"x_train": tree["train"][0], "y_train": tree["train"][1],
              "x_test": tree["test"][0], "y_test": tree["test"][1]}
    status = "miss" if cache.save(path, arrays) else "off"
  x_train, y_train, x_test, y_test = dataset_lib.check_arrays(
      arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
      10, source)
  order = "class-folder"
  labels = _official_labels(source, root)
  if labels is not None:
    train = _to_official_order(x_train, y_train, labels[0])
    test = _to_official_order(x_test, y_test, labels[1])
    if train is not None and test is not None:
      (x_train, y_train), (x_test, y_test) = train, test
      order = "official"
  return dataset_lib.Dataset(
      x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
      num_classes=10, name="cifar10", source=f"cifar10-jpeg:{source}",
      class_names=metadata.CIFAR10_CLASS_NAMES,
      meta={"cache": status, "cache_path": str(path) if path else None,
            "order": order, "lossy": True,
            "labels_file": str(labels[2]) if labels else None})


def _missing(root, what: str) -> DataError:
  root = pathlib.Path(root)
  return DataError(
      f"CIFAR-10 data not found in {root / 'cifar10'} or {root}; put {what} in "
      f"{root / 'cifar10'}, or point HINT_JAX_DATA_DIR / --data-dir at the "
      f"folder that holds cifar10/")


def load(root, source: str = "auto") -> dataset_lib.Dataset:
  """Loads CIFAR-10 from local files.

  With `source="auto"` the first of these that exists is used:

  1. an official `cifar-10-batches-py/` folder holding all six batches, each
     as long as `batches.meta` says (10000 rows): the exact dataset;
  2. an image-folder copy (`cifar10-jpeg-q75.tar.gz` or folder, or
     `cifar10-images...`): all 60000 images, possibly lossy;
  3. any remaining pickle folder (e.g. `cifar-10-batches-py-subset/`): exact
     pixels, but only as many rows as it holds.

  The choice is recorded in `Dataset.source`.

  Args:
    root: the data directory.
    source: "auto", "pickle" or "jpeg".

  Returns:
    The `Dataset`.

  Raises:
    DataError: nothing usable was found, or a chosen file is corrupt.
  """
  root = pathlib.Path(root)
  pickles = find_pickle_folders(root)
  trees = find_image_trees(root)
  if source == "pickle":
    if not pickles:
      raise _missing(root, "the official cifar-10-batches-py/ folder")
    return read_pickle_folder(pickles[0])
  if source == "jpeg":
    if not trees:
      raise _missing(root, "cifar10-jpeg-q75.tar.gz (an image-folder archive)")
    return read_image_tree(trees[0], root)
  partial = None
  for folder in pickles:
    if folder.name == PICKLE_DIRS[0] and has_batches(folder):
      partial = read_pickle_folder(folder)
      if partial.meta["complete"]:
        return partial
      break
  if trees:
    return read_image_tree(trees[0], root)
  if partial is not None:
    return partial
  if pickles:
    return read_pickle_folder(pickles[0])
  raise _missing(root, "the official cifar-10-batches-py/ folder (or "
                 "cifar10-jpeg-q75.tar.gz, or cifar-10-batches-py-subset/)")
