"""Targeted poisoning attacks of the paper's Table III.

Each attack perturbs a set of *base* images (drawn from one class, keeping
their labels) so that a victim trained on them classifies one *target* test
image as an *intended* class:

- `feature_collision` (Poison Frogs) and `bullseye_polytope`: transfer
  learning; they work in the feature space of a frozen extractor phi.
- `gradient_matching` (Witches' Brew) and `metapoison`: training from
  scratch; they work through the parameters of surrogate models.

Images are uint8 in and out, and the L-inf budget holds exactly after
quantisation (`untargeted.quantize_within_budget`). The perturbation delta
lives in [0, 1] pixel units, is optimised by Adam (signed Adam for gradient
matching) and is projected onto the eps-ball and the valid pixel range after
every step. Every example's delta is optimised together in one array; the
steps are jitted one by one and dispatched from Python, like the untargeted
attacks (XLA:CPU runs convolutions inside a ``lax`` loop much slower).

Every function returns ``(poisons_u8, losses)``: the poisoned images and the
objective after each step (a numpy array; for gradient matching one column
per restart), so callers can check and show the optimisation.

The attacks live in one module per family (`feature_space`,
`gradient_matching`, `metapoison`); this module gathers their public names.
"""

from hint_jax.attacks._targeted_common import FeaturesFn
from hint_jax.attacks.feature_space import bullseye_polytope
from hint_jax.attacks.feature_space import feature_collision
from hint_jax.attacks.gradient_matching import GradientMatchingConfig
from hint_jax.attacks.gradient_matching import gradient_alignment
from hint_jax.attacks.gradient_matching import gradient_matching
from hint_jax.attacks.gradient_matching import param_gradient
from hint_jax.attacks.metapoison import MetaPoisonConfig
from hint_jax.attacks.metapoison import cw_loss
from hint_jax.attacks.metapoison import metapoison
from hint_jax.attacks.metapoison import trainer_advance
from hint_jax.attacks.metapoison import unrolled_target_loss

__all__ = ["FeaturesFn", "GradientMatchingConfig", "MetaPoisonConfig",
           "bullseye_polytope", "cw_loss", "feature_collision",
           "gradient_alignment", "gradient_matching", "metapoison",
           "param_gradient", "trainer_advance", "unrolled_target_loss"]
