"""Command-line options as data, so a plug-in (a defence, an attack) can
declare its own without importing the command line.

An `Option` names a flag, the spec field it fills and how its text is
read; ``hint-jax`` turns each into an argparse argument and builds the
plug-in's spec from the parsed values (`spec_from_values`). The readers
below raise ``ValueError`` with a message fit to print after the flag.
"""

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class Option:
  """One command-line option of a plug-in.

  Attributes:
    flag: the option, e.g. ``"--ratio"``.
    field: the spec field it fills.
    read: text -> value (raises ``ValueError``); None for a switch.
    default: the field's value when the option is not given.
    help: one sentence for ``--help``.
    choices: the allowed values (after ``read``), or None.
    switch: for an option without a value, the field's value when it is
      given (``default`` otherwise).
    metavar: the value's name in ``--help``.
  """
  flag: str
  field: str
  read: Optional[Callable[[str], Any]] = None
  default: Any = None
  help: str = ""
  choices: Optional[Tuple[Any, ...]] = None
  switch: Any = None
  metavar: Optional[str] = None

  @property
  def dest(self) -> str:
    """The attribute argparse stores the value under."""
    return self.flag.lstrip("-").replace("-", "_")


def spec_from_values(spec_type: type, options: Sequence[Option],
                     values: Mapping[str, Any]):
  """``spec_type`` with each option's field set from ``values`` (keyed by
  `Option.dest`; a missing key takes the option's default)."""
  return spec_type(**{o.field: values.get(o.dest, o.default)
                      for o in options})


def whole_number(low: int = 0) -> Callable[[str], int]:
  """A reader of whole numbers >= ``low``."""
  def read(text):
    try:
      value = int(text)
    except ValueError:
      raise ValueError(f"{text!r} is not a whole number") from None
    if value < low:
      raise ValueError(f"must be >= {low}, got {value}")
    return value
  return read


def number(text) -> float:
  """A finite number."""
  try:
    value = float(text)
  except ValueError:
    raise ValueError(f"{text!r} is not a number") from None
  if not math.isfinite(value):
    raise ValueError(f"must be a finite number, got {text}")
  return value


def positive_number(text) -> float:
  """A finite number > 0."""
  value = number(text)
  if not value > 0:
    raise ValueError(f"must be a finite number > 0, got {text}")
  return value


def or_none(read: Callable[[str], Any]) -> Callable[[str], Any]:
  """``read``, with the word "none" (any case) read as None."""
  def read_or_none(text):
    return None if text.strip().lower() == "none" else read(text)
  return read_or_none


def epoch_list(text) -> Tuple[int, ...]:
  """Comma-separated epochs, e.g. ``5,15,40``; "" or "none" for none."""
  text = text.strip()
  if text.lower() in ("", "none"):
    return ()
  try:
    return tuple(int(t) for t in text.split(","))
  except ValueError:
    raise ValueError(f"{text!r} is not a comma-separated list of epochs, "
                     "e.g. 5,15,40") from None
