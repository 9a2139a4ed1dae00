"""Train/validation splits drawn from a dataset's training set."""

import dataclasses

import numpy as np

from hint_jax.data import dataset as dataset_lib
from hint_jax.data import metadata
from hint_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
  """A dataset split into train, validation and test parts.

  Attributes:
    x_train, y_train: the training part.
    x_val, y_val: the validation part, drawn from the original training set.
    x_test, y_test: the official test set, unchanged.
    train_idx: int64 indices of the training part into the original training
      set (ascending).
    val_idx: int64 indices of the validation part into the original training
      set (ascending).
    seed: the seed of the validation draw.
    subset_seed: the seed of the training subset draw, or None if the whole
      remaining training set is kept.
    num_classes, name, class_names: as in the `Dataset`.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_val: np.ndarray
  y_val: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  train_idx: np.ndarray
  val_idx: np.ndarray
  seed: int
  subset_seed: object = None
  num_classes: int = 10
  name: str = ""
  class_names: tuple = ()


OFFICIAL_TRAIN_SIZE = {"mnist": 60000, "cifar10": 50000}


def split_train_val(dataset: dataset_lib.Dataset, num_val=None, seed: int = 0,
                    subset=None) -> Splits:
  """Holds out a validation set from the training set.

  `np.random.default_rng(seed).permutation(N)` of the N training indices is
  drawn; its first `num_val` indices form the validation set, the rest the
  training part. Both keep the original order (indices ascending).

  Args:
    dataset: the dataset.
    num_val: validation size; None for `default_num_val(dataset.name, n)`,
      scaled by n / official size for a partial copy (`meta["complete"]` is
      False), e.g. 102 of the 5085 images of the exact-pixel CIFAR-10 subset.
    seed: seed of the permutation.
    subset: if given, keep only this many training images, chosen by
      `take_subset(splits, subset, seed)`.

  Returns:
    The `Splits`.

  Raises:
    ConfigError: `num_val` is negative or leaves no training images, or
      `subset` is larger than the training part.
  """
  n = dataset.x_train.shape[0]
  if num_val is None:
    num_val = metadata.default_num_val(dataset.name, n)
    official = OFFICIAL_TRAIN_SIZE.get(dataset.name)
    if dataset.meta.get("complete") is False and official and n < official:
      # A partial copy keeps the paper's validation fraction (1000 of the
      # official training set), not 1000 images out of a few thousand.
      num_val = max(1, round(num_val * n / official))
  num_val = _check_count(num_val, "num_val")
  if num_val >= n:
    raise ConfigError(f"num_val={num_val} leaves no training images: "
                      f"{dataset.name} has {n}; choose num_val < {n}")
  perm = np.random.default_rng(seed).permutation(n)
  val_idx = np.sort(perm[:num_val]).astype(np.int64)
  train_idx = np.sort(perm[num_val:]).astype(np.int64)
  splits = Splits(
      x_train=dataset.x_train[train_idx], y_train=dataset.y_train[train_idx],
      x_val=dataset.x_train[val_idx], y_val=dataset.y_train[val_idx],
      x_test=dataset.x_test, y_test=dataset.y_test, train_idx=train_idx,
      val_idx=val_idx, seed=int(seed), num_classes=dataset.num_classes,
      name=dataset.name, class_names=tuple(dataset.class_names))
  if subset is not None:
    splits = take_subset(splits, subset, seed)
  return splits


def take_subset(splits: Splits, n, seed: int = 0) -> Splits:
  """Keeps `n` training images: the first `n` of a seeded permutation.

  The validation and test parts are unchanged; the kept training images stay
  in their original order.

  Args:
    splits: the splits.
    n: number of training images to keep.
    seed: seed of `np.random.default_rng(seed).permutation`.

  Returns:
    New `Splits` with `subset_seed=seed`.

  Raises:
    ConfigError: `n` is negative or larger than the training part.
  """
  n = _check_count(n, "subset")
  available = splits.x_train.shape[0]
  if n > available:
    raise ConfigError(f"subset={n} is larger than the {available} training "
                      f"images left after validation; choose subset <= "
                      f"{available}")
  keep = np.sort(np.random.default_rng(seed).permutation(available)[:n])
  return dataclasses.replace(
      splits, x_train=splits.x_train[keep], y_train=splits.y_train[keep],
      train_idx=splits.train_idx[keep], subset_seed=int(seed))


def _check_count(value, what: str) -> int:
  try:
    ok = not isinstance(value, bool) and int(value) == value and value >= 0
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ConfigError(f"{what} must be a non-negative integer, got {value!r}")
  return int(value)
