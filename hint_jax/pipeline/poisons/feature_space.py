"""Bullseye Polytope and Feature Collision (transfer: the poisons move
toward the target in the frozen extractor's feature space), registered as
``bp`` and ``fc``."""

from hint_jax.attacks import targeted
from hint_jax.pipeline.poisons.base import TargetedKind, register_targeted


def _feature_space(name, fn):
  """A feature-space attack on the extractor's features (Adam on delta,
  step size 0.01 unless given)."""
  def craft(c):
    lr = 0.01 if c.spec.lr is None else c.spec.lr
    c.meta.update(lr=lr, optimizer="adam")
    return fn(c.model.features_fn(c.state.params, c.state.model_state),
              c.bases[0], c.target[0], eps=c.meta["eps"],
              steps=c.meta["steps"], lr=lr, on_progress=c.stage(name))
  return craft


BP = register_targeted(TargetedKind(
    name="bp", label="Bullseye Polytope", scenario="transfer", eps=16 / 255,
    steps=200, craft=_feature_space("bp", targeted.bullseye_polytope)))
FC = register_targeted(TargetedKind(
    name="fc", label="Feature Collision", scenario="transfer", eps=16 / 255,
    steps=200, craft=_feature_space("fc", targeted.feature_collision)))
