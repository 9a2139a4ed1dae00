"""ATDA as a registered defence: adversarial training with FAT's early
stop; its configuration serves as its spec."""

from hint_jax import defences
from hint_jax.pipeline.defences.base import (DefenceKind, JobDefence,
                                             register)
from hint_jax.pipeline.options import Option, number, or_none, whole_number


class AtdaDefence(JobDefence):
  """ATDA: adversarial examples inside every training step (its time is in
  the training time)."""
  name = "atda"

  def adversary(self, model):
    return defences.make_adversary(model, self.config)


_D = defences.AtdaConfig()

OPTIONS = (
    Option("--atda-eps", "eps", number, _D.eps,
           help="budget in --atda-norm, [0,1] units (0.25 against "
           "untargeted attacks; the paper uses 0.062 against targeted "
           "ones)"),
    Option("--atda-norm", "norm", str, _D.norm, choices=defences.atda.NORMS,
           help="the inner attack's norm: l2 (default, as the reference "
           "code the paper cites) or linf"),
    Option("--atda-steps", "steps", whole_number(1), _D.steps),
    Option("--atda-step-size", "step_size", number, None,
           help="default eps/5"),
    Option("--atda-tau", "tau", or_none(whole_number(0)), _D.tau,
           help="FAT: steps allowed after the first misclassification (0); "
           "'none' for plain PGD adversarial training"),
)

KIND = register(DefenceKind(
    name="atda", label="ATDA", spec_type=defences.AtdaConfig,
    resolve=lambda spec, dataset, epochs, _schedule: spec.validate(),
    build=lambda config, model, splits, **_: AtdaDefence(config),
    options=OPTIONS,
    help="ATDA (--defence atda: adversarial training, FAT early stop)"))
