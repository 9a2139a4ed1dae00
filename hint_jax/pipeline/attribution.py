"""Training-data attribution as a whole job: a model (trained here, or a
run folder's checkpoint), a slice of the data, one estimator of
`hint_jax.attribution`, and its scores written to a folder.

Files written in ``out``:

- ``scores.npy``: float32 (n_test, n_train); row t, column i is training
  example i's score for test example t, positive when it helps (lowers the
  test loss; TRAK: raises the margin). Written under a temporary name and
  renamed when complete, so an interrupted job leaves no partial matrix.
- ``attribution.json``: the estimator and its complete settings, the model
  and where it came from, the data slice (dataset, split, the training and
  test indices taken), the sign convention, the time of each phase and the
  peak memory of the process.
- ``state.npz``: the estimator's prepared state (`attribution.load_state`).
- ``model/``: the model's checkpoint when it was trained here.
"""

import dataclasses
import platform
import resource
import time
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import attribution
from hint_jax.errors import ConfigError
from hint_jax.models import capture, get_model, num_params
from hint_jax.pipeline import checkpoint, files
from hint_jax.pipeline.specs import DataSpec
from hint_jax.pipeline.training import Reporter, load_splits, train_clean
from hint_jax.train.presets import default_model

SCORES_FILE = "scores.npy"
RECORD_FILE = "attribution.json"
STATE_FILE = "state.npz"
SIGN = ("positive: the training example helps the test example (lowers its "
        "loss; for trak raises its margin); influence functions: n x the "
        "first-order rise of the test loss if the example were left out")


@dataclasses.dataclass(frozen=True)
class AttributeJob:
  """What to attribute.

  Attributes:
    data: the dataset and its split (as for training).
    estimator: a name of `hint_jax.attribution.ESTIMATORS`.
    settings: the estimator's settings as ``(name, value)`` pairs.
    model: the architecture (None: the dataset's default) when training.
    run: a run folder (``hint-jax train --out``) whose final checkpoint is
      attributed, instead of training a model here.
    epochs: training epochs when training (None: the preset's).
    seed: seed of the training and of the estimator's key.
    num_train: score the first ``num_train`` training examples (None: all).
    num_test: for the first ``num_test`` test examples (None: all).
    train_block, test_block: examples per streamed block.
  """
  data: DataSpec
  estimator: str
  settings: Tuple[Tuple[str, object], ...] = ()
  model: Optional[str] = None
  run: Optional[str] = None
  epochs: Optional[int] = None
  seed: int = 0
  num_train: Optional[int] = None
  num_test: Optional[int] = None
  train_block: int = 512
  test_block: int = 256


