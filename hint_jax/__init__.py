"""hint_jax: HINT (Healthy Influential-Noise based Training) in JAX."""

from hint_jax.errors import ConfigError, DataError, HintJaxError, NumericalError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "HintJaxError", "NumericalError",
           "__version__"]
