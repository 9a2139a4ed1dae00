"""The paper's experiments as configurations: one module per experiment,
each with its profiles and a docstring giving its command, what it costs
and what it found.

Every experiment is a grid of *cells* (dataset x poison ratio p x method x
trial); a cell is one ``hint-jax train`` run and its ``result.json``.
Profiles:

* ``quick`` -- the embedded 8x8 digits, a few minutes on a laptop CPU; CI
  runs it. It checks the machinery, not the paper's numbers.
* ``cpu`` -- real MNIST at the paper's MNIST settings on a 2-core CPU, with
  fewer trials than the paper; each module's docstring gives the command
  and the run time measured on such a machine.
* ``paper`` -- the paper's settings, MNIST and CIFAR-10, five trials; for an
  accelerator.

Trials differ only by the training seed (``--seed`` and ``--hint-seed`` are
``trial``); the poisoned set is crafted once per dataset, at p = 1, from
the profile's poison seed, and every lower ratio keeps a keyed subset of
those poisons (`hint_jax.attacks.lower_ratio`), so all tables share it.

Modules: `base` (the types and the registry), `methods` (the defences and
flag sets several experiments share), `table2`, `table3`, `table4`,
`table5`, `controls`, `controls_targeted`, `robustness`. The influence
benchmark's profiles are its own kind of job and live with it
(`hint_jax.studies.attribution_bench.PROFILES`). A new experiment is a
module that calls `add` for each profile, imported below.
"""

# pylint: disable=g-importing-member,unused-import
from hint_jax.experiment.configs.base import (
    ATTACK_REVISIONS, Cell, DatasetPlan, Method, NO_AUGMENT_ATTACKS,
    POISON_REVISIONS, PROFILES, Profile, TargetedCell, TargetedProfile,
    VICTIM_SEED_OFFSET, add, dataset_slug, digest, get_profile)
from hint_jax.experiment.configs.methods import (
    ATDA, CPU_CIFAR_CRAFT, CPU_CIFAR_POISON, CPU_CIFAR_TRAIN, EPIC, FRIENDS,
    HINT, HINT_GAMMA10, HINT_GAMMA100, HINT_RANDOM_SIGN,
    HINT_RANDOM_SIGN_GAMMA100, HINT_RANDOM_SIGN_SIGN_BETA,
    HINT_RANDOM_SUBSET, HINT_SIGN_BETA, NONE, QUICK_POISON,
    QUICK_TARGETED_CRAFT, hint_beta, hint_r, hint_random_sign_beta)
from hint_jax.experiment.configs.table2 import PAPER_TABLE2, TABLE2_METHODS
from hint_jax.experiment.configs.table3 import (
    PAPER_TABLE3, TABLE3_ATTACKS, TABLE3_METHODS)
from hint_jax.experiment.configs.table4 import (
    PAPER_TABLE4, TABLE4_METHODS, TABLE4_RANDOM_SIGN)
from hint_jax.experiment.configs.table5 import PAPER_TABLE5, TABLE5_METHODS
from hint_jax.experiment.configs.controls import CONTROLS_METHODS
from hint_jax.experiment.configs.controls_targeted import (
    CONTROLS_TARGETED_METHODS)
from hint_jax.experiment.configs.robustness import (
    HINT_MOMENTUM, HINT_NEGATIVE, HINT_RANDOM_SIGN_MOMENTUM,
    HINT_RANDOM_STEST, HINT_TRAIN_LOSS, MOMENTUM, NONE_MOMENTUM,
    ROBUSTNESS_DRAWS, ROBUSTNESS_METHODS, STRUCTURED_CONTROLS, draw_profile)

TABLES = ("table2", "table3", "table4", "table5", "controls",
          "controls_targeted", "robustness")
PROFILE_NAMES = ("quick", "cpu", "paper")
# Every profile name of any table (the standard three and a table's extra
# ones, e.g. robustness's cpu-draw1).
ALL_PROFILE_NAMES = tuple(sorted({name for _, name in PROFILES}))
