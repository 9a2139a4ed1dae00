"""Datasets: loading from local files, the project's .npz format, splits.

Nothing here downloads. See `load_dataset` for where each dataset's files are
looked up.
"""

from hint_jax.data.custom import content_sha256
from hint_jax.data.dataset import Dataset
from hint_jax.data.loader import SOURCES, load_dataset
from hint_jax.data.metadata import (CIFAR10_CLASS_NAMES, CIFAR10_MEAN,
                                    CIFAR10_STD, CLASS_NAMES, DATASET_NAMES,
                                    DEFAULT_NUM_VAL, DIGITS_MEAN, DIGITS_STD,
                                    MNIST_CLASS_NAMES, MNIST_MEAN, MNIST_STD,
                                    check_name, class_names,
                                    default_num_val, normalization,
                                    parse_custom)
from hint_jax.data.npz import load_npz, save_npz
from hint_jax.data.splits import Splits, split_train_val, take_subset

__all__ = [
    "CIFAR10_CLASS_NAMES", "CIFAR10_MEAN", "CIFAR10_STD", "CLASS_NAMES",
    "DATASET_NAMES", "DEFAULT_NUM_VAL", "DIGITS_MEAN", "DIGITS_STD",
    "MNIST_CLASS_NAMES", "MNIST_MEAN", "MNIST_STD", "SOURCES", "Dataset",
    "Splits", "check_name", "class_names", "content_sha256",
    "default_num_val", "load_dataset", "load_npz", "normalization",
    "parse_custom", "save_npz", "split_train_val", "take_subset",
]
