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
import functools
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from hint_jax import xla_options
from hint_jax.errors import ConfigError
from hint_jax.models.convnet import ConvNet
from hint_jax.models.resnet import BasicBlock, ResNet
from hint_jax.models.simple import MLP, LogReg

TOP_LAYER = "head"

MODEL_NAMES = ("convnet", "convnet_small", "resnet18", "resnet_tiny",
               "logreg", "mlp")
DEFAULT_MODEL = {"mnist": "convnet", "cifar10": "resnet18",
                 "digits": "convnet_small"}
# The MNIST ConvNet (two VALID 5x5 convolutions, each followed by a 2x2
# pooling) needs inputs of at least 16x16 (28x28 gives 4x4x100 features).
CONVNET_MIN_SIZE = 16
# convnet_small pools twice (SAME padding): 4x4 is its smallest input.
CONVNET_SMALL_MIN_SIZE = 4


def _name(entry):
  return getattr(entry, "key", getattr(entry, "name", entry))


def is_top_layer(path) -> bool:
  """Tree-path predicate selecting theta_top (the final Dense layer) in a
  ``params`` tree."""
  return _name(path[0]) == TOP_LAYER


def is_top_variable(path) -> bool:
  """Tree-path predicate selecting theta_top in a ``variables`` tree
  ``{"params": ..., "batch_stats": ...}`` (see ``Model.example_loss``)."""
  return (len(path) >= 2 and _name(path[0]) == "params"
          and _name(path[1]) == TOP_LAYER)


def variables(params, model_state) -> dict:
  """The pytree that ``Model.example_loss`` differentiates."""
  return {"params": params, "batch_stats": model_state}


