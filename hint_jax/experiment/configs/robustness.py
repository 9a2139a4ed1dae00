"""Is the MNIST result robust? Other poison draws and splits, structured
controls that carry no validation information, SGD momentum, p = 0.9 and
0.95, and random signs at p = 0; its plan, comparisons and decision rule
were committed before any run (``experiments/results/robustness_cpu/``).

Command: ``hint-jax experiment robustness --profile cpu --data-dir DATA
--out runs/exp``, then ``--profile cpu-draw1`` and ``cpu-draw2``; about
10-13 min a cell and 20 min a crafted set on a 2-core CPU, some 10 h in
all. Found so far: over 3 draws x 3 seeds HINT - none +41.93 points
[+36.74, +47.12], HINT - random signs +50.08 [+45.85, +54.31].
"""

from hint_jax.experiment.configs.base import Method, Profile, add
from hint_jax.experiment.configs.methods import (
    HINT, HINT_RANDOM_SIGN, NONE, QUICK_POISON)

# Does the MNIST result survive other poison draws, structured directions
# that carry no validation information, and the recipe most users train
# with? Every control keeps HINT's selection and per-pixel step magnitude
# (`hint_jax.hint.HintConfig.direction`).
HINT_NEGATIVE = Method("HINT negative", "hint",
                       ("--hint-direction", "negative"))
HINT_RANDOM_STEST = Method("HINT random s_test", "hint",
                           ("--hint-direction", "random_stest"))
HINT_TRAIN_LOSS = Method("HINT train-loss", "hint",
                         ("--hint-direction", "train_loss"))
STRUCTURED_CONTROLS = (HINT_NEGATIVE, HINT_RANDOM_STEST, HINT_TRAIN_LOSS)
# SGD momentum 0.9, the generic recipe (`presets.PRESETS["generic"]`).
MOMENTUM = ("--momentum", "0.9")
NONE_MOMENTUM = Method("none momentum", "none", MOMENTUM)
HINT_MOMENTUM = Method("HINT momentum", "hint", MOMENTUM)
HINT_RANDOM_SIGN_MOMENTUM = Method(
    "HINT random-sign momentum", "hint",
    ("--hint-direction", "random_sign") + MOMENTUM)
ROBUSTNESS_METHODS = ((NONE, HINT, HINT_RANDOM_SIGN) + STRUCTURED_CONTROLS
                      + (NONE_MOMENTUM, HINT_MOMENTUM,
                         HINT_RANDOM_SIGN_MOMENTUM))
_P1_ONLY = tuple((m.label, (1.0,)) for m in STRUCTURED_CONTROLS
                 + (NONE_MOMENTUM, HINT_MOMENTUM, HINT_RANDOM_SIGN_MOMENTUM))
_PRIMARY = (NONE, HINT, HINT_RANDOM_SIGN)
# The further draws: (poison seed, split seed). Draw 0 is the profile
# "cpu" (seed 0, split 0: the set and cells of table2/controls cpu).
ROBUSTNESS_DRAWS = ((1, 1), (2, 2))


def draw_profile(base: str, draw: int) -> str:
  """The profile name of draw ``draw`` > 0 of profile ``base`` (its own
  crafted set and split)."""
  return f"{base}-draw{draw}"


add(Profile(
    "robustness", "quick", ("digits",), (1.0,),
    (NONE, HINT, HINT_RANDOM_SIGN) + STRUCTURED_CONTROLS, 1,
    poison_flags=QUICK_POISON, description=(
        "The robustness grid's machinery on the embedded digits at p = 1, "
        "one trial: HINT, its random-sign twin and the three structured "
        "controls; quick-draw1 repeats none and HINT on another poison "
        "draw and split. A smoke test, not a result. Command: hint-jax "
        "experiment robustness --profile quick --out runs/exp (and "
        "--profile quick-draw1).")))
add(Profile(
    "robustness", draw_profile("quick", 1), ("digits",), (1.0,),
    (NONE, HINT), 1, poison_flags=QUICK_POISON, poison_seed=1,
    train_flags=("--split-seed", "1"), description=(
        "robustness quick on a second draw: poison seed 1, split seed 1. "
        "Command: hint-jax experiment robustness --profile quick-draw1 "
        "--out runs/exp.")))
add(Profile(
    "robustness", "cpu", ("mnist",), (0.0, 0.9, 0.95, 1.0),
    ROBUSTNESS_METHODS, 3,
    only_at=_P1_ONLY + ((HINT_RANDOM_SIGN.label, (0.0, 1.0)),),
    description=(
        "Real MNIST at the table2 cpu settings (ConvNet, 10 epochs of SGD "
        "0.01, batch 128; HINT r = 0.5, gamma 0.1, beta 16/255 before epoch "
        "10), poison draw 0 (seed 0, split 0: table2/controls cpu's set and "
        "p = 1 and p = 0 cells), 3 training seeds: at p = 1 no defence, "
        "HINT, random signs, and the structured controls (-I_pert; I_pert "
        "with a random s_test of the same norm; the training-loss input "
        "gradient, error-minimising), each at HINT's per-pixel magnitude; "
        "none, HINT and random signs again with SGD momentum 0.9 (the "
        "generic recipe); none and HINT at p = 0.9 and 0.95; random signs "
        "at p = 0 beside table2's none and HINT there. The plan, the "
        "comparison and its rule: experiments/results/robustness_cpu/"
        "README.md. Command: hint-jax experiment robustness --profile cpu "
        "--data-dir DATA --out runs/exp (then cpu-draw1, cpu-draw2).")))
for _draw, (_pseed, _sseed) in enumerate(ROBUSTNESS_DRAWS, start=1):
  add(Profile(
      "robustness", draw_profile("cpu", _draw), ("mnist",), (1.0,),
      _PRIMARY, 3, poison_seed=_pseed,
      train_flags=("--split-seed", str(_sseed)), description=(
          f"robustness cpu's primary comparison on poison draw {_draw}: "
          f"the mix crafted again with seed {_pseed} (victim, attack "
          f"assignment, PGD starts, DURP signs) on the train/validation "
          f"split of seed {_sseed}; p = 1, no defence, HINT and random "
          f"signs, 3 training seeds. Command: hint-jax experiment "
          f"robustness --profile cpu-draw{_draw} --data-dir DATA --out "
          f"runs/exp.")))
add(Profile(
    "robustness", "paper", ("mnist", "cifar10"), (1.0,),
    (NONE, HINT, HINT_RANDOM_SIGN) + STRUCTURED_CONTROLS, 5,
    description=(
        "The robustness controls at the paper's settings, MNIST and "
        "CIFAR-10, p = 1, five trials (draws: run with --poison-file sets "
        "crafted with other seeds). For an accelerator; not yet run.")))
