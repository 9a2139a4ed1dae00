"""The old spelling of `hint_jax.hint.defence` (the same objects), kept so
imports written before the project settled on "defence" still work."""

from hint_jax.hint.defence import *  # pylint: disable=wildcard-import,unused-wildcard-import
from hint_jax.hint.defence import Hint, HintUpdate
