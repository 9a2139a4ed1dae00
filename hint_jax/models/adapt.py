"""Any Flax network (linen or nnx) as a `hint_jax.models.Model`, so that the
influence functions, HINT, the defences and the training loop run on it
unchanged.

    model = adapt.from_linen(MyNet(), input_shape=(32, 32, 1))
    model = adapt.from_nnx(MyNnxNet(rngs=nnx.Rngs(0)), input_shape=(32, 32, 1))

What hint_jax needs from a network, and how it is found:

- **theta_top**, the top layer the influence functions work on: a Dense
  (linen ``nn.Dense``, nnx ``nnx.Linear``) whose output is the logits and
  which has a kernel ``(d, K)`` and a bias ``(K,)``. ``top`` names it by its
  path of module names, e.g. ``("out",)`` or ``("classifier", "fc")``;
  by default it is, for linen, the last Dense the forward pass calls, and
  for nnx, the only Linear with as many outputs as the logits.
- **the features** phi(x): the input of that layer (a flat ``(N, d)``
  array), captured during the forward pass.
- **the per-example loss**: cross-entropy of the logits, in inference mode
  (BatchNorm with its running statistics).

The adapted model's ``params`` are ``{"head": theta_top, "body": the rest
of the network's parameter tree}``, so everything that addresses
``params["head"]`` works; its ``model_state`` is the network's BatchNorm
statistics as a plain dict (``{}`` without BatchNorm). ``train=True``
passes are linen's ``train`` argument (``train_arg``) or nnx's
``.train()`` mode; other mutable state (dropout RNG counters) is not
carried between steps.
"""

import dataclasses
import functools
from typing import Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax

from hint_jax import xla_options
from hint_jax.errors import ConfigError
from hint_jax.models import TOP_LAYER, Model


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _without(tree, path):
  """``tree`` (nested dicts) with the entry at ``path`` removed."""
  if len(path) == 1:
    return {k: v for k, v in tree.items() if k != path[0]}
  return {**tree, path[0]: _without(tree[path[0]], path[1:])}


def _with(tree, path, value):
  """``tree`` with ``value`` placed at ``path``."""
  if len(path) == 1:
    return {**tree, path[0]: value}
  return {**tree, path[0]: _with(tree.get(path[0], {}), path[1:], value)}


def _check_top(top, path):
  if not (isinstance(top, dict) and set(top) == {"kernel", "bias"}
          and jnp.ndim(top["kernel"]) == 2 and jnp.ndim(top["bias"]) == 1):
    raise ConfigError(f"the top layer {'/'.join(path)} must be a Dense "
                      "layer with a 2-D kernel and a bias; name another "
                      "with top=")


