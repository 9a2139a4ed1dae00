"""HINT against its controls under the untargeted mix: random signs of
HINT's per-pixel magnitudes, a random subset of the same size, and larger
doses of its own noise (gamma x10, x100, a sign step of beta).

Command: ``hint-jax experiment controls --profile cpu --data-dir DATA
--out runs/exp``; about 5-6 min a cell on a 2-core CPU, shares its p = 1
and p = 0.6 cells with table2. Found (``experiments/results/controls_cpu/``,
MNIST p = 1, 3 seeds): the same noise with random signs 41.45 +- 7.32%,
below no defence (50.30%), against HINT's 90.33%: the gain is HINT's
direction, not the noise's size.
"""

from hint_jax.experiment.configs.base import Profile, add
from hint_jax.experiment.configs.methods import (
    ATDA, HINT, HINT_GAMMA10, HINT_GAMMA100, HINT_RANDOM_SIGN,
    HINT_RANDOM_SUBSET, HINT_SIGN_BETA, NONE, QUICK_POISON)

CONTROLS_METHODS = (NONE, HINT, HINT_RANDOM_SIGN, HINT_RANDOM_SUBSET,
                    HINT_GAMMA10, HINT_GAMMA100, HINT_SIGN_BETA, ATDA)

add(Profile(
    "controls", "quick", ("digits",), (1.0,), CONTROLS_METHODS, 1,
    poison_flags=QUICK_POISON, description=(
        "HINT against its controls on the embedded digits at p = 1, one "
        "trial: a smoke test of the machinery, not a result. Command: "
        "hint-jax experiment controls --profile quick --out runs/exp.")))
add(Profile(
    "controls", "cpu", ("mnist",), (1.0, 0.6), CONTROLS_METHODS, 1,
    more_trials=tuple((1.0, m.label, 3) for m in (NONE, HINT,
                                                   HINT_RANDOM_SIGN)),
    description=(
        "HINT against its controls on real MNIST, the table2 cpu settings "
        "and crafted set (shared cells): p = 1 and 0.6; at p = 1 no "
        "defence, HINT and its random-sign twin with 3 training seeds "
        "(trial t: --seed t --hint-seed t), every other method one. "
        "Command: hint-jax experiment controls --profile cpu --data-dir "
        "DATA --out runs/exp.")))
add(Profile(
    "controls", "paper", ("mnist", "cifar10"), (1.0, 0.6), CONTROLS_METHODS,
    5, description=(
        "HINT against its controls at the paper's settings, MNIST and "
        "CIFAR-10, p = 1 and 0.6, five trials. For an accelerator; not yet "
        "run.")))
