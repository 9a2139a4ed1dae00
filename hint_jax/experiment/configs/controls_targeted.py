"""HINT and its controls against the targeted attacks: random signs and
the two strongest doses (gamma x100, a sign step of beta), each with its
random-sign twin, against Bullseye Polytope, Feature Collision and
gradient matching.

Command: ``hint-jax experiment controls_targeted --profile cpu --data-dir
DATA --out runs/exp`` (shares table3's sets and cells; gradient matching
crafts for about 40 min a trial). Found (``experiments/results/
controls_cpu/``): 80-130x HINT's noise stops 3 of the 6 BP/FC hits.
"""

from hint_jax.experiment.configs.base import TargetedProfile, add
from hint_jax.experiment.configs.methods import (
    CPU_CIFAR_CRAFT, CPU_CIFAR_TRAIN, HINT, HINT_GAMMA100, HINT_RANDOM_SIGN,
    HINT_RANDOM_SIGN_GAMMA100, HINT_RANDOM_SIGN_SIGN_BETA, HINT_SIGN_BETA,
    NONE, QUICK_TARGETED_CRAFT)

CONTROLS_TARGETED_METHODS = (NONE, HINT, HINT_RANDOM_SIGN, HINT_GAMMA100,
                             HINT_SIGN_BETA, HINT_RANDOM_SIGN_GAMMA100,
                             HINT_RANDOM_SIGN_SIGN_BETA)
add(TargetedProfile(
    "controls_targeted", "quick", "digits", ("bp", "gm"),
    (NONE, HINT, HINT_RANDOM_SIGN, HINT_SIGN_BETA), 1,
    craft_flags=QUICK_TARGETED_CRAFT,
    description=(
        "HINT and its controls against Bullseye Polytope and gradient "
        "matching on the embedded digits, one trial (the table3 quick "
        "sets and cells are shared): a smoke test. "
        "Command: hint-jax experiment controls_targeted --profile quick "
        "--out runs/exp.")))
add(TargetedProfile(
    "controls_targeted", "cpu", "cifar10", ("bp", "fc", "gm"),
    CONTROLS_TARGETED_METHODS, 3,
    craft_flags=CPU_CIFAR_CRAFT, train_flags=CPU_CIFAR_TRAIN,
    description=(
        "HINT, its random-sign twin and the two strongest doses (gamma x "
        "100, a sign step of beta per update) with their own random-sign "
        "twins against Bullseye Polytope, "
        "Feature Collision and gradient matching, 3 trials, at the table3 "
        "cpu settings in the preset's shape (shared sets and cells). "
        "Gradient matching crafts slowly on a CPU (about 40 minutes a "
        "trial): its no defence, HINT and strongest-dose cells first with "
        "--attacks gm --methods 'none,HINT,HINT sign-step beta'. "
        "Command: hint-jax experiment controls_targeted --profile "
        "cpu --data-dir DATA --out runs/exp (--attacks, --methods, "
        "--trials for a part).")))
add(TargetedProfile(
    "controls_targeted", "paper", "cifar10", ("bp", "fc", "gm"),
    CONTROLS_TARGETED_METHODS, 5,
    description=(
        "HINT and its controls against BP, FC and GM at the paper's "
        "CIFAR-10 settings, five trials. For an accelerator; not yet "
        "run.")))
