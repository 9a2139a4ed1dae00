"""The old spelling of `hint_jax.defences`, kept so imports written
before the project settled on "defence" still work: ``hint_jax.defenses``
and its modules ``atda``, ``epic`` and ``friends`` are the same objects as
``hint_jax.defences``'s. New code imports `hint_jax.defences`."""

import sys

from hint_jax import defences as _defences
from hint_jax.defences import *  # pylint: disable=wildcard-import,unused-wildcard-import
from hint_jax.defences import atda, epic, friends

for _name in ("atda", "epic", "friends"):
  sys.modules[f"{__name__}.{_name}"] = getattr(_defences, _name)
