"""Shared fixtures: where the real datasets are."""

import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
  """The real-data folder: $HINT_JAX_DATA_DIR, else <repo>/../shared/data."""
  candidates = []
  if os.environ.get("HINT_JAX_DATA_DIR"):
    candidates.append(pathlib.Path(os.environ["HINT_JAX_DATA_DIR"]))
  candidates.append(REPO.parent / "shared" / "data")
  for path in candidates:
    if path.is_dir():
      return path.resolve()
  pytest.skip("real data not found: set HINT_JAX_DATA_DIR or provide "
              "../shared/data")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
  """One decoded-data cache shared by all tests, so JPEGs decode once."""
  path = tmp_path_factory.mktemp("hint_jax_cache")
  yield path
  shutil.rmtree(path, ignore_errors=True)  # ~185 MB of decoded CIFAR-10


@pytest.fixture(autouse=True)
def _isolated_cache(cache_dir, monkeypatch):
  """No test writes to the user's ~/.cache."""
  monkeypatch.setenv("HINT_JAX_CACHE_DIR", str(cache_dir))
