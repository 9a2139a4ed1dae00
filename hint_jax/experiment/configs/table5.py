"""Table V: the wall time of each defence as a ratio to training without
one.

Command: ``hint-jax experiment table5 --profile cpu --data-dir DATA --out
runs/exp`` (its cells are table2's p = 1 cells: nothing new to train once
table2 ran); ``hint-jax bench defences`` measures the same side by side.
Found (``experiments/results/table5_mnist_cpu/``, side by side on real
MNIST): HINT 1.04x, EPIC 1.09x, FRIENDS 3.29x, ATDA 6.84x.
"""

from hint_jax.experiment.configs.base import Profile, add
from hint_jax.experiment.configs.methods import (
    ATDA, EPIC, FRIENDS, HINT, NONE, QUICK_POISON, hint_r)

TABLE5_METHODS = (NONE, hint_r(0.25), HINT, hint_r(0.75), hint_r(1.0),
                  ATDA, FRIENDS, EPIC)

add(Profile(
    "table5", "quick", ("digits",), (1.0,), TABLE5_METHODS, 1,
    poison_flags=QUICK_POISON, description=(
        "Wall time of each defence on the digits at p = 1 as a ratio to no "
        "defence; a smoke test (the digits train in seconds, so the ratios "
        "say little). Command: hint-jax experiment table5 --profile quick "
        "--out runs/exp.")))
add(Profile(
    "table5", "cpu", ("mnist",), (1.0,), TABLE5_METHODS, 1, description=(
        "Wall time of each defence on real MNIST at p = 1 (the paper's "
        "Table V is CIFAR-10 on a V100), one run each; shares the p = 1 "
        "cells of table2. Cells run at different times on a shared machine, "
        "so ratios carry that noise; `hint-jax bench defences` measures "
        "side by side. Command: hint-jax experiment table5 --profile cpu "
        "--data-dir DATA --out runs/exp.")))
add(Profile(
    "table5", "paper", ("cifar10",), (1.0,), TABLE5_METHODS, 1,
    description="The paper's Table V: CIFAR-10 wall time of each defence. "
    "For an accelerator."))

# The paper's Table V, for the reports.
PAPER_TABLE5 = {  # CIFAR-10 seconds on a V100
    "none": 1600, "HINT r=0.25": 2113, "HINT": 2427, "HINT r=0.75": 2745,
    "HINT r=1": 2875, "ATDA": 5760, "FRIENDS": 2426, "EPIC": 3147}
