"""User-facing errors.

Every error that a user can cause by bad input (a missing file, a corrupt
archive, an impossible hyper-parameter) is raised as a subclass of
:class:`HintJaxError`. The command line catches exactly this class and prints
its message on one line with a non-zero exit status; anything else is a bug
and keeps its traceback.
"""


class HintJaxError(Exception):
  """Base class for errors caused by the user's input or environment."""


class DataError(HintJaxError):
  """Data files are missing, corrupt, or do not match what was asked for."""


class ConfigError(HintJaxError, ValueError):
  """A hyper-parameter or option has an impossible value."""


class NumericalError(HintJaxError, FloatingPointError):
  """A numerical routine diverged or produced non-finite values."""
