"""MNIST from the four official IDX files (gzip-compressed or raw)."""

import gzip
import hashlib
import pathlib
import zlib

import numpy as np

from hint_jax.data import dataset as dataset_lib
from hint_jax.data import metadata
from hint_jax.errors import DataError

# sha256 of the official files (the sums tensorflow-datasets checks).
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    # The same files decompressed.
    "train-images-idx3-ubyte":
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte":
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte":
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte":
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# split -> (images file, labels file), without the ".gz" suffix.
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4",
               0x0D: ">f4", 0x0E: ">f8"}


def search_dirs(root) -> list:
  """Folders searched for the MNIST files: `<root>/mnist`, then `<root>`."""
  root = pathlib.Path(root)
  return [root / "mnist", root]


def find_file(root, base):
  """Returns the path of `base` (".gz" or raw) under `root`, or None."""
  for folder in search_dirs(root):
    for name in (base + ".gz", base):
      path = folder / name
      if path.is_file():
        return path
  return None


def parse_idx(data: bytes) -> np.ndarray:
  """Parses the bytes of an uncompressed IDX file.

  Args:
    data: the whole file: two zero bytes, a type code, the number of
      dimensions, one big-endian uint32 per dimension, then the values.

  Returns:
    The array, in native byte order, with the header's shape.

  Raises:
    ValueError: with a short reason when the header or length is wrong.
  """
  if len(data) < 4:
    raise ValueError(f"only {len(data)} bytes, shorter than the IDX header")
  if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
    raise ValueError(f"wrong magic number 0x{data[:4].hex()}")
  ndim = data[3]
  header = 4 + 4 * ndim
  if ndim == 0 or len(data) < header:
    raise ValueError(f"header truncated or empty ({ndim} dimensions)")
  dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  dtype = np.dtype(_IDX_DTYPES[data[2]])
  expected = int(np.prod(dims)) * dtype.itemsize
  found = len(data) - header
  if found < expected:
    raise ValueError(f"truncated: header {dims} needs {expected} bytes of "
                     f"values, file has {found}")
  if found > expected:
    raise ValueError(f"{found - expected} unexpected bytes after the "
                     f"{dims} values")
  array = np.frombuffer(data, dtype, offset=header).reshape(dims)
  return array.astype(dtype.newbyteorder("="))


def read_idx(path) -> tuple:
  """Reads one IDX file and checks it against the official checksum.

  Args:
    path: an IDX file, gzip-compressed if its name ends in ".gz".

  Returns:
    `(array, sha256, verified)`: `verified` is True when the file's sha256
    equals the official one for its name.

  Raises:
    DataError: the file cannot be read, decompressed or parsed.
  """
  path = pathlib.Path(path)
  raw = path.read_bytes()
  digest = hashlib.sha256(raw).hexdigest()
  official = OFFICIAL_SHA256.get(path.name)
  verified = digest == official
  try:
    data = gzip.decompress(raw) if path.name.endswith(".gz") else raw
    array = parse_idx(data)
  except (OSError, EOFError, zlib.error, ValueError) as e:
    reason = dataset_lib.error_reason(e)
    hint = (" and its sha256 differs from the official file"
            if official and not verified else "")
    raise DataError(f"MNIST file {path} is corrupt ({reason}){hint}; replace "
                    f"it with the official {path.name} in {path.parent}"
                    ) from None
  return array, digest, verified


def load(root) -> dataset_lib.Dataset:
  """Loads MNIST from the IDX files under `root`.

  The files are looked up in `<root>/mnist/` and then `<root>/`, each as
  `<name>.gz` or uncompressed `<name>`. A file whose sha256 equals the official
  one is marked verified; a file that parses correctly but differs is accepted
  (for users' own IDX files) and `meta["verified"]` is then False.

  Args:
    root: the data directory.

  Returns:
    A `Dataset` with (60000, 28, 28, 1) train and (10000, 28, 28, 1) test
    images for the official files.

  Raises:
    DataError: a file is missing, corrupt or inconsistent with its pair.
  """
  root = pathlib.Path(root)
  arrays, digests, verified = {}, {}, []
  folders = " or ".join(str(d) for d in search_dirs(root))
  official = [n + ".gz" for pair in FILES.values() for n in pair]
  for split, (images_name, labels_name) in FILES.items():
    for base in (images_name, labels_name):
      path = find_file(root, base)
      if path is None:
        raise DataError(
            f"MNIST file {base}.gz not found in {folders}; put the 4 official "
            f"files ({', '.join(official)}) "
            f"in {root / 'mnist'}, or point HINT_JAX_DATA_DIR / --data-dir at "
            f"the folder that holds mnist/")
      array, digest, ok = read_idx(path)
      arrays[base] = (array, path)
      digests[str(path)] = digest
      verified.append(ok)
    (x, x_path), (y, y_path) = arrays[images_name], arrays[labels_name]
    if x.ndim != 3 or x.dtype != np.uint8:
      raise DataError(f"MNIST file {x_path} holds {x.dtype} {x.shape}, not "
                      f"uint8 images (N, H, W); replace it with the official "
                      f"{images_name}.gz")
    if y.ndim != 1 or y.dtype != np.uint8:
      raise DataError(f"MNIST file {y_path} holds {y.dtype} {y.shape}, not "
                      f"uint8 labels (N,); replace it with the official "
                      f"{labels_name}.gz")
    if x.shape[0] != y.shape[0]:
      raise DataError(f"MNIST files {x_path} and {y_path} hold {x.shape[0]} "
                      f"images but {y.shape[0]} labels; put matching official "
                      f"files in {root / 'mnist'}")
    if y.size and y.max() >= 10:
      raise DataError(f"MNIST file {y_path} has label {y.max()} (must be "
                      f"0..9); replace it with the official {labels_name}.gz")
  x_train, y_train, x_test, y_test = dataset_lib.check_arrays(
      arrays[FILES["train"][0]][0][..., None], arrays[FILES["train"][1]][0],
      arrays[FILES["test"][0]][0][..., None], arrays[FILES["test"][1]][0],
      10, root)
  folder = arrays[FILES["train"][0]][1].parent
  return dataset_lib.Dataset(
      x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
      num_classes=10, name="mnist", source=f"mnist-idx:{folder}",
      class_names=metadata.MNIST_CLASS_NAMES,
      meta={"verified": all(verified), "sha256": digests})
