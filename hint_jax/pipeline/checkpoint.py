"""Per-epoch checkpoints so an interrupted run resumes where it stopped.

A checkpoint is one file, ``checkpoint.msgpack``, written atomically (a
temporary file renamed into place): the train state, the defence's
state and the metadata (epochs done, settings, history) together, so a
kill at any point leaves either the previous checkpoint or the new one,
never a state from one epoch with the metadata of another.
``checkpoint.json`` is a readable copy of the metadata written after it;
checkpoints written before the metadata moved into the state file are
still read (their epoch count from the JSON copy).
"""

import json
import pathlib

import flax.serialization
import jax
import numpy as np

from hint_jax.pipeline.files import write_bytes_atomic, write_json_atomic
from hint_jax.errors import ConfigError, DataError

STATE_FILE = "checkpoint.msgpack"
META_FILE = "checkpoint.json"


def _is_array(value) -> bool:
  return isinstance(value, (np.ndarray, jax.Array))


def save(out, state, epoch: int, settings: dict, history,
         defence_state=None):
  """Saves ``state`` after ``epoch`` (0-based) epochs have finished.

  ``defence_state``: a defence's state (`hint_jax.pipeline.defences
  .JobDefence.init`), a dict whose values are arrays (saved beside the
  train state) or JSON-ready data (saved with the metadata); `load` gives
  it back as one dict.
  """
  out = pathlib.Path(out)
  raw = state.replace(key=jax.random.key_data(state.key))
  defence_state = defence_state or {}
  arrays = {k: np.asarray(v) for k, v in defence_state.items()
            if _is_array(v)}
  rest = {k: v for k, v in defence_state.items() if not _is_array(v)}
  meta = {"epochs_done": epoch + 1, "settings": settings,
          "history": history, "extra_meta": rest or None}
  payload = {"state": flax.serialization.to_state_dict(raw),
             "extra": arrays,
             "meta_json": json.dumps(meta, sort_keys=True)}
  try:
    write_bytes_atomic(out / STATE_FILE, flax.serialization.msgpack_serialize(
        jax.device_get(payload)))
    write_json_atomic(out / META_FILE, meta)
  except OSError as e:
    raise DataError(f"cannot write the checkpoint in {out}: "
                    f"{e.strerror or e}; make room and run the same command "
                    "again to resume from the last saved epoch") from None


def _read(out):
  """``(meta, payload)`` of the checkpoint in ``out``, or None.

  Raises:
    DataError: the checkpoint is unreadable or inconsistent (one line).
  """
  meta_path, state_path = out / META_FILE, out / STATE_FILE
  if not state_path.exists():
    return None
  try:
    payload = flax.serialization.msgpack_restore(state_path.read_bytes())
  except Exception as e:  # msgpack raises several types on bad bytes
    raise DataError(f"the checkpoint {state_path} is corrupt "
                    f"({type(e).__name__}); delete it (or run with "
                    "overwrite on) to start again") from None
  if not isinstance(payload, dict) or "state" not in payload:
    raise DataError(f"{state_path} is not a hint-jax checkpoint")
  try:
    if "meta_json" in payload:
      meta = json.loads(payload["meta_json"])
    elif meta_path.exists():  # written before the metadata moved inside
      meta = json.loads(meta_path.read_text())
    else:
      return None
  except ValueError:
    raise DataError(f"the checkpoint metadata in {out} is corrupt; delete "
                    f"{state_path.name} (or run with overwrite on) "
                    "to start again") from None
  if not (isinstance(meta, dict) and isinstance(meta.get("epochs_done"), int)
          and meta["epochs_done"] >= 0
          and isinstance(meta.get("history"), list)):
    raise DataError(f"the checkpoint metadata in {out} lacks its epoch count "
                    "or history; delete it (or run with overwrite on) "
                    "to start again")
  return meta, payload


# Settings keys renamed since checkpoints were first written: a checkpoint
# of before the rename is read under the new name.
RENAMED_SETTINGS = {"defense": "defence"}


def _current_names(settings):
  """``settings`` with every renamed key under its current name."""
  if not isinstance(settings, dict):
    return settings
  out = {}
  for key, value in settings.items():
    new = RENAMED_SETTINGS.get(key)
    out[key if new is None or new in settings else new] = value
  return out


def load(out, template_state, settings: dict):
  """Returns ``(state, epochs_done, history, defence_state)``, or None if
  there is no checkpoint in ``out``. ``defence_state`` is the dict `save`
  was given (empty without a defence); a checkpoint written before the
  defence state was one dict gives the same dict (its arrays and its
  metadata entries were kept under the same names).

  Raises:
    ConfigError: ``out`` holds a checkpoint of a run with other settings.
    DataError: the checkpoint is unreadable or inconsistent."""
  out = pathlib.Path(out)
  found = _read(out)
  if found is None:
    return None
  meta, payload = found
  meta["settings"] = _current_names(meta.get("settings", {}))
  if meta["settings"] != settings:
    changed = sorted(k for k in set(meta.get("settings", {})) | set(settings)
                     if meta.get("settings", {}).get(k) != settings.get(k))
    raise ConfigError(f"{out} holds a checkpoint of a run with other settings "
                      f"({', '.join(changed)}); use another output "
                      f"folder or run with overwrite on")
  raw_template = template_state.replace(
      key=jax.random.key_data(template_state.key))
  raw = flax.serialization.from_state_dict(raw_template, payload["state"])
  state = raw.replace(key=jax.random.wrap_key_data(raw.key))
  defence_state = {**(meta.get("extra_meta") or {}),
                   **(payload.get("extra") or {})}
  return state, int(meta["epochs_done"]), meta["history"], defence_state


def read_final(out):
  """``(settings, params, model_state)`` of the last checkpoint in ``out``
  as plain arrays, without a template state (for figures and reports).

  Raises:
    DataError: if ``out`` holds no checkpoint.
  """
  out = pathlib.Path(out)
  found = _read(out)
  if found is None:
    raise DataError(f"{out / STATE_FILE} is missing: {out} is not the output "
                    "folder of a training run")
  meta, payload = found
  state = payload["state"]
  return (_current_names(meta["settings"]), state["params"],
          state.get("model_state") or {})


def clear(out):
  out = pathlib.Path(out)
  for name in (STATE_FILE, META_FILE):
    (out / name).unlink(missing_ok=True)
