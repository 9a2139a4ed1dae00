"""Loading plug-ins: Python files or modules that register a defence (or
another extension) when imported.

A plug-in is imported once; what it registers (`hint_jax.pipeline.
register_defence`) is then known to every job and command of the process.
``hint-jax --plugin FILE.py ...`` and the ``HINT_JAX_PLUGINS`` variable
(plug-ins separated by the path separator, ``:`` on Linux) load them
before the command line is built, so a plug-in's options and names appear
in ``--help`` and its choices.
"""

import importlib
import importlib.util
import os
import pathlib
import sys
from types import ModuleType
from typing import Dict, Iterable, List

from hint_jax.errors import ConfigError

ENV_VAR = "HINT_JAX_PLUGINS"

_LOADED: Dict[str, ModuleType] = {}


def load(spec: str) -> ModuleType:
  """Imports one plug-in, a ``.py`` file's path or an importable module's
  name, once per process; returns the module.

  Raises:
    ConfigError: the file is missing, or importing it failed (one line,
      with the plug-in's own error).
  """
  key = str(pathlib.Path(spec).resolve()) if spec.endswith(".py") else spec
  if key in _LOADED:
    return _LOADED[key]
  if spec.endswith(".py") and not pathlib.Path(spec).is_file():
    raise ConfigError(f"plug-in {spec}: no such file")
  try:
    if spec.endswith(".py"):
      path = pathlib.Path(spec)
      name = f"hint_jax_plugin_{path.stem}"
      module_spec = importlib.util.spec_from_file_location(name, path)
      module = importlib.util.module_from_spec(module_spec)
      sys.modules[name] = module
      try:
        module_spec.loader.exec_module(module)
      except BaseException:
        sys.modules.pop(name, None)
        raise
    else:
      module = importlib.import_module(spec)
  except ConfigError as e:
    raise ConfigError(f"plug-in {spec}: {e}") from e
  except ModuleNotFoundError as e:
    if spec.endswith(".py"):
      raise ConfigError(f"plug-in {spec} failed to load: "
                        f"ModuleNotFoundError: {e}") from e
    raise ConfigError(f"plug-in {spec}: {e} (a plug-in is a .py file's "
                      "path or an importable module's name)") from e
  except Exception as e:  # a plug-in's own failure, said in one line
    raise ConfigError(f"plug-in {spec} failed to load: "
                      f"{type(e).__name__}: {e}") from e
  _LOADED[key] = module
  return module


def load_all(specs: Iterable[str]) -> List[ModuleType]:
  """`load` of each of ``specs`` (empty entries skipped), in order."""
  return [load(s) for s in specs if s]


def from_environment() -> List[str]:
  """The plug-ins named by ``$HINT_JAX_PLUGINS``."""
  return [s for s in os.environ.get(ENV_VAR, "").split(os.pathsep) if s]
