"""The project's own `.npz` dataset format.

A file holds `x_train`, `y_train`, `x_test`, `y_test` and `metadata`, a JSON
string with `format` ("hint_jax.dataset"), `version`, `name`, `num_classes`,
`class_names`, `source` and `meta`. It is read without pickle.
"""

import json
import os
import pathlib
import tempfile

import numpy as np

from hint_jax.data import dataset as dataset_lib
from hint_jax.errors import DataError

FORMAT = "hint_jax.dataset"
VERSION = 1
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def save_npz(path, dataset: dataset_lib.Dataset) -> pathlib.Path:
  """Writes a dataset to `path` (atomically, uncompressed for fast loading).

  Args:
    path: the destination file; ".npz" is appended if missing.
    dataset: the dataset; its `meta` must be JSON-serialisable.

  Returns:
    The path written.
  """
  path = pathlib.Path(path)
  if path.suffix != ".npz":
    path = path.with_name(path.name + ".npz")
  path.parent.mkdir(parents=True, exist_ok=True)
  info = {"format": FORMAT, "version": VERSION, "name": dataset.name,
          "num_classes": int(dataset.num_classes),
          "class_names": list(dataset.class_names), "source": dataset.source,
          "meta": dataset.meta}
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, x_train=dataset.x_train, y_train=dataset.y_train,
               x_test=dataset.x_test, y_test=dataset.y_test,
               metadata=np.asarray(json.dumps(info)))
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def load_npz(path, name=None) -> dataset_lib.Dataset:
  """Reads a dataset written by `save_npz`, validating it.

  Args:
    path: the `.npz` file.
    name: if given, the dataset name the file must hold.

  Returns:
    The `Dataset`; its `source` is "<name>-npz:<path>" and its `meta` has the
    stored source under "saved_from".

  Raises:
    DataError: the file is missing, unreadable, or its arrays or metadata are
      inconsistent.
  """
  path = pathlib.Path(path)
  fix = (f"re-create it with hint_jax.data.save_npz or remove it from "
         f"{path.parent}")
  if not path.is_file():
    raise DataError(f"dataset file {path} not found; create it with "
                    f"hint_jax.data.save_npz or pick another source")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in _ARRAYS + ("metadata",) if k not in f.files]
      if missing:
        raise DataError(f"dataset file {path} lacks {', '.join(missing)}; "
                        f"{fix}")
      arrays = {k: f[k] for k in _ARRAYS}
      info = json.loads(str(f["metadata"]))
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Zip, npy-header and JSON errors all mean the file is damaged.
    raise DataError(f"dataset file {path} is corrupt "
                    f"({dataset_lib.error_reason(e)}); {fix}") from None
  if not isinstance(info, dict) or info.get("format") != FORMAT:
    raise DataError(f"dataset file {path} is not a {FORMAT} file; {fix}")
  try:
    num_classes = int(info["num_classes"])
    class_names = tuple(str(c) for c in info["class_names"])
    stored_name = str(info["name"])
  except (KeyError, TypeError, ValueError):
    raise DataError(f"dataset file {path} has incomplete metadata; {fix}"
                    ) from None
  if len(class_names) != num_classes or num_classes < 1:
    raise DataError(f"dataset file {path} names {len(class_names)} classes "
                    f"but num_classes is {num_classes}; {fix}")
  if name is not None and stored_name != name:
    raise DataError(f"dataset file {path} holds {stored_name!r}, not "
                    f"{name!r}; put a {name} file there")
  x_train, y_train, x_test, y_test = dataset_lib.check_arrays(
      *(arrays[k] for k in _ARRAYS), num_classes, path)
  meta = dict(info.get("meta") or {})
  meta["saved_from"] = info.get("source")
  return dataset_lib.Dataset(
      x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
      num_classes=num_classes, name=stored_name,
      source=f"{stored_name}-npz:{path}", class_names=class_names, meta=meta)
