"""The HINT paper's poisoning attacks and the poisoned-dataset file.

The untargeted PGD, DAP, DURP and DeepConfuse attacks, mixed poisoning in
equal shares and the ``.npz`` file format; the targeted Feature Collision,
Bullseye Polytope, Gradient Matching and MetaPoison attacks (`targeted`).
Not yet built: the targeted attacks' file format, command line and
attack-success harness.
"""

from hint_jax.attacks.deepconfuse import DeepConfuseConfig
from hint_jax.attacks.deepconfuse import deepconfuse_poison
from hint_jax.attacks.deepconfuse import train_generator
from hint_jax.attacks.poisonset import FORMAT
from hint_jax.attacks.poisonset import PoisonedSet
from hint_jax.attacks.poisonset import assign_attacks
from hint_jax.attacks.poisonset import check_target
from hint_jax.attacks.poisonset import clean_twin
from hint_jax.attacks.poisonset import load_poisoned
from hint_jax.attacks.poisonset import lower_ratio
from hint_jax.attacks.poisonset import poisoned_training_images
from hint_jax.attacks.poisonset import save_poisoned
from hint_jax.attacks.poisonset import validate
from hint_jax.attacks.targeted import GradientMatchingConfig
from hint_jax.attacks.targeted import MetaPoisonConfig
from hint_jax.attacks.targeted import bullseye_polytope
from hint_jax.attacks.targeted import feature_collision
from hint_jax.attacks.targeted import gradient_matching
from hint_jax.attacks.targeted import metapoison
from hint_jax.attacks.untargeted import budget_levels
from hint_jax.attacks.untargeted import dap_attack
from hint_jax.attacks.untargeted import DURP_VALUES
from hint_jax.attacks.untargeted import durp_attack
from hint_jax.attacks.untargeted import pgd_attack
from hint_jax.attacks.untargeted import quantize_within_budget

__all__ = ["assign_attacks", "budget_levels", "bullseye_polytope",
           "check_target", "clean_twin", "dap_attack", "deepconfuse_poison",
           "DeepConfuseConfig", "durp_attack", "DURP_VALUES",
           "feature_collision", "FORMAT", "gradient_matching",
           "GradientMatchingConfig", "load_poisoned", "lower_ratio",
           "metapoison", "MetaPoisonConfig", "pgd_attack",
           "poisoned_training_images", "PoisonedSet",
           "quantize_within_budget", "save_poisoned", "train_generator",
           "validate"]
