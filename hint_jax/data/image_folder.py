"""Image-folder trees `<root>/{train,test}/<class>/<file>`, extracted or tarred.

The tree may sit at the top of the folder or archive or under one common
prefix (e.g. `cifar10/train/cat/0001.png`). Image files end in .png, .jpg or
.jpeg; hidden files (names starting with ".") are ignored. Within a class the
files are ordered by name with digit runs compared as numbers, so `0002.jpg`
comes before `0010.jpg` and `2.jpg` before `10.jpg`.
"""

import io
import os
import pathlib
import re
import tarfile
import zlib

import numpy as np
from PIL import Image

from hint_jax.data import dataset as dataset_lib
from hint_jax.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")


def natural_key(name: str) -> list:
  """Sort key comparing digit runs numerically ("2.jpg" < "10.jpg")."""
  return [(0, int(t), "") if t.isdigit() else (1, 0, t)
          for t in re.split(r"(\d+)", name) if t]


def _is_image(parts) -> bool:
  return (not any(p.startswith(".") or p == "__MACOSX" for p in parts)
          and parts[-1].lower().endswith(IMAGE_EXTENSIONS))


def _tar_entries(path: pathlib.Path) -> list:
  """Returns [(path parts, bytes)] for the image files of a tar archive."""
  entries = []
  try:
    with tarfile.open(path, "r|*") as tar:
      for member in tar:
        parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
        if not member.isfile() or not parts or not _is_image(parts):
          continue
        entries.append((parts, tar.extractfile(member).read()))
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    raise DataError(f"archive {path} is corrupt or truncated "
                    f"({dataset_lib.error_reason(e)}); "
                    f"replace it with a complete copy") from None
  return entries


def _dir_entries(path: pathlib.Path) -> list:
  """Returns [(path parts, file path)] for the image files of a folder."""
  entries = []
  for folder, dirs, files in os.walk(path):
    dirs.sort()
    rel = pathlib.Path(folder).relative_to(path).parts
    for name in files:
      parts = rel + (name,)
      if _is_image(parts):
        entries.append((parts, pathlib.Path(folder) / name))
  return entries


def decode_images(items, origin) -> np.ndarray:
  """Decodes images to one uint8 RGB array.

  Args:
    items: a sequence of `(name, bytes or path)`.
    origin: the archive or folder, for error messages.

  Returns:
    An array of shape (len(items), H, W, 3).

  Raises:
    DataError: an image cannot be decoded or differs in size from the first.
  """
  out = None
  for i, (name, blob) in enumerate(items):
    try:
      with Image.open(io.BytesIO(blob) if isinstance(blob, bytes) else blob
                      ) as image:
        array = np.asarray(image if image.mode == "RGB"
                           else image.convert("RGB"))
    except Image.DecompressionBombError as e:
      raise DataError(f"image {name} in {origin} is too large to decode "
                      f"safely ({e}); shrink it or remove it") from None
    except (OSError, ValueError, SyntaxError) as e:
      raise DataError(f"image {name} in {origin} cannot be decoded "
                      f"({dataset_lib.error_reason(e)}); replace it or the "
                      f"whole {origin.name}") from None
    if out is None:
      out = np.empty((len(items),) + array.shape, np.uint8)
    elif array.shape != out.shape[1:]:
      raise DataError(f"image {name} in {origin} is {array.shape[1]}x"
                      f"{array.shape[0]} but earlier images are "
                      f"{out.shape[2]}x{out.shape[1]}; all images must have "
                      f"one size")
    out[i] = array
  return out


def read_tree(source, class_names=None) -> dict:
  """Reads and decodes an image-folder tree.

  Args:
    source: a folder, or a tar archive (optionally gzip/bzip2/xz-compressed).
    class_names: the allowed class folder names; a class's label is its
      position in this sequence. None: the class folders under train/, in
      natural order ("2" before "10"); test/ may hold only those.

  Returns:
    `{split: (x, y)}` for split in ("train", "test"): x uint8 (N, H, W, 3),
    y int32 labels, ordered by label and then by file name; and
    `"class_names"`: the class names in label order.

  Raises:
    DataError: the tree is malformed, a split is empty, a class folder is not
      in `class_names`, or an image cannot be decoded.
  """
  source = pathlib.Path(source)
  entries = _dir_entries(source) if source.is_dir() else _tar_entries(source)
  discovered = class_names is None
  if discovered:
    class_names = sorted({parts[-2] for parts, _ in entries
                          if len(parts) >= 3 and parts[-3] == "train"},
                         key=natural_key)
  class_index = {c: i for i, c in enumerate(class_names)}
  groups = {split: {} for split in SPLITS}
  prefixes = set()
  for parts, blob in entries:
    name = "/".join(parts)
    if len(parts) < 3 or parts[-3] not in SPLITS:
      raise DataError(f"image {name} in {source} is not at "
                      f"<root>/{{train,test}}/<class>/<file>; rearrange "
                      f"{source.name} into that layout")
    prefixes.add(parts[:-3])
    if len(prefixes) > 1:
      raise DataError(f"{source} holds more than one image tree "
                      f"({', '.join('/'.join(p) or '.' for p in prefixes)}); "
                      f"keep a single <root>/{{train,test}}/<class>/ tree")
    if parts[-2] not in class_index:
      if discovered:
        raise DataError(f"class folder {'/'.join(parts[:-1])} in {source} has "
                        f"no counterpart under train/; every test class "
                        f"needs training images")
      raise DataError(f"class folder {'/'.join(parts[:-1])} in {source} is not "
                      f"a class of this dataset; class folders must be named "
                      f"{', '.join(class_names)}")
    groups[parts[-3]].setdefault(parts[-2], []).append((name, blob))
  result = {}
  for split in SPLITS:
    if not groups[split]:
      raise DataError(f"no images under {split}/ in {source}; expected "
                      f"<root>/{split}/<class>/*.{{png,jpg,jpeg}} there")
    items, labels = [], []
    for cls in sorted(groups[split], key=class_index.get):
      files = sorted(groups[split][cls], key=lambda e: natural_key(e[0]))
      items.extend(files)
      labels.extend([class_index[cls]] * len(files))
    result[split] = (decode_images(items, source),
                     np.asarray(labels, np.int32))
  result["class_names"] = tuple(class_names)
  return result
