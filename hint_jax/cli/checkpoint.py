"""Per-epoch checkpoints so an interrupted run resumes where it stopped."""

import json
import pathlib

import flax.serialization
import jax
import numpy as np

from hint_jax.cli.common import write_bytes_atomic, write_json_atomic
from hint_jax.errors import ConfigError, DataError

STATE_FILE = "checkpoint.msgpack"
META_FILE = "checkpoint.json"


def save(out, state, epoch: int, settings: dict, history, extra=None,
         extra_meta=None):
  """Saves ``state`` after ``epoch`` (0-based) epochs have finished.

  ``extra`` is an optional dict of numpy arrays (e.g. HINT's selection and
  noise) saved beside the state; ``extra_meta`` optional JSON-ready data
  (e.g. HINT's update records) saved in the metadata file.
  """
  out = pathlib.Path(out)
  raw = state.replace(key=jax.random.key_data(state.key))
  payload = {"state": flax.serialization.to_state_dict(raw),
             "extra": {k: np.asarray(v) for k, v in (extra or {}).items()}}
  write_bytes_atomic(out / STATE_FILE, flax.serialization.msgpack_serialize(
      jax.device_get(payload)))
  write_json_atomic(out / META_FILE, {"epochs_done": epoch + 1,
                                      "settings": settings,
                                      "history": history,
                                      "extra_meta": extra_meta})


def load(out, template_state, settings: dict):
  """Returns ``(state, epochs_done, history, extra, extra_meta)`` or None if
  there is no checkpoint in ``out``. Raises ConfigError if ``out`` holds a checkpoint of a
  run with different settings."""
  out = pathlib.Path(out)
  meta_path, state_path = out / META_FILE, out / STATE_FILE
  if not (meta_path.exists() and state_path.exists()):
    return None
  meta = json.loads(meta_path.read_text())
  if meta.get("settings") != settings:
    changed = sorted(k for k in set(meta.get("settings", {})) | set(settings)
                     if meta.get("settings", {}).get(k) != settings.get(k))
    raise ConfigError(f"{out} holds a checkpoint of a run with other settings "
                      f"({', '.join(changed)}); use another --out or "
                      f"--overwrite")
  payload = flax.serialization.msgpack_restore(state_path.read_bytes())
  raw_template = template_state.replace(
      key=jax.random.key_data(template_state.key))
  raw = flax.serialization.from_state_dict(raw_template, payload["state"])
  state = raw.replace(key=jax.random.wrap_key_data(raw.key))
  return (state, int(meta["epochs_done"]), meta["history"],
          payload.get("extra") or {}, meta.get("extra_meta"))


def read_final(out):
  """``(settings, params, model_state)`` of the last checkpoint in ``out``
  as plain arrays, without a template state (for figures and reports).

  Raises:
    DataError: if ``out`` holds no checkpoint.
  """
  out = pathlib.Path(out)
  meta_path, state_path = out / META_FILE, out / STATE_FILE
  for path in (meta_path, state_path):
    if not path.exists():
      raise DataError(f"{path} is missing: {out} is not the --out directory "
                      f"of a `hint-jax train` run")
  settings = json.loads(meta_path.read_text())["settings"]
  state = flax.serialization.msgpack_restore(state_path.read_bytes())["state"]
  return settings, state["params"], state.get("model_state") or {}


def clear(out):
  out = pathlib.Path(out)
  for name in (STATE_FILE, META_FILE):
    (out / name).unlink(missing_ok=True)
