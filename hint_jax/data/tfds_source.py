"""MNIST and CIFAR-10 from prepared tensorflow-datasets (no download)."""

import pathlib

import numpy as np

from hint_jax.data import dataset as dataset_lib
from hint_jax.data import metadata
from hint_jax.errors import DataError

TFDS_SUBDIR = "tensorflow_datasets"


def tfds_dir(root):
  """`<root>/tensorflow_datasets` if it exists, else None (tfds's default)."""
  path = pathlib.Path(root) / TFDS_SUBDIR
  return path if path.is_dir() else None


def load(name: str, root) -> dataset_lib.Dataset:
  """Loads a dataset already prepared by tensorflow-datasets.

  Uses `tfds.data_source(name, split=..., download=False)`, so nothing is ever
  downloaded: the dataset must have been built in the array_record format
  (`tfds build mnist --file_format=array_record`, on a machine with network)
  into `<root>/tensorflow_datasets/` or tfds's own data dir
  (`$TFDS_DATA_DIR`, default `~/tensorflow_datasets`). tensorflow itself is not
  needed.

  Args:
    name: "mnist" or "cifar10".
    root: the data directory.

  Returns:
    The `Dataset` with uint8 NHWC images and int32 labels.

  Raises:
    DataError: tensorflow-datasets is missing or the dataset is not prepared.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise DataError(
        "source='tfds' needs tensorflow-datasets, which is not installed; run "
        "`pip install hint_jax[tfds]`, or use the local-file source with files "
        f"under {root}") from None
  folder = tfds_dir(root)
  where = folder or "tfds's data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
  arrays = {}
  for split in ("train", "test"):
    try:
      source = tfds.data_source(name, split=split, data_dir=folder,
                                download=False, try_gcs=False)
      records = [source[i] for i in range(len(source))]
    except Exception as e:  # pylint: disable=broad-except
      # tfds raises assorted types for a dataset that is not prepared.
      raise DataError(
          f"tensorflow-datasets {name} ({split}) not available in {where} "
          f"({dataset_lib.error_reason(e)[:120]}); build it with "
          f"`tfds build {name} --file_format=array_record` into "
          f"{pathlib.Path(root) / TFDS_SUBDIR}, or use another source"
      ) from None
    if not records:
      raise DataError(f"tensorflow-datasets {name} ({split}) in {where} is "
                      f"empty; rebuild it with `tfds build {name} "
                      f"--file_format=array_record`")
    x = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    y = np.asarray([int(r["label"]) for r in records], np.int32)
    arrays[split] = (x, y)
  x_train, y_train, x_test, y_test = dataset_lib.check_arrays(
      *arrays["train"], *arrays["test"], 10, where)
  return dataset_lib.Dataset(
      x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
      num_classes=10, name=name, source=f"{name}-tfds:{where}",
      class_names=metadata.class_names(name),
      meta={"tfds_data_dir": str(where)})
