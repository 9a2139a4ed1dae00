"""Shared fixtures: where the real datasets are."""

import os
import pathlib

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
      return path
  pytest.skip("real data not found: set HINT_JAX_DATA_DIR or provide "
              "../shared/data")