@dataclasses.dataclass(frozen=True, eq=False)
class AdaptedModel(Model):
  """A `Model` over pure functions of a network's own parameter tree.

  Attributes:
    init_net: ``key -> (net_params, net_state)``.
    apply_net: ``(net_params, net_state, x, train) -> (logits, features,
      new_net_state)``; ``features`` is the top layer's input.
    top_path: where theta_top sits in ``net_params``.
  """
  init_net: Callable = None
  apply_net: Callable = None
  top_path: Tuple[str, ...] = ()

  def net_params(self, params):
    """The network's own parameter tree from the adapted ``params``."""
    return _with(params["body"], self.top_path, params[TOP_LAYER])

  def adapted_params(self, net_params):
    """The adapted ``params`` (``{"head", "body"}``) of a network tree."""
    try:
      top = _get(net_params, self.top_path)
    except (KeyError, TypeError, IndexError):
      raise ConfigError(f"the network has no parameters at "
                        f"{'/'.join(self.top_path)}; name its top layer "
                        "with top=") from None
    _check_top(top, self.top_path)
    return {TOP_LAYER: top, "body": _without(net_params, self.top_path)}

  def init(self, key):
    net_params, net_state = self.init_net(key)
    return self.adapted_params(net_params), net_state

  def apply_eval(self, params, model_state, x, return_features=False):
    logits, feats, _ = self.apply_net(self.net_params(params), model_state, x,
                                      False)
    return (logits, feats) if return_features else logits

  def apply_train(self, params, model_state, x):
    logits, _, new_state = self.apply_net(self.net_params(params),
                                          model_state, x, True)
    return logits, new_state

  @functools.cached_property
  def example_loss(self):
    def loss_one(var, x, y):
      logits = self.apply_eval(var["params"], var["batch_stats"], x[None])[0]
      return optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return loss_one

  @functools.cached_property
  def _top_loss(self):
    def loss(body, top, x, y):
      params = {**body["params"], TOP_LAYER: top}
      logits = self.apply_eval(params, body["batch_stats"], x[None])[0]
      return optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return loss

  @functools.cached_property
  def _features_apply(self):
    return lambda params, model_state, x: self.apply_eval(
        params, model_state, x, return_features=True)[1]

  @functools.cached_property
  def _logits_apply(self):
    return lambda params, model_state, x: self.apply_eval(params,
                                                          model_state, x)

  @functools.cached_property
  def _features_u8(self):
    @xla_options.jit
    def run(params, model_state, x):
      if not jnp.issubdtype(x.dtype, jnp.floating):  # uint8 -> [0, 1]
        x = x.astype(jnp.float32) / 255.0
      return self._features_apply(params, model_state, x)
    return run


def _flat_features(feats, path):
  if feats is None:
    raise ConfigError(f"the top layer {'/'.join(path)} was not called in "
                      "the forward pass; name the layer that makes the "
                      "logits with top=")
  if feats.ndim != 2:
    raise ConfigError(f"the top layer {'/'.join(path)} gets input of shape "
                      f"{feats.shape}; it must get flat (N, d) features")
  return feats


# ------------------------------------------------------------------ linen
def from_linen(module, input_shape: Sequence[int], *,
               top: Optional[Sequence[str]] = None,
               train_arg: Optional[str] = "train",
               name: str = "linen") -> AdaptedModel:
  """A linen module as a `Model`.

  Args:
    module: ``module(x, **{train_arg: bool})`` maps float images in [0, 1]
      (NHWC, ``input_shape`` per image) to logits. BatchNorm statistics
      live in the ``batch_stats`` collection.
    input_shape: one image's shape.
    top: the path of module names of the top Dense layer (default: the last
      Dense called).
    train_arg: the keyword that switches train mode (None: the module takes
      none).
    name: the model's name in records.
  """
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  input_shape = tuple(int(s) for s in input_shape)
  mode = (lambda train: {}) if train_arg is None else (
      lambda train: {train_arg: train})

  def init_net(key):
    variables = module.init(key, jnp.zeros((1,) + input_shape, jnp.float32),
                            **mode(False))
    return variables["params"], variables.get("batch_stats", {})

  def dense_calls(params, state, x):
    """The paths of the Dense layers the forward pass calls, in order."""
    seen = []

    def record(next_fun, args, kwargs, ctx):
      if ctx.method_name == "__call__" and isinstance(ctx.module, nn.Dense):
        seen.append(tuple(ctx.module.path))
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
      module.apply({"params": params, "batch_stats": state}, x, **mode(False))
    return seen

  if top is None:
    p0, s0 = init_net(jax.random.key(0))
    calls = dense_calls(p0, s0, jnp.zeros((1,) + input_shape, jnp.float32))
    if not calls:
      raise ConfigError("the module calls no nn.Dense; name its top layer "
                        "with top=")
    top = calls[-1]
  top = tuple(top)

  def apply_net(params, state, x, train):
    box = []

    def capture(next_fun, args, kwargs, ctx):
      if (ctx.method_name == "__call__"
          and tuple(ctx.module.path) == top):
        box.append(args[0])
      return next_fun(*args, **kwargs)

    variables = {"params": params, "batch_stats": state}
    with nn.intercept_methods(capture):
      if train and state:
        logits, updates = module.apply(variables, x, mutable=["batch_stats"],
                                       **mode(True))
        new_state = updates["batch_stats"]
      else:
        logits, new_state = module.apply(variables, x, **mode(train)), state
    return logits, _flat_features(box[-1] if box else None, top), new_state

  return AdaptedModel(name=name, module=None, input_shape=input_shape,
                      init_net=init_net, apply_net=apply_net, top_path=top)


