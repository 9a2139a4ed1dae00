"""Every poisoning attack behind one registry: untargeted attacks
(`AttackKind`, `register_attack`) mixed into one poisoned set, and
targeted ones (`TargetedKind`, `register_targeted`) against one test
image. The built-ins register here, each from its own module, in the
command line's order; an attack of your own registers the same way
(README, "Add your own attack")."""

from hint_jax.pipeline.poisons.base import (AttackContext, AttackKind,
                                            Crafting, TargetCrafting,
                                            TargetedKind, attack_names,
                                            attack_of, get_attack,
                                            get_targeted, plain,
                                            register_attack,
                                            register_targeted,
                                            targeted_names)
from hint_jax.pipeline.poisons.pgd import PgdSpec
from hint_jax.pipeline.poisons.dap import DapSpec
from hint_jax.pipeline.poisons.durp import DurpSpec
from hint_jax.pipeline.poisons.deepconfuse import DcSpec
from hint_jax.pipeline.poisons.gradient_matching import GM
from hint_jax.pipeline.poisons.metapoison import MP, member_epochs
from hint_jax.pipeline.poisons.feature_space import BP, FC

# The untargeted mix the paper's Table II crafts.
DEFAULT_MIX = ("pgd", "dap", "durp", "dc")
