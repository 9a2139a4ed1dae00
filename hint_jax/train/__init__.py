"""Functional training: state, optimizers, steps and the epoch loop."""

from hint_jax.train import presets
from hint_jax.train.augment import random_shift_flip
from hint_jax.train.loop import DefenceHook, TrainConfig, Trainer, fit
from hint_jax.train.presets import preset
from hint_jax.train.optim import (PAPER_OPTIM, OptimConfig,
                                  learning_rate_schedule, make_optimizer)
from hint_jax.train.state import (TrainState, create_train_state,
                                  cross_entropy, make_eval_batch,
                                  make_train_step, make_train_steps, to_float)

__all__ = ["DefenceHook", "OptimConfig", "PAPER_OPTIM", "TrainConfig", "TrainState",
           "Trainer", "create_train_state", "cross_entropy", "fit",
           "learning_rate_schedule", "make_eval_batch", "make_optimizer",
           "make_train_step", "make_train_steps", "preset", "presets",
           "random_shift_flip", "to_float"]
