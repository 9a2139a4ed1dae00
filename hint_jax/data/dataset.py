"""The in-memory dataset container and its consistency checks."""

import dataclasses

import numpy as np

from hint_jax.errors import DataError


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A labelled image dataset split into its official train and test parts.

  Attributes:
    x_train: uint8 images, shape (N, H, W, C).
    y_train: int32 labels in [0, num_classes), shape (N,).
    x_test: uint8 images, shape (M, H, W, C).
    y_test: int32 labels, shape (M,).
    num_classes: number of classes.
    name: dataset name ("mnist", "cifar10" or "digits").
    source: where the arrays came from, as "<kind>:<path>", e.g.
      "mnist-idx:/data/mnist" or "cifar10-jpeg:/data/cifar10-jpeg-q75.tar.gz".
    class_names: the class names, in label order.
    meta: free-form details of the source (checksum verification, cache use,
      image order, ...); JSON-serialisable.
  """

  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  name: str
  source: str
  class_names: tuple
  meta: dict = dataclasses.field(default_factory=dict)

  @property
  def image_shape(self) -> tuple:
    """The (H, W, C) shape of one image."""
    return tuple(self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.x_train.shape[0])

  @property
  def num_test(self) -> int:
    return int(self.x_test.shape[0])


def error_reason(error: BaseException) -> str:
  """The first line of an exception's message, or its type's name."""
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def check_arrays(x_train, y_train, x_test, y_test, num_classes, origin):
  """Checks dtypes, shapes and label ranges; returns canonical arrays.

  Args:
    x_train: training images, (N, H, W, C) uint8.
    y_train: training labels, (N,) integers.
    x_test: test images, (M, H, W, C) uint8.
    y_test: test labels, (M,) integers.
    num_classes: labels must lie in [0, num_classes).
    origin: the file or folder the arrays came from, for error messages.

  Returns:
    `(x_train, y_train, x_test, y_test)` with labels cast to int32.

  Raises:
    DataError: an array has the wrong dtype, rank, length or label range.
  """
  out = []
  for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4:
      raise DataError(f"{origin}: x_{split} must be uint8 of shape "
                      f"(N, H, W, C), got {x.dtype} {x.shape}; re-create the "
                      f"file")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
      raise DataError(f"{origin}: y_{split} must be 1-D integers, got "
                      f"{y.dtype} {y.shape}; re-create the file")
    if y.shape[0] != x.shape[0]:
      raise DataError(f"{origin}: {x.shape[0]} {split} images but {y.shape[0]} "
                      f"labels; re-create the file")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise DataError(f"{origin}: {split} labels span [{y.min()}, {y.max()}], "
                      f"outside [0, {num_classes}); re-create the file")
    out.extend([x, y.astype(np.int32)])
  if out[0].shape[1:] != out[2].shape[1:]:
    raise DataError(f"{origin}: train images are {out[0].shape[1:]} but test "
                    f"images are {out[2].shape[1:]}; re-create the file")
  return tuple(out)
