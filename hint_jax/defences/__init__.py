"""Defence baselines of the HINT paper: EPIC, FRIENDS, ATDA."""

from hint_jax.defences.atda import (AtdaConfig, early_stopped_pgd,
                                    make_adversary)
from hint_jax.defences.epic import (Epic, EpicConfig, PAPER_EPIC,
                                    facility_location_greedy,
                                    gradient_proxies, select_isolated,
                                    similarity)
from hint_jax.defences.friends import (Friends, FriendsConfig,
                                       apply_friendly, friendly_noise,
                                       friendly_objective)
from hint_jax.train.augment import bernoulli_noise
