"""Every defence behind one small protocol (`JobDefence`) and one
registry (`DefenceKind`, `register`), so a training job never asks which
defence it runs. HINT, EPIC, FRIENDS and ATDA register themselves here,
each from its own module; a defence of your own registers the same way
(README, "Add your own defence")."""

from hint_jax.pipeline.defences.base import (AlgorithmDefence, DefenceKind,
                                             JobDefence,
                                             defence_name, defence_notes,
                                             epoch_hook_on_top_layer, get,
                                             kind_of, make_defence, names,
                                             plain, register,
                                             resolve_defence)
from hint_jax.pipeline.defences.base import register as register_defence
# The built-in defences, registered in this order (the command line's).
from hint_jax.pipeline.defences.hint import (NOISE_FILE, HintDefence,
                                             HintSpec, hint_poison_record,
                                             hint_schedule, resolve_hint)
from hint_jax.pipeline.defences.epic import EpicDefence, EpicSpec, resolve_epic
from hint_jax.pipeline.defences.friends import FriendsDefence, resolve_friends
from hint_jax.pipeline.defences.atda import AtdaDefence