def _peak_memory_mb() -> float:
  """The process's peak resident memory so far (Linux: kB units)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / (1024.0 ** 2 if platform.system() == "Darwin" else 1024.0)


def _model_and_params(job, dataset, splits, out, reporter):
  if job.run is not None:
    settings, params, model_state = checkpoint.read_final(job.run)
    if settings.get("dataset") not in (None, job.data.dataset):
      raise ConfigError(f"run {job.run} trained on {settings['dataset']}, "
                        f"not {job.data.dataset}")
    name = settings.get("model")
    if job.model is not None and job.model != name:
      raise ConfigError(f"run {job.run} holds a {name}, not a {job.model}")
    model = get_model(name, splits.num_classes, splits.x_train.shape[1:])
    params = jax.tree.map(jnp.asarray, params)
    model_state = jax.tree.map(jnp.asarray, model_state)
    return model, name, params, model_state, {"run": str(job.run)}
  name = job.model or default_model(job.data.dataset,
                                    splits.x_train.shape[1:])
  (out / "model").mkdir(exist_ok=True)
  model, state, _, acc = train_clean(
      job.data.dataset, name, splits, job.epochs, job.seed, out / "model",
      reporter, label=f"{name} to attribute")
  return model, name, state.params, state.model_state, {
      "trained": {"epochs": job.epochs, "seed": job.seed,
                  "test_accuracy": acc}}


def _slice(n, count, what):
  if count is None:
    return n
  if not 0 < count:
    raise ConfigError(f"{what} must be > 0, got {count}")
  return min(count, n)


def run_attribute(job: AttributeJob, out, *, reporter: Reporter = None
                  ) -> dict:
  """Runs ``job`` into the folder ``out``; returns the record (also
  ``out/attribution.json``). Progress of the scoring reaches
  ``reporter.stage("scores", done, total)``.

  Raises:
    ConfigError: a setting is invalid (one line).
    hint_jax.errors.DataError: data, a run folder or an output file is
      missing or bad.
  """
  reporter = reporter or Reporter()
  attribution.get(job.estimator)   # unknown names fail before any work
  out = files.check_out(out)
  dataset, splits = load_splits(job.data, reporter)
  taken = files.take_out(out)
  try:
    model, name, params, model_state, source = _model_and_params(
        job, dataset, splits, out, reporter)

    # The model in inference mode, uint8 images scaled to [0, 1], with the
    # layer taps K-FAC needs (any estimator takes it as a plain apply).
    apply = capture.tapped_apply(model, model_state)

    n_tr = _slice(len(splits.x_train), job.num_train, "num_train")
    n_te = _slice(len(splits.x_test), job.num_test, "num_test")
    train = (splits.x_train[:n_tr], splits.y_train[:n_tr])
    test = (splits.x_test[:n_te], splits.y_test[:n_te])
    reporter.note(f"{job.estimator}: preparing on {n_tr} training images "
                  f"({num_params(params)} parameters)")
    t0 = time.perf_counter()
    state = attribution.prepare(job.estimator, apply, params,
                                (jnp.asarray(train[0]),
                                 jnp.asarray(train[1])),
                                key=jax.random.key(job.seed),
                                **dict(job.settings))
    jax.block_until_ready(state)
    prepare_s = time.perf_counter() - t0
    files.write_output(out / STATE_FILE,
                       lambda p: attribution.save_state(p, state))
    reporter.note(f"{job.estimator}: scoring {n_te} test x {n_tr} training "
                  "images")
    partial = out / (SCORES_FILE + ".partial")
    t0 = time.perf_counter()

    def write(path):
      scores = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                         shape=(n_te, n_tr))
      attribution.scores(state, apply, train, test,
                         train_block=job.train_block,
                         test_block=job.test_block, out=scores,
                         on_progress=lambda d, t: reporter.stage(
                             "scores", d, t))
      scores.flush()
      del scores
    files.write_output(partial, write, "the attribution")
    score_s = time.perf_counter() - t0
    reporter.pause()
    partial.replace(out / SCORES_FILE)
    record = {
        "estimator": job.estimator, "settings": dict(state.settings),
        "model": name, "model_source": source,
        "num_parameters": num_params(params),
        "data": {"dataset": job.data.dataset, "split_seed":
                 job.data.split_seed, "num_val": len(splits.x_val),
                 "subset": job.data.subset,
                 "train": f"the first {n_tr} of the training split "
                          f"({len(splits.x_train)})",
                 "test": f"the first {n_te} of the test set "
                         f"({len(splits.x_test)})"},
        "scores": {"file": SCORES_FILE, "shape": [n_te, n_tr],
                   "dtype": "float32", "sign": SIGN},
        "seconds": {"prepare": prepare_s, "scores": score_s},
        "peak_memory_mb": _peak_memory_mb(),
        "blocks": {"train": job.train_block, "test": job.test_block},
        "backend": jax.default_backend(), "jax_version": jax.__version__,
    }
    files.write_json_atomic(out / RECORD_FILE, record)
    return record
  except BaseException:
    taken.release(failed=True)
    raise
  finally:
    taken.release()


def parse_setting(text: str):
  """``NAME=VALUE`` with VALUE a number, ``none``/``true``/``false``, a
  comma list of numbers (``0.1,0.01``) or a word; returns the pair."""
  if "=" not in text:
    raise ConfigError(f"a setting is NAME=VALUE, got {text!r}")
  name, value = text.split("=", 1)
  name, value = name.strip().replace("-", "_"), value.strip()
  return name, _value(value)


def _value(text):
  low = text.lower()
  if low in ("none", "null"):
    return None
  if low in ("true", "false"):
    return low == "true"
  if "," in text:
    return [_value(t) for t in text.split(",") if t.strip()]
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def check_estimator_settings(name: str, settings) -> None:
  """Raises ConfigError (one line) for an unknown estimator or setting."""
  est = attribution.get(name)
  unknown = sorted(set(dict(settings)) - set(est.defaults))
  if unknown:
    raise ConfigError(f"{name} has no setting {', '.join(unknown)}; its "
                      f"settings: {', '.join(sorted(est.defaults))}")


