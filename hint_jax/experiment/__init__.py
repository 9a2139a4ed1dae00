"""The paper's experiments: table configurations (`configs`), the cells'
runner (`runner`), their results read back (`results`), and the report
built from them: tables (`report`) and figures (`figures`). The command
line runs them: ``hint-jax experiment`` and ``hint-jax report``."""

from hint_jax.experiment.configs import ALL_PROFILE_NAMES
from hint_jax.experiment.configs import Cell
from hint_jax.experiment.configs import Method
from hint_jax.experiment.configs import PROFILE_NAMES
from hint_jax.experiment.configs import Profile
from hint_jax.experiment.configs import TABLES
from hint_jax.experiment.configs import TargetedCell
from hint_jax.experiment.configs import TargetedProfile
from hint_jax.experiment.configs import get_profile

__all__ = ["ALL_PROFILE_NAMES", "Cell", "Method", "PROFILE_NAMES", "Profile", "TABLES",
           "TargetedCell", "TargetedProfile", "get_profile"]
