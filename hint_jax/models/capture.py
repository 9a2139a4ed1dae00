"""Layer taps for K-FAC: each Dense and convolution layer's inputs (as
patches) and the gradient of any scalar of the logits with respect to its
outputs, captured at the model boundary so `hint_jax.attribution` stays
free of Flax.

    apply = capture.tapped_apply(model, model_state)
    logits = apply(params, x)                       # an ordinary apply
    logits, inputs = apply.taps(params, x, perturbations)

``perturbations`` (a dict by layer name, shaped like each layer's output)
is added to the layer's output, so the gradient of a function of the logits
with respect to it is the output gradient δ; ``inputs[name]`` is
``(n, locations, d_in)``: a Dense layer's input (one location), or a
convolution's input patches in the order of its kernel reshaped to
``(kh * kw * c_in, c_out)``. Works on the project's linen models and any
linen module adapted with `hint_jax.models.adapt.from_linen`: it intercepts
``flax.linen.Dense``, ``flax.linen.Conv`` (no grouping, dilation 1) and the
project's ``TorchConv`` calls. nnx models have no interception hook: K-FAC
reports that in one line.
"""

import dataclasses
from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hint_jax.errors import ConfigError
from hint_jax.models.layers import TorchConv


@dataclasses.dataclass(frozen=True)
class Layer:
  """One tapped layer: its name (module path joined by "/"), kind ("dense"
  or "conv"), input features per location (without the bias), outputs,
  whether it has a bias, and the number of locations."""
  name: str
  kind: str
  d_in: int
  d_out: int
  bias: bool
  locations: int


def _pads(padding, kernel, in_hw, strides):
  if isinstance(padding, str):
    return jax.lax.padtype_to_pads(in_hw, kernel, strides, padding.upper())
  if isinstance(padding, int):
    return [(padding, padding)] * len(kernel)
  return [tuple(p) if not isinstance(p, int) else (p, p) for p in padding]


