"""PGD (error-maximising, on the clean victim), registered as ``pgd``."""

import dataclasses

import jax

from hint_jax import attacks
from hint_jax.errors import ConfigError
from hint_jax.pipeline.options import Option, number, whole_number
from hint_jax.pipeline.poisons.base import AttackKind, register_attack


@dataclasses.dataclass(frozen=True)
class PgdSpec:
  """PGD from a random start: ``steps`` signed-gradient steps of
  ``step_size`` (pixel units) on the victim's cross-entropy."""
  steps: int = 40
  step_size: float = 0.01


def _resolve(spec: PgdSpec, ctx):
  del ctx
  if spec.steps < 1 or not spec.step_size > 0:
    raise ConfigError(f"PGD needs steps >= 1 and step_size > 0, got "
                      f"{spec.steps} and {spec.step_size}")
  return spec


def _craft(c, x, y, chunk, report):
  return attacks.pgd_attack(c.logits_fn, x, y, jax.random.fold_in(c.key, chunk),
                            eps=c.eps, steps=c.config.steps,
                            step_size=c.config.step_size, on_progress=report)


KIND = register_attack(AttackKind(
    name="pgd", label="PGD", spec_type=PgdSpec, resolve=_resolve,
    craft=_craft, uses_victim=True,
    record=lambda cfg: {"steps": cfg.steps, "step_size": cfg.step_size,
                        "random_start": True},
    options=(Option("--pgd-steps", "steps", whole_number(1), 40),
             Option("--pgd-step-size", "step_size", number, 0.01)),
    help="pgd"))
