"""Where hint_jax looks for data and caches.

The data directory is resolved in this order:

1. an explicit ``data_dir`` argument (the command line's ``--data-dir``);
2. the ``HINT_JAX_DATA_DIR`` environment variable;
3. ``~/.cache/hint_jax/data``.

Decoded caches (e.g. a JPEG image folder decoded to ``.npz``) are written under
``HINT_JAX_CACHE_DIR`` if set, else ``~/.cache/hint_jax/cache``; the data
directory itself may be read-only.
"""

import os
import pathlib

DATA_DIR_ENV = "HINT_JAX_DATA_DIR"
CACHE_DIR_ENV = "HINT_JAX_CACHE_DIR"


def data_dir(explicit=None) -> pathlib.Path:
  """Returns the data directory (not checked for existence)."""
  if explicit:
    return pathlib.Path(explicit).expanduser()
  env = os.environ.get(DATA_DIR_ENV)
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path.home() / ".cache" / "hint_jax" / "data"


def cache_dir() -> pathlib.Path:
  """Returns (and creates) the directory for decoded-data caches."""
  env = os.environ.get(CACHE_DIR_ENV)
  path = (pathlib.Path(env).expanduser() if env else
          pathlib.Path.home() / ".cache" / "hint_jax" / "cache")
  path.mkdir(parents=True, exist_ok=True)
  return path