@dataclasses.dataclass(frozen=True)
class Model:
  """A Flax module together with the pure functions built from it."""
  name: str
  module: nn.Module
  input_shape: Tuple[int, int, int]
  # The same network (same parameter tree) built for forward-only passes,
  # where another implementation can be faster; None: ``module``. Must
  # compute the same function to float32 rounding.
  forward_module: Optional[nn.Module] = None

  def init(self, key) -> Tuple[Any, Any]:
    """Returns ``(params, model_state)`` for one key."""
    x = jnp.zeros((1,) + tuple(self.input_shape), jnp.float32)
    variables = self.module.init(key, x, train=False)
    return variables["params"], variables.get("batch_stats", {})

  @property
  def _forward(self) -> nn.Module:
    return self.forward_module or self.module

  def apply_eval(self, params, model_state, x, return_features=False):
    """Inference mode: BatchNorm uses its running statistics. Runs
    ``forward_module`` when set (the same values as ``module``)."""
    return self._forward.apply({"params": params, "batch_stats": model_state},
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

  @functools.cached_property
  def example_loss(self) -> Callable:
    """``loss_one(variables, x, y)``: cross-entropy of ONE example (``x`` of
    shape ``input_shape``, float in [0, 1]) in inference mode, as a function
    of ``variables(params, model_state)``.

    This is the per-example loss that ``hint_jax.influence`` takes. It is
    built once per model (the same function object every time, so jitted
    influence code does not recompile), and the BatchNorm statistics travel
    inside the differentiated pytree; restrict it with
    ``influence.restrict(variables, is_top_variable)`` to work on theta_top.
    """
    module = self.module

    def loss_one(var, x, y):
      logits = module.apply(var, x[None], train=False)[0]
      return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    return loss_one

  @functools.cached_property
  def _top_loss(self) -> Callable:
    module = self.module

    def loss(body, top, x, y):
      var = {"params": {**body["params"], TOP_LAYER: top},
             "batch_stats": body["batch_stats"]}
      logits = module.apply(var, x[None], train=False)[0]
      return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    return loss

  def top_example_loss(self, params, model_state) -> Callable:
    """``loss_top(top, x, y)``: one example's cross-entropy (inference mode)
    as a function of theta_top = ``params["head"]`` (``{"kernel", "bias"}``,
    the layout of ``hint_jax.influence.top_layer``) and of the input ``x``
    through the whole network, the rest of the network frozen.

    Returned as a ``jax.tree_util.Partial`` whose arrays are pytree leaves, so
    passing a new one (new body parameters) to jitted code does not retrace.
    """
    body = {"params": {k: v for k, v in params.items() if k != TOP_LAYER},
            "batch_stats": model_state}
    return jax.tree_util.Partial(self._top_loss, body)

  @functools.cached_property
  def _features_apply(self) -> Callable:
    module = self.module

    def features(params, model_state, x):
      return module.apply({"params": params, "batch_stats": model_state}, x,
                          train=False, return_features=True)[1]

    return features

  def features_fn(self, params, model_state) -> Callable:
    """``phi = f(x)`` for float images in inference mode, as a
    ``jax.tree_util.Partial`` over the parameters (jit-friendly; see
    ``hint_jax.influence.top_layer_pert``)."""
    return jax.tree_util.Partial(self._features_apply, params, model_state)

  @functools.cached_property
  def _logits_apply(self) -> Callable:
    module = self.module

    def logits(params, model_state, x):
      return module.apply({"params": params, "batch_stats": model_state}, x,
                          train=False)

    return logits

  def logits_fn(self, params, model_state) -> Callable:
    """``logits = f(x)`` for float images in inference mode, as a
    ``jax.tree_util.Partial`` over the parameters: differentiable w.r.t. x
    (the attacks' input gradients) and jit-friendly like `features_fn`."""
    return jax.tree_util.Partial(self._logits_apply, params, model_state)

  @functools.cached_property
  def _features_u8(self) -> Callable:
    module = self._forward

    @xla_options.jit
    def run(params, model_state, x):
      if not jnp.issubdtype(x.dtype, jnp.floating):  # uint8 -> [0, 1]
        x = x.astype(jnp.float32) / 255.0
      return module.apply({"params": params, "batch_stats": model_state}, x,
                          train=False, return_features=True)[1]

    return run

  def features_of_images(self, params, model_state, x_u8,
                         batch_size: int = 250) -> jax.Array:
    """phi for images (uint8, or float already in [0, 1]), in inference
    mode, in fixed-size batches (the last one padded, so this compiles once
    per batch size and dtype). 250 was the fastest batch for the MNIST
    ConvNet on the 2-core CPU (8700 images/s; 1000: 7200)."""
    n = len(x_u8)
    out = []
    for start in range(0, n, batch_size):
      xb = jnp.asarray(x_u8[start:start + batch_size])
      if len(xb) < batch_size:
        pad = jnp.zeros((batch_size - len(xb),) + xb.shape[1:], xb.dtype)
        out.append(self._features_u8(params, model_state,
                                     jnp.concatenate([xb, pad]))[:len(xb)])
      else:
        out.append(self._features_u8(params, model_state, xb))
    return jnp.concatenate(out) if out else jnp.zeros((0,))


def get_model(name: str, num_classes: int, input_shape) -> Model:
  """Builds a model by name; see ``MODEL_NAMES``."""
  input_shape = tuple(int(s) for s in input_shape)
  forward = None
  if name == "convnet":
    if min(input_shape[:2]) < CONVNET_MIN_SIZE:
      raise ConfigError(f"convnet needs images of at least "
                        f"{CONVNET_MIN_SIZE}x{CONVNET_MIN_SIZE}, got "
                        f"{input_shape[0]}x{input_shape[1]}; use "
                        f"convnet_small or mlp")
    module = ConvNet(num_classes)
  elif name == "convnet_small":
    if min(input_shape[:2]) < CONVNET_SMALL_MIN_SIZE:
      raise ConfigError(f"convnet_small needs images of at least "
                        f"{CONVNET_SMALL_MIN_SIZE}x{CONVNET_SMALL_MIN_SIZE}, "
                        f"got {input_shape[0]}x{input_shape[1]}; use mlp or "
                        f"logreg")
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
  return Model(name, module, input_shape, forward)


def num_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))


__all__ = ["BasicBlock", "CONVNET_MIN_SIZE", "CONVNET_SMALL_MIN_SIZE",
           "ConvNet", "DEFAULT_MODEL", "LogReg", "MLP",
           "MODEL_NAMES", "Model", "ResNet", "TOP_LAYER", "get_model",
           "is_top_layer", "is_top_variable", "num_params", "variables"]
