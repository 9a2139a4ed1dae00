"""DURP (one random perturbation per class), registered as ``durp``."""

import dataclasses

from hint_jax import attacks
from hint_jax.errors import ConfigError
from hint_jax.pipeline.options import Option
from hint_jax.pipeline.poisons.base import AttackKind, register_attack


@dataclasses.dataclass(frozen=True)
class DurpSpec:
  """DURP: each class's perturbation is random signs of the whole budget
  (``"sign"``) or uniform in [-eps, eps] (``"uniform"``)."""
  values: str = "sign"


def _resolve(spec: DurpSpec, ctx):
  del ctx
  if spec.values not in attacks.DURP_VALUES:
    raise ConfigError(f"DURP values must be one of {attacks.DURP_VALUES}, "
                      f"got {spec.values!r}")
  return spec


def _craft(c, x, y, chunk, report):
  # One perturbation per class for the whole attack: the key does not
  # depend on the chunk.
  del chunk, report
  return attacks.durp_attack(x, y, c.key, num_classes=c.num_classes,
                             eps=c.eps, values=c.config.values)


KIND = register_attack(AttackKind(
    name="durp", label="DURP", spec_type=DurpSpec, resolve=_resolve,
    craft=_craft, record=lambda cfg: {"values": cfg.values},
    options=(Option("--durp-values", "values", str, "sign",
                    choices=attacks.DURP_VALUES,
                    help="DURP's per-class perturbation: random signs of "
                    "the whole budget (default) or uniform in [-eps, "
                    "eps]"),),
    help="durp"))
