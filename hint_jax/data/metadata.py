"""Names, class names and normalisation constants of the supported datasets.

Besides the built-in names, a dataset may be the user's own, named by where
it lies: ``folder:PATH`` (an image folder, ``PATH/{train,test}/<class>/*``
with any class names) or ``npz:PATH`` (an ``.npz`` with ``x_train``,
``y_train``, ``x_test``, ``y_test``). Such names use the ``"generic"``
defaults (training preset, HINT schedule), see `defaults_key`.
"""

from typing import Optional, Tuple

from hint_jax.errors import DataError

DATASET_NAMES = ("mnist", "cifar10", "digits")
CUSTOM_KINDS = ("folder", "npz")
GENERIC = "generic"

CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                       "frog", "horse", "ship", "truck")
MNIST_CLASS_NAMES = tuple(str(i) for i in range(10))
DIGITS_CLASS_NAMES = MNIST_CLASS_NAMES

CLASS_NAMES = {
    "mnist": MNIST_CLASS_NAMES,
    "cifar10": CIFAR10_CLASS_NAMES,
    "digits": DIGITS_CLASS_NAMES,
}

# Per-channel statistics of the training images scaled to [0, 1].
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
# The CIFAR-10 values are the ones the spec prescribes (the widely used
# constants); the true per-channel pixel std is about (0.247, 0.243, 0.262).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
# Computed here on the fixed 1397-image digits training split (see digits.py).
DIGITS_MEAN = (0.3055,)
DIGITS_STD = (0.3758,)

NORMALIZATION = {
    "mnist": (MNIST_MEAN, MNIST_STD),
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "digits": (DIGITS_MEAN, DIGITS_STD),
}

# Validation images held out of the training set (mnist 59000/1000,
# cifar10 49000/1000, digits 1297/100).
DEFAULT_NUM_VAL = {"mnist": 1000, "cifar10": 1000, "digits": 100}


def parse_custom(name) -> Optional[Tuple[str, str]]:
  """``(kind, path)`` of a user dataset name (``folder:PATH`` or
  ``npz:PATH``), else None."""
  kind, sep, path = str(name).strip().partition(":")
  if sep and kind.lower() in CUSTOM_KINDS:
    return kind.lower(), path
  return None


def check_name(name) -> str:
  """Returns the canonical dataset name, or raises `DataError`.

  Args:
    name: a built-in dataset name (case-insensitive), or ``folder:PATH`` /
      ``npz:PATH`` for the user's own data.

  Returns:
    The lower-case built-in name, or the user name as given (stripped).

  Raises:
    DataError: the name is neither.
  """
  custom = parse_custom(name)
  if custom is not None:
    if not custom[1]:
      raise DataError(f"dataset {name!r} names no path; write "
                      f"{custom[0]}:PATH")
    return f"{custom[0]}:{custom[1]}"
  key = str(name).strip().lower()
  if key not in DATASET_NAMES:
    raise DataError(f"unknown dataset {name!r}; valid names are: "
                    f"{', '.join(DATASET_NAMES)}, or folder:PATH (an image "
                    f"folder PATH/{{train,test}}/<class>/) or npz:PATH "
                    f"(x_train, y_train, x_test, y_test arrays)")
  return key


def is_builtin(name) -> bool:
  return parse_custom(name) is None


def defaults_key(name) -> str:
  """The key of a dataset's defaults (training preset, HINT schedule,
  default model): the built-in name, or ``"generic"`` for the user's own
  data (and for ``None``)."""
  if name is None or not is_builtin(name):
    return GENERIC
  return check_name(name)


def default_num_val(name, num_train: Optional[int] = None) -> int:
  """The default number of validation images: the table for the built-in
  datasets; for the user's own, a tenth of ``num_train`` (at least 1, at
  most 1000)."""
  if is_builtin(name):
    return DEFAULT_NUM_VAL[check_name(name)]
  if num_train is None:
    raise DataError(f"the default validation size of {name} depends on its "
                    f"training size; pass num_train")
  return max(1, min(1000, int(num_train) // 10))


def class_names(name) -> tuple:
  """Returns the class names of a dataset, in label order."""
  return CLASS_NAMES[check_name(name)]


def normalization(name) -> tuple:
  """Returns `(mean, std)` per channel, for images scaled to [0, 1]."""
  return NORMALIZATION[check_name(name)]
