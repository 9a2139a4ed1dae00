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


@pytest.fixture(scope="session")
def digits_splits():
  """The embedded 8x8 digits, split with seed 0."""
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  return data_lib.split_train_val(data_lib.load_dataset("digits"), seed=0)


@pytest.fixture(scope="session")
def digits_convnet(digits_splits):
  """convnet_small trained 5 epochs on the digits: (model, state)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.train import Trainer, fit  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top
  model = get_model("convnet_small", 10, digits_splits.x_train.shape[1:])
  cfg = dataclasses.replace(preset("digits"), epochs=5, eval_every=0)
  trainer = Trainer(model, cfg, len(digits_splits.x_train))
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)),
                    digits_splits)
  return model, state


@pytest.fixture
def interrupted_run(monkeypatch):
  """``run(argv, epoch)``: runs ``hint-jax argv`` killed right after the
  checkpoint of 0-based ``epoch``, then the same command again (resuming);
  returns the resumed run's exit status."""
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top

  class Stop(Exception):
    pass

  real_save = checkpoint.save

  def run(argv, epoch):
    def save_then_stop(out, state, e, *args, **kwargs):
      real_save(out, state, e, *args, **kwargs)
      if e == epoch:
        raise Stop()

    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(Stop):
      main(argv)
    monkeypatch.setattr(checkpoint, "save", real_save)
    return main(argv)

  return run


def pytest_collection_modifyitems(items):
  """Tests on the quick experiment folder (crafted and trained once per
  module, minutes) are slow too."""
  for item in items:
    if "quick_dir" in getattr(item, "fixturenames", ()):
      item.add_marker(pytest.mark.slow)


_COMPILES = {"registered": False, "count": 0}
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def _count_backend_compile(event, *args, **kwargs):
  del args, kwargs
  if event == _BACKEND_COMPILE_EVENT:
    _COMPILES["count"] += 1


@pytest.fixture
def backend_compiles():
  """``backend_compiles()`` -> how many XLA compilations the process has
  run so far (JAX's public monitoring event, one per executable built).
  Tests that a call does not recompile compare it before and after; JAX's
  own ``_cache_size()`` is not used: late in a long process it read 0
  for functions that had compiled (CI, stop 43)."""
  if not _COMPILES["registered"]:
    import jax.monitoring  # pylint: disable=g-import-not-at-top
    jax.monitoring.register_event_duration_secs_listener(
        _count_backend_compile)
    _COMPILES["registered"] = True
  return lambda: _COMPILES["count"]
