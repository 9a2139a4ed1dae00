"""The defences (`Method`s) and flag sets that more than one experiment
uses: no defence, HINT and the paper's baselines at their defaults, HINT's
controls (random signs, a random subset, larger doses), and the reduced
settings the cpu profiles share (the digits' short DeepConfuse, the
CIFAR-10 cpu runs). An experiment's own methods live in its module."""

from hint_jax.experiment.configs.base import Method

NONE = Method("none", "none")
HINT = Method("HINT", "hint")
# The norm is named in the flags (not left to the default) so ATDA cells of
# the earlier L-inf default keep ids of their own.
ATDA = Method("ATDA", "atda", ("--atda-norm", "l2"))
FRIENDS = Method("FRIENDS", "friends")
EPIC = Method("EPIC", "epic")


def hint_r(r):
  """HINT selecting the fraction ``r`` of the training set."""
  return Method(f"HINT r={r:g}", "hint", ("--ratio", repr(r)))


def hint_beta(levels):
  """HINT with the bound beta = ``levels`` / 255."""
  return Method(f"HINT beta={levels / 255:.3f}", "hint",
                ("--beta", repr(levels / 255)))


def hint_random_sign_beta(levels):
  """`hint_beta` with random signs (HINT's per-pixel magnitudes)."""
  return Method(f"HINT random-sign beta={levels / 255:.3f}", "hint",
                ("--hint-direction", "random_sign", "--beta",
                 repr(levels / 255)))


# HINT's controls: variants that keep one part of it and replace the other
# by chance, and larger doses of its own noise.
# (b) the same examples and per-pixel step magnitude, random signs;
# (c) a random subset of the same size, HINT's noise;
# (d) gamma x10, x100, and a sign step of beta per update (noise at the
#     bound after one update).
HINT_RANDOM_SIGN = Method("HINT random-sign", "hint",
                          ("--hint-direction", "random_sign"))
HINT_RANDOM_SUBSET = Method("HINT random-subset", "hint",
                            ("--hint-selection", "random"))
HINT_GAMMA10 = Method("HINT gamma x10", "hint", ("--gamma", "1.0"))
HINT_GAMMA100 = Method("HINT gamma x100", "hint", ("--gamma", "10.0"))
HINT_SIGN_BETA = Method("HINT sign-step beta", "hint",
                        ("--sign-step", "--gamma", repr(16 / 255)))
# (b) at the doses of (d): does the direction matter once the noise is
#     large enough to change the outcome?
HINT_RANDOM_SIGN_GAMMA100 = Method(
    "HINT random-sign gamma x100", "hint",
    ("--hint-direction", "random_sign", "--gamma", "10.0"))
HINT_RANDOM_SIGN_SIGN_BETA = Method(
    "HINT random-sign sign-step beta", "hint",
    ("--hint-direction", "random_sign", "--sign-step", "--gamma",
     repr(16 / 255)))

# The digits' DeepConfuse generator is trained for 300 steps in the quick
# profiles.
QUICK_POISON = ("--dc-steps", "300")
# The targeted quick profiles' crafting on the digits.
QUICK_TARGETED_CRAFT = ("--budget", "0.005", "--steps", "20", "--restarts",
                        "2", "--ensemble", "2", "--victim-epochs", "5")
# The CIFAR-10 cpu runs: 15 of the preset's 80 epochs in the preset's shape
# (learning rate x0.1 at 6/9/13, HINT at 1/3/8, gamma/10 from 8), named in
# the flags so cells of the earlier absolute schedule keep their own ids.
CPU_CIFAR_CRAFT = ("--model", "resnet_tiny", "--victim-epochs", "15",
                   "--restarts", "4", "--ensemble", "4", "--epoch-schedule",
                   "scaled")
CPU_CIFAR_TRAIN = ("--model", "resnet_tiny", "--subset", "10000", "--epochs",
                   "15", "--epoch-schedule", "scaled")
# The untargeted CIFAR-10 mix crafted against the same reduced victim.
CPU_CIFAR_POISON = ("--model", "resnet_tiny", "--victim-epochs", "15",
                    "--epoch-schedule", "scaled")
