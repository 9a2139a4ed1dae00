"""HINT: healthy influential-noise based training (paper Algorithms 1-3).

Example:
  >>> cfg = hint.paper_config("mnist")                # schedule {9}, r = 0.5
  >>> defence = hint.Hint(model, cfg, splits.x_train, splits.y_train,
  ...                     splits.x_val, splits.y_val, epochs=10)
  >>> hook = train.DefenceHook(defence)     # carries HINT's state
  >>> state, history, x_noised = fit(trainer, state, splits,
  ...                                before_epoch=hook)
  >>> defence.summary(hook.state)["selection_seconds"]
"""

from hint_jax.hint.config import DEFAULT_SCHEDULES
from hint_jax.hint.config import HintConfig
from hint_jax.hint.config import num_selected
from hint_jax.hint.config import paper_config
from hint_jax.hint.defence import Hint
from hint_jax.hint.defence import HintUpdate
from hint_jax.hint.noise import noise_step
from hint_jax.hint.noise import noise_write
from hint_jax.hint.noise import noised_images
from hint_jax.hint.noise import random_like_norm
from hint_jax.hint.noise import select_top
from hint_jax.hint.noise import with_signs_of

__all__ = ["DEFAULT_SCHEDULES", "Hint", "HintConfig", "HintUpdate",
           "noise_step", "noise_write", "noised_images", "num_selected",
           "paper_config", "random_like_norm", "select_top",
           "with_signs_of"]