def _patches(x, kernel, strides, pads):
  """(n, H', W', kh * kw * C) patches, ordered (kh, kw, C) like an HWIO
  kernel reshaped to (kh * kw * C, c_out)."""
  x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
  kh, kw = kernel
  sh, sw = strides
  h = (x.shape[1] - kh) // sh + 1
  w = (x.shape[2] - kw) // sw + 1
  cols = [x[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  return jnp.concatenate(cols, axis=-1)


def _all_one(value):
  if value is None:
    return True
  return all(v == 1 for v in (value if isinstance(value, (tuple, list))
                              else (value,)))


def _layer_input(module, x):
  """``(kind, (n, L, d_in))`` for a module this file taps, else None."""
  if isinstance(module, nn.Dense):
    return "dense", x.reshape(x.shape[0], -1, x.shape[-1])
  if isinstance(module, nn.Conv):
    if (module.feature_group_count != 1
        or not _all_one(module.kernel_dilation)
        or not _all_one(module.input_dilation)):
      raise ConfigError(f"K-FAC taps plain convolutions only; layer "
                        f"{'/'.join(module.path)} is grouped or dilated")
    kernel = tuple(module.kernel_size)
    if len(kernel) != 2 or x.ndim != 4:
      raise ConfigError("K-FAC taps 2-D convolutions on NHWC inputs only")
    strides = module.strides or (1, 1)
    strides = (strides, strides) if isinstance(strides, int) else tuple(
        strides)
    pads = _pads(module.padding, kernel, x.shape[1:3], strides)
    p = _patches(x, kernel, strides, pads)
    return "conv", p.reshape(p.shape[0], -1, p.shape[-1])
  if isinstance(module, TorchConv):
    k = module.kernel_size
    if module.padding == "SAME":
      lo = (k - 1) // 2
      pads = [(lo, k - 1 - lo)] * 2
    else:
      pads = [(0, 0)] * 2
    p = _patches(x, (k, k), (1, 1), pads)
    return "conv", p.reshape(p.shape[0], -1, p.shape[-1])
  return None


def _has_bias(module):
  return True if isinstance(module, TorchConv) else bool(module.use_bias)


def _run(model, model_state, params, x, perturbations, record):
  """``model.apply_eval`` with every tapped layer's input recorded and its
  output perturbed."""

  def interceptor(next_fun, args, kwargs, ctx):
    if ctx.method_name != "__call__":
      return next_fun(*args, **kwargs)
    found = _layer_input(ctx.module, args[0])
    out = next_fun(*args, **kwargs)
    if found is None:
      return out
    name = "/".join(ctx.module.path)
    record(name, ctx.module, found, out)
    if perturbations is None or name not in perturbations:
      return out
    if isinstance(out, tuple):            # TorchConv(return_bias=True)
      return (out[0] + perturbations[name],) + tuple(out[1:])
    return out + perturbations[name]

  with nn.intercept_methods(interceptor):
    return model.apply_eval(params, model_state, x)


def _as_float(x):
  """Integer images are uint8 pixel values: scaled to [0, 1]."""
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x
  return x.astype(jnp.float32) / 255.0


@jax.tree_util.register_pytree_node_class
class TappedApply:
  """``apply(params, x) -> logits`` with ``taps`` (see the module
  docstring) and ``layers`` (the tapped `Layer`s, in call order). A pytree
  (the model state its leaves), so it passes through ``jit``. Integer
  inputs are taken as uint8 pixels and scaled to [0, 1]."""

  def __init__(self, model, model_state):
    self.model, self.model_state = model, model_state

  def __call__(self, params, x):
    return self.model.apply_eval(params, self.model_state, _as_float(x))

  def taps(self, params, x, perturbations) -> Tuple[Any, dict]:
    x = _as_float(x)
    inputs = {}

    def record(name, module, found, out):
      del module, out
      inputs[name] = found[1]

    logits = _run(self.model, self.model_state, params, x, perturbations,
                  record)
    return logits, inputs

  def layers(self, params, x_like) -> Tuple[Layer, ...]:
    """The tapped layers of a forward pass on ``x_like`` (shapes only)."""
    found = []

    def record(name, module, inp, out):
      y = out[0] if isinstance(out, tuple) else out
      found.append((name, inp[0], inp[1].shape, y.shape, _has_bias(module)))

    jax.eval_shape(lambda p, x: _run(self.model, self.model_state, p,
                                     _as_float(x), None, record), params,
                   x_like)
    layers = []
    for name, kind, in_shape, out_shape, bias in found:
      locations = in_shape[1]
      d_out = out_shape[-1]
      if kind == "dense" and locations != 1:
        raise ConfigError(f"K-FAC taps Dense layers on flat inputs; "
                          f"{name} gets {in_shape}")
      layers.append(Layer(name, kind, int(in_shape[-1]), int(d_out), bias,
                          int(locations)))
    if not layers:
      raise ConfigError("no Dense or convolution layer was called: K-FAC "
                        "taps linen models (nnx has no interception hook)")
    if len({layer.name for layer in layers}) != len(layers):
      raise ConfigError("a layer is called twice in one forward pass; "
                        "K-FAC needs each layer once")
    return tuple(layers)

  def output_shapes(self, params, x_like) -> dict:
    """Each tapped layer's output shape for inputs shaped like ``x_like``."""
    shapes = {}

    def record(name, module, inp, out):
      del module, inp
      y = out[0] if isinstance(out, tuple) else out
      shapes[name] = y.shape

    jax.eval_shape(lambda p, x: _run(self.model, self.model_state, p,
                                     _as_float(x), None, record), params,
                   x_like)
    return shapes

  def tree_flatten(self):
    return (self.model_state,), self.model

  @classmethod
  def tree_unflatten(cls, model, children):
    return cls(model, children[0])


def tapped_apply(model, model_state) -> TappedApply:
  """The model in inference mode as a pure function of its parameters,
  with K-FAC's layer taps (see `TappedApply`)."""
  return TappedApply(model, model_state)


__all__ = ["Layer", "TappedApply", "tapped_apply"]
