"""The 8x8 handwritten digits bundled with scikit-learn (always offline)."""

import numpy as np

from hint_jax.data import dataset as dataset_lib
from hint_jax.data import metadata

SPLIT_SEED = 0
NUM_TEST = 400


def load() -> dataset_lib.Dataset:
  """Loads `sklearn.datasets.load_digits()` as a fixed train/test split.

  The 1797 images (values 0..16) are scaled to uint8 by `round(v * 255 / 16)`
  and shaped (N, 8, 8, 1). A `np.random.default_rng(SPLIT_SEED)` permutation
  of all indices puts its first 1397 indices in the training set and its last
  `NUM_TEST` = 400 in the test set; each set keeps the original order.

  Returns:
    A `Dataset` with 1397 training and 400 test images.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  bunch = datasets.load_digits()
  x = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)[..., None]
  y = bunch.target.astype(np.int32)
  perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
  train = np.sort(perm[:len(x) - NUM_TEST])
  test = np.sort(perm[len(x) - NUM_TEST:])
  return dataset_lib.Dataset(
      x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test],
      num_classes=10, name="digits", source="digits-sklearn:load_digits",
      class_names=metadata.DIGITS_CLASS_NAMES,
      meta={"split_seed": SPLIT_SEED})
