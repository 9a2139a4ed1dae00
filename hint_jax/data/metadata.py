"""Names, class names and normalisation constants of the supported datasets."""

from hint_jax.errors import DataError

DATASET_NAMES = ("mnist", "cifar10", "digits")

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


def check_name(name) -> str:
  """Returns the canonical dataset name, or raises `DataError`.

  Args:
    name: a dataset name, case-insensitive.

  Returns:
    The lower-case name, one of `DATASET_NAMES`.

  Raises:
    DataError: the name is not a supported dataset.
  """
  key = str(name).strip().lower()
  if key not in DATASET_NAMES:
    raise DataError(f"unknown dataset {name!r}; valid names are: "
                    f"{', '.join(DATASET_NAMES)}")
  return key


def default_num_val(name) -> int:
  """Returns the default number of validation images for a dataset."""
  return DEFAULT_NUM_VAL[check_name(name)]


def class_names(name) -> tuple:
  """Returns the class names of a dataset, in label order."""
  return CLASS_NAMES[check_name(name)]


def normalization(name) -> tuple:
  """Returns `(mean, std)` per channel, for images scaled to [0, 1]."""
  return NORMALIZATION[check_name(name)]
