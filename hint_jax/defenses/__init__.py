"""Defence baselines of the paper (SPEC §5): EPIC so far."""

from hint_jax.defenses.epic import (Epic, EpicConfig, PAPER_EPIC,
                                    facility_location_greedy,
                                    gradient_proxies, select_isolated,
                                    similarity)
