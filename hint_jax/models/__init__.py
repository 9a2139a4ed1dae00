"""The paper's models as Flax modules, turned into pure functions here.

Every model maps float images in [0, 1] (NHWC) to logits, can also return its
penultimate features phi(x), and names its final Dense layer ``head`` so that
later code can restrict work to theta_top = ``params["head"]``
(``{"kernel": (d, K), "bias": (K,)}``; logits = phi @ kernel + bias).

BatchNorm statistics are explicit state: ``model_state`` is the
``batch_stats`` collection (an empty dict for models without BatchNorm).

Example:
  >>> model = get_model("convnet", num_classes=10, input_shape=(28, 28, 1))
  >>> params, model_state = model.init(jax.random.key(0))
  >>> logits = model.apply_eval(params, model_state, x)           # inference
  >>> logits, model_state = model.apply_train(params, model_state, x)
"""

import dataclasses
from typing import Any, Callable, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hint_jax.errors import ConfigError
from hint_jax.models.convnet import ConvNet
from hint_jax.models.resnet import BasicBlock, ResNet
from hint_jax.models.simple import MLP, LogReg

TOP_LAYER = "head"

MODEL_NAMES = ("convnet", "convnet_small", "resnet18", "resnet_tiny",
               "logreg", "mlp")
DEFAULT_MODEL = {"mnist": "convnet", "cifar10": "resnet18",
                 "digits": "convnet_small"}


def is_top_layer(path) -> bool:
  """Tree-path predicate selecting theta_top (the final Dense layer)."""
  first = path[0]
  key = getattr(first, "key", first)
  return key == TOP_LAYER


@dataclasses.dataclass(frozen=True)
class Model:
  """A Flax module together with the pure functions built from it."""
  name: str
  module: nn.Module
  input_shape: Tuple[int, int, int]

  def init(self, key) -> Tuple[Any, Any]:
    """Returns ``(params, model_state)`` for one key."""
    x = jnp.zeros((1,) + tuple(self.input_shape), jnp.float32)
    variables = self.module.init(key, x, train=False)
    return variables["params"], variables.get("batch_stats", {})

  def apply_eval(self, params, model_state, x, return_features=False):
    """Inference mode: BatchNorm uses its running statistics."""
    return self.module.apply({"params": params, "batch_stats": model_state},
                             x, train=False, return_features=return_features)

  def apply_train(self, params, model_state, x):
    """Train mode: returns ``(logits, new_model_state)``."""
    if not model_state:
      return self.module.apply({"params": params}, x, train=True), model_state
    logits, updates = self.module.apply(
        {"params": params, "batch_stats": model_state}, x, train=True,
        mutable=["batch_stats"])
    return logits, updates["batch_stats"]

  def features(self, params, model_state, x):
    """Penultimate features phi(x) in inference mode."""
    return self.apply_eval(params, model_state, x, return_features=True)[1]

  def logits_fn(self, model_state) -> Callable:
    """``f(params, x_batch) -> logits`` in inference mode (for influence)."""
    return lambda params, x: self.apply_eval(params, model_state, x)


def get_model(name: str, num_classes: int, input_shape) -> Model:
  """Builds a model by name; see ``MODEL_NAMES``."""
  input_shape = tuple(int(s) for s in input_shape)
  if name == "convnet":
    if input_shape[:2] != (28, 28):
      raise ConfigError(f"convnet expects 28x28 inputs (MNIST), got "
                        f"{input_shape}; use convnet_small or mlp")
    module = ConvNet(num_classes)
  elif name == "convnet_small":
    # Same layer sequence as the MNIST ConvNet, sized for 8x8 digits.
    module = ConvNet(num_classes, widths=(16, 32), kernel_size=3,
                     padding="SAME")
  elif name == "resnet18":
    module = ResNet(num_classes)
  elif name == "resnet_tiny":
    # A narrow, shallow ResNet for CPU-sized CIFAR runs and tests.
    module = ResNet(num_classes, stage_sizes=(1, 1, 1, 1),
                    widths=(16, 32, 64, 128))
  elif name == "logreg":
    module = LogReg(num_classes)
  elif name == "mlp":
    module = MLP(num_classes)
  else:
    raise ConfigError(f"unknown model {name!r}; choose one of "
                      f"{', '.join(MODEL_NAMES)}")
  return Model(name, module, input_shape)


def num_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))


__all__ = ["BasicBlock", "ConvNet", "DEFAULT_MODEL", "LogReg", "MLP",
           "MODEL_NAMES", "Model", "ResNet", "TOP_LAYER", "get_model",
           "is_top_layer", "num_params"]
