"""An estimator's prepared state: a pytree, saved and loaded as one file."""

import dataclasses
import json
import os
import pathlib

import jax
import numpy as np

from hint_jax.errors import DataError

FORMAT = "hint_jax.attribution/1"


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class AttributionState:
  """What ``prepare`` computed, everything ``scores`` needs besides the
  data and ``apply``.

  Attributes:
    estimator: its registry name (tree metadata: static under ``jit``).
    settings: its settings as sorted ``(name, value)`` pairs of plain
      Python values (tree metadata).
    members: tuple of parameter pytrees the scores are taken at: one model,
      or TracIn's checkpoints, or TRAK's ensemble.
    arrays: dict of arrays (curvature factors, eigenvectors, kernels, keys
      as raw ``uint32`` data).
  """
  estimator: str
  settings: tuple
  members: tuple
  arrays: dict

  @property
  def options(self) -> dict:
    return dict(self.settings)

  def tree_flatten(self):
    return (self.members, self.arrays), (self.estimator, self.settings)

  @classmethod
  def tree_unflatten(cls, aux, children):
    return cls(aux[0], aux[1], *children)


def make_state(estimator: str, settings: dict, members, arrays: dict
               ) -> AttributionState:
  return AttributionState(estimator, tuple(sorted(settings.items())),
                          tuple(members), dict(arrays))


def _flatten(prefix, tree, out):
  if isinstance(tree, dict):
    if not tree:
      out[prefix + "/{}"] = np.zeros((0,), np.float32)
    for k, v in tree.items():
      if "/" in str(k):
        raise DataError(f"cannot save a parameter named {k!r} (contains /)")
      _flatten(f"{prefix}/{k}", v, out)
  else:
    out[prefix] = np.asarray(tree)


def _unflatten(entries):
  root: dict = {}
  for name, value in entries.items():
    parts = name.split("/")
    node = root
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    if parts[-1] != "{}":
      node[parts[-1]] = value
  return root


def save_state(path, state: AttributionState) -> None:
  """Writes ``state`` to one ``.npz`` file (atomically). Parameter pytrees
  must be nested dicts of arrays (linen variables, the adapters' params)."""
  path = pathlib.Path(path)
  arrays = {}
  for i, member in enumerate(state.members):
    _flatten(f"members/{i}", member, arrays)
  _flatten("arrays", state.arrays, arrays)
  meta = {"format": FORMAT, "estimator": state.estimator,
          "settings": [[k, v] for k, v in state.settings],
          "members": len(state.members)}
  arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  tmp = path.with_name(path.name + ".tmp.npz")
  try:
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def load_state(path) -> AttributionState:
  """Reads a file written by `save_state`."""
  path = pathlib.Path(path)
  try:
    with np.load(path) as f:
      entries = {k: f[k] for k in f.files}
  except (OSError, ValueError) as err:
    raise DataError(f"cannot read attribution state {path}: {err}") from None
  try:
    meta = json.loads(entries.pop("__meta__").tobytes().decode())
    assert meta["format"] == FORMAT
  except (KeyError, ValueError, AssertionError):
    raise DataError(f"{path} is not an attribution state file") from None
  tree = _unflatten(entries)
  members = tree.get("members", {})
  members = tuple(members.get(str(i), {}) for i in range(meta["members"]))
  settings = {k: (tuple(v) if isinstance(v, list) else v)
              for k, v in meta["settings"]}
  return make_state(meta["estimator"], settings, members,
                    tree.get("arrays", {}))