# -------------------------------------------------------------------- nnx
class _Capture:
  """Stands in for the top layer during one forward pass: records its
  input, then calls it."""

  def __init__(self, layer, box):
    self.layer, self.box = layer, box

  def __call__(self, x, *args, **kwargs):
    self.box.append(x)
    return self.layer(x, *args, **kwargs)


def from_nnx(module, input_shape: Sequence[int], *,
             top: Optional[Sequence[str]] = None,
             name: str = "nnx") -> AdaptedModel:
  """An nnx module as a `Model`.

  Args:
    module: a built ``nnx.Module`` mapping float images in [0, 1] (NHWC) to
      logits; ``.train()`` / ``.eval()`` switch its BatchNorm (and dropout).
      Its current parameters are the model's initial ones: nnx modules are
      initialised when built, so `Model.init` returns them for every key
      (build the module from the seed you want).
    input_shape: one image's shape.
    top: the attribute path of the top ``nnx.Linear`` (default: the only
      Linear with as many outputs as the logits).
    name: the model's name in records.
  """
  from flax import nnx  # pylint: disable=g-import-not-at-top
  if not all(hasattr(nnx, f) for f in ("to_pure_dict", "replace_by_pure_dict",
                                       "iter_modules")):
    raise ConfigError("from_nnx needs a flax whose nnx has to_pure_dict, "
                      "replace_by_pure_dict and iter_modules (tested with "
                      "flax 0.12); upgrade flax")
  input_shape = tuple(int(s) for s in input_shape)
  graph, params, stats, rest = nnx.split(module, nnx.Param, nnx.BatchStat,
                                         ...)
  net_params0, net_state0 = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)

  def build(net_params, net_state):
    p = jax.tree.map(lambda a: a, params)
    s = jax.tree.map(lambda a: a, stats)
    nnx.replace_by_pure_dict(p, net_params)
    nnx.replace_by_pure_dict(s, net_state)
    return nnx.merge(graph, p, s, rest)

  if top is None:
    probe = build(net_params0, net_state0)
    probe.eval()
    k = probe(jnp.zeros((1,) + input_shape, jnp.float32)).shape[-1]
    found = [tuple(str(p) for p in path)
             for path, m in nnx.iter_modules(probe)
             if isinstance(m, nnx.Linear) and m.out_features == k]
    if len(found) != 1:
      raise ConfigError(f"{len(found)} nnx.Linear layers have {k} outputs; "
                        "name the top layer with top=")
    top = found[0]
  top = tuple(top)

  def apply_net(net_params, net_state, x, train):
    net = build(net_params, net_state)
    net.train() if train else net.eval()
    parent = _get_attr(net, top[:-1])
    box = []
    setattr(parent, top[-1], _Capture(getattr(parent, top[-1]), box))
    logits = net(x)
    setattr(parent, top[-1], parent.__dict__[top[-1]].layer)
    new_state = net_state
    if train:
      new_state = nnx.to_pure_dict(
          nnx.split(net, nnx.Param, nnx.BatchStat, ...)[2])
    return logits, _flat_features(box[-1] if box else None, top), new_state

  def init_net(_key):
    return net_params0, net_state0

  return AdaptedModel(name=name, module=None, input_shape=input_shape,
                      init_net=init_net, apply_net=apply_net, top_path=top)


def _get_attr(obj, path):
  for k in path:
    obj = obj[int(k)] if k.isdigit() else getattr(obj, k)
  return obj


__all__ = ["AdaptedModel", "from_linen", "from_nnx"]
