"""DAP (error-minimising toward the next class, on the clean victim),
registered as ``dap``."""

import dataclasses
from typing import Optional

from hint_jax import attacks
from hint_jax.errors import ConfigError
from hint_jax.pipeline.options import Option, whole_number
from hint_jax.pipeline.poisons.base import AttackKind, register_attack

# Steps of eps/5 by preset key (otherwise 100, the specification's); the
# MNIST reduction is for crafting time (results READMEs).
DEFAULT_STEPS = {"mnist": 50}
SPECIFIED_STEPS = 100


@dataclasses.dataclass(frozen=True)
class DapSpec:
  """DAP: ``steps`` signed steps of eps/5 (None: the dataset's default)."""
  steps: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class DapConfig:
  steps: int
  step_size: float


def _resolve(spec: DapSpec, ctx):
  steps = spec.steps or DEFAULT_STEPS.get(ctx.preset, SPECIFIED_STEPS)
  if steps < 1:
    raise ConfigError(f"DAP needs steps >= 1, got {steps}")
  return DapConfig(steps=steps, step_size=ctx.eps / 5)


def _craft(c, x, y, chunk, report):
  del chunk   # deterministic
  return attacks.dap_attack(c.logits_fn, x, y, num_classes=c.num_classes,
                            eps=c.eps, steps=c.config.steps,
                            on_progress=report)


def _reductions(cfg: DapConfig):
  if cfg.steps < SPECIFIED_STEPS:
    return [f"DAP: {cfg.steps} steps of eps/5 instead of the specified "
            f"{SPECIFIED_STEPS}"]
  return []


KIND = register_attack(AttackKind(
    name="dap", label="DAP", spec_type=DapSpec, resolve=_resolve,
    craft=_craft, uses_victim=True, reductions=_reductions,
    record=lambda cfg: {"steps": cfg.steps, "step_size": cfg.step_size,
                        "target": "(y + 1) mod num_classes"},
    options=(Option("--dap-steps", "steps", whole_number(1), None,
                    help="DAP steps of eps/5 (default 100; mnist 50, "
                    "reduced for crafting time)"),),
    help="dap"))
