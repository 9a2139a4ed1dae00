"""The user's own datasets: ``folder:PATH`` and ``npz:PATH``.

* ``folder:PATH``: an image folder (or a tar archive of one) laid out as
  ``PATH/{train,test}/<class>/<image>``, any class names (labels follow
  the class folders under train/ in natural order), PNG or JPEG, one size.
  Images whose three channels are equal everywhere load as one channel.
* ``npz:PATH``: an ``.npz`` with ``x_train``, ``y_train``, ``x_test``,
  ``y_test``: uint8 images (N, H, W) or (N, H, W, C), integer labels from 0;
  optionally ``class_names`` (a string array). A file written by
  `hint_jax.data.save_npz` loads too.

Either is checked as the built-in datasets are (`dataset.check_arrays`),
and problems are one-line `DataError`s saying what to fix.
"""

import hashlib
import pathlib

import numpy as np

from hint_jax.data import dataset as dataset_lib
from hint_jax.data import image_folder
from hint_jax.data import metadata
from hint_jax.data import npz as npz_lib
from hint_jax.errors import DataError

_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load(name: str) -> dataset_lib.Dataset:
  """Loads the user dataset ``name`` (``folder:PATH`` or ``npz:PATH``);
  the `Dataset`'s ``name`` is ``name`` itself."""
  kind, path = metadata.parse_custom(name)
  path = pathlib.Path(path).expanduser()
  if not path.exists():
    raise DataError(f"dataset {name}: {path} does not exist")
  if kind == "folder":
    return _load_folder(name, path)
  return _load_npz(name, path)


def _load_folder(name, path) -> dataset_lib.Dataset:
  if not (path.is_dir() or path.is_file()):
    raise DataError(f"dataset {name}: {path} is neither a folder nor an "
                    f"archive")
  try:
    splits = image_folder.read_tree(path)
  except DataError:
    raise
  except OSError as e:
    raise DataError(f"dataset {name}: cannot read {path} "
                    f"({dataset_lib.error_reason(e)})") from None
  train_classes = splits["class_names"]
  (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
  gray = _all_grey(x_train) and _all_grey(x_test)
  if gray:
    x_train, x_test = x_train[..., :1], x_test[..., :1]
  num_classes = len(train_classes)
  if num_classes < 2:
    raise DataError(f"dataset {name}: {path}/train holds {num_classes} class "
                    f"folder(s); a classifier needs at least 2")
  x_train, y_train, x_test, y_test = dataset_lib.check_arrays(
      x_train, y_train, x_test, y_test, num_classes, path)
  return dataset_lib.Dataset(
      x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
      num_classes=num_classes, name=name, source=f"folder:{path}",
      class_names=tuple(train_classes),
      meta={"grayscale": gray})


def _all_grey(x) -> bool:
  """Whether the RGB images ``x`` have equal channels at every pixel."""
  return bool(np.all(x[..., :1] == x[..., 1:]))


def _load_npz(name, path) -> dataset_lib.Dataset:
  try:
    with np.load(path, allow_pickle=False) as f:
      files = set(f.files)
      if "metadata" in files:  # the project's own format
        own = npz_lib.load_npz(path)
        return dataset_lib.Dataset(
            x_train=own.x_train, y_train=own.y_train, x_test=own.x_test,
            y_test=own.y_test, num_classes=own.num_classes, name=name,
            source=f"npz:{path}", class_names=own.class_names,
            meta=own.meta)
      missing = [k for k in _ARRAYS if k not in files]
      if missing:
        raise DataError(f"dataset {name}: {path} lacks {', '.join(missing)}; "
                        f"save x_train, y_train, x_test, y_test in it")
      arrays = {k: f[k] for k in _ARRAYS}
      names = f["class_names"] if "class_names" in files else None
  except DataError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"dataset {name}: {path} is not a readable .npz "
                    f"({dataset_lib.error_reason(e)})") from None
  for k in ("x_train", "x_test"):
    if arrays[k].ndim == 3:
      arrays[k] = arrays[k][..., None]
    if arrays[k].dtype != np.uint8:
      raise DataError(f"dataset {name}: {k} in {path} is {arrays[k].dtype}; "
                      f"store uint8 images (0-255)")
  for k in ("y_train", "y_test"):
    if not np.issubdtype(arrays[k].dtype, np.integer):
      raise DataError(f"dataset {name}: {k} in {path} is {arrays[k].dtype}; "
                      f"store integer labels from 0")
  if arrays["y_train"].size == 0:
    raise DataError(f"dataset {name}: {path} has no training images")
  num_classes = int(max(arrays["y_train"].max(),
                        arrays["y_test"].max(initial=0))) + 1
  if names is not None:
    names = tuple(str(c) for c in np.asarray(names).ravel())
    if len(names) < num_classes:
      raise DataError(f"dataset {name}: {path} names {len(names)} classes "
                      f"but its labels reach {num_classes - 1}")
    num_classes = len(names)
  else:
    names = tuple(str(i) for i in range(num_classes))
  if num_classes < 2:
    raise DataError(f"dataset {name}: {path} has one class; a classifier "
                    f"needs at least 2")
  x_train, y_train, x_test, y_test = dataset_lib.check_arrays(
      arrays["x_train"], arrays["y_train"], arrays["x_test"],
      arrays["y_test"], num_classes, path)
  return dataset_lib.Dataset(
      x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
      num_classes=num_classes, name=name, source=f"npz:{path}",
      class_names=names, meta={})


def content_sha256(name: str) -> str:
  """The sha256 of a user dataset's contents: the file's bytes (``npz:``,
  a ``folder:`` archive), or every file under the folder, by relative
  path and bytes in path order (renaming or changing an image changes
  it; a file's modification time does not)."""
  kind, path = metadata.parse_custom(name)
  path = pathlib.Path(path).expanduser()
  h = hashlib.sha256()
  try:
    if path.is_file():
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
    elif kind == "folder" and path.is_dir():
      for p in sorted(q for q in path.rglob("*") if q.is_file()):
        rel = p.relative_to(path).as_posix().encode()
        h.update(len(rel).to_bytes(8, "little") + rel)
        data = p.read_bytes()
        h.update(len(data).to_bytes(8, "little") + data)
    else:
      raise DataError(f"dataset {name}: {path} does not exist")
  except OSError as e:
    raise DataError(f"dataset {name}: cannot read {path} "
                    f"({dataset_lib.error_reason(e)})") from None
  return h.hexdigest()
