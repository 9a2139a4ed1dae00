"""`load_dataset`: one entry point for every dataset and source."""

import pathlib

from hint_jax import paths
from hint_jax.data import cifar
from hint_jax.data import custom
from hint_jax.data import dataset as dataset_lib
from hint_jax.data import digits
from hint_jax.data import metadata
from hint_jax.data import mnist
from hint_jax.data import npz
from hint_jax.data import tfds_source
from hint_jax.errors import DataError

SOURCES = {
    "mnist": ("auto", "idx", "npz", "tfds"),
    "cifar10": ("auto", "pickle", "jpeg", "npz", "tfds"),
    "digits": ("auto", "sklearn", "npz"),
}


def npz_path(name: str, root) -> pathlib.Path:
  """The project-format file for `name`: `<root>/<name>/<name>.npz`, else
  `<root>/<name>.npz` (the first that exists; the former if neither does)."""
  root = pathlib.Path(root)
  candidates = [root / name / f"{name}.npz", root / f"{name}.npz"]
  return next((p for p in candidates if p.is_file()), candidates[0])


def load_dataset(name: str, data_dir=None, source: str = "auto"
                 ) -> dataset_lib.Dataset:
  """Loads a dataset from local files; never downloads.

  The data directory is `data_dir`, else `$HINT_JAX_DATA_DIR`, else
  `~/.cache/hint_jax/data` (see `hint_jax.paths`). Sources:

  * mnist: "idx" (= "auto"): the four official IDX files, `.gz` or raw, in
    `<data_dir>/mnist/` or `<data_dir>/`; see `hint_jax.data.mnist.load`.
  * cifar10: "pickle", "jpeg", or "auto", which takes the first of: a complete
    official `cifar-10-batches-py/`; the `cifar10-jpeg-q75` image archive or
    folder (all 60000 images, lossy, decoded once and cached); the exact-pixel
    `cifar-10-batches-py-subset/`. See `hint_jax.data.cifar.load`.
  * digits: "sklearn" (= "auto"): scikit-learn's bundled 8x8 digits with a
    fixed 1397/400 train/test split; see `hint_jax.data.digits.load`.
  * "npz" (any name): the project's format, `<data_dir>/<name>/<name>.npz` or
    `<data_dir>/<name>.npz`, written by `save_npz`.
  * "tfds" (mnist, cifar10): a dataset already prepared by tensorflow-datasets
    (needs `pip install hint_jax[tfds]`); see `hint_jax.data.tfds_source`.
  * your own data: ``name`` = "folder:PATH" (an image folder
    ``PATH/{train,test}/<class>/``, any class names) or "npz:PATH" (x_train,
    y_train, x_test, y_test arrays); ``data_dir`` and ``source`` do not
    apply. See `hint_jax.data.custom`.

  Args:
    name: "mnist", "cifar10" or "digits" (case-insensitive), or
      "folder:PATH" / "npz:PATH".
    data_dir: the data directory, overriding `$HINT_JAX_DATA_DIR`.
    source: one of `SOURCES[name]`.

  Returns:
    The `Dataset`; `Dataset.source` names the kind and path actually used.

  Raises:
    DataError: unknown name or source, or missing or corrupt files.
  """
  name = metadata.check_name(name)
  if not metadata.is_builtin(name):
    if str(source).lower() != "auto":
      raise DataError(f"--source does not apply to {name}: the name says "
                      f"where the data is")
    return custom.load(name)
  source = str(source).lower()
  if source not in SOURCES[name]:
    raise DataError(f"unknown source {source!r} for {name}; valid sources are: "
                    f"{', '.join(SOURCES[name])}")
  root = paths.data_dir(data_dir)
  if source == "npz":
    return npz.load_npz(npz_path(name, root), name=name)
  if source == "tfds":
    return tfds_source.load(name, root)
  if name == "mnist":
    return mnist.load(root)
  if name == "cifar10":
    return cifar.load(root, source)
  return digits.load()
