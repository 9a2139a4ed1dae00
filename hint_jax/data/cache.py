"""On-disk caches of decoded arrays, keyed by their source's identity.

A cache file lives in `hint_jax.paths.cache_dir()` and is named after a hash of
the source's resolved path, size and modification time (for a folder: of every
file's relative path, size and modification time), so a changed or moved source
is decoded again. Caches are written atomically; an unreadable cache is treated
as absent.
"""

import hashlib
import json
import logging
import os
import pathlib
import tempfile

import numpy as np

from hint_jax import paths

CACHE_VERSION = 1

_log = logging.getLogger(__name__)


def fingerprint(source) -> str:
  """Returns a short hash identifying a file or folder and its contents' state.

  Args:
    source: a file (keyed by path, size, mtime) or a folder (keyed by every
      file below it).

  Returns:
    A 20-character hexadecimal string.
  """
  source = pathlib.Path(source).resolve()
  parts = [CACHE_VERSION, str(source)]
  if source.is_dir():
    for folder, dirs, files in os.walk(source):
      dirs.sort()
      for name in sorted(files):
        st = os.stat(os.path.join(folder, name))
        rel = os.path.relpath(os.path.join(folder, name), source)
        parts.append([rel, st.st_size, st.st_mtime_ns])
  else:
    st = source.stat()
    parts.extend([st.st_size, st.st_mtime_ns])
  return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def cache_path(kind: str, source):
  """Returns the cache file for `source`, or None if no cache dir is usable."""
  try:
    folder = paths.cache_dir()
  except OSError as e:
    _log.warning("hint_jax: cache directory unusable (%s); not caching", e)
    return None
  return folder / f"{kind}-{fingerprint(source)}.npz"


def load(path):
  """Returns the arrays stored in a cache file, or None if absent/unreadable."""
  if path is None or not pathlib.Path(path).is_file():
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except
    # Any damage to our own cache just means decoding again.
    _log.warning("hint_jax: ignoring unreadable cache %s (%s)", path, e)
    return None


def save(path, arrays: dict) -> bool:
  """Writes arrays to a cache file atomically; returns False on failure."""
  if path is None:
    return False
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files.
    os.replace(tmp, path)
    return True
  except OSError as e:
    _log.warning("hint_jax: could not write cache %s (%s)", path, e)
    try:
      os.unlink(tmp)
    except OSError:
      pass
    return False
