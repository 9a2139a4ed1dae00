"""Layers initialised like PyTorch's defaults.

The paper's numbers rest on PyTorch's default initialisation, which trains the
MNIST ConvNet measurably faster than Flax's defaults (measured here). PyTorch
initialises conv and dense weights with kaiming-uniform, a = sqrt(5), which is
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases with the same bound. Flax's bias
initialiser sees only the bias shape, so the fan-in is computed from the input
inside each layer and closed over.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# variance_scaling(1/3, fan_in, uniform) has bound sqrt(3 * (1/3) / fan_in),
# i.e. 1/sqrt(fan_in): exactly PyTorch's kaiming_uniform_(a=sqrt(5)).
torch_kernel_init = nn.initializers.variance_scaling(
    1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default bias init."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def torch_conv(x, features: int, kernel_size: Sequence[int], *, name: str,
               strides=(1, 1), padding="VALID", use_bias=True):
  """Applies an nn.Conv initialised like torch.nn.Conv2d (call inside compact)."""
  fan_in = x.shape[-1] * math.prod(kernel_size)
  return nn.Conv(features, tuple(kernel_size), strides=strides,
                 padding=padding, use_bias=use_bias,
                 kernel_init=torch_kernel_init,
                 bias_init=torch_bias_init(fan_in), name=name)(x)


def torch_batch_norm(train: bool, name: str):
  """BatchNorm with PyTorch's defaults: momentum 0.1 (0.9 in Flax), eps 1e-5.

  In train mode the batch statistics normalise and the running averages in the
  ``batch_stats`` collection are updated; in inference mode the running
  averages normalise. (PyTorch updates the running variance with the unbiased
  estimate, Flax with the biased one; at batch 128 the difference is < 1%.)
  The module is ``BatchNorm`` below: Flax's variables and values, computed
  in fewer passes over the activations.
  """
  return BatchNorm(use_running_average=not train, momentum=0.9,
                   epsilon=1e-5, name=name)


class BatchNorm(nn.Module):
  """Batch normalisation over all axes but the last, with the variables of
  ``flax.linen.BatchNorm`` (params ``scale``/``bias``, ``batch_stats``
  ``mean``/``var``, same initialisation and running-average update), so the
  two are interchangeable on the same parameters (tested equal to float32
  rounding).

  The batch statistics are one pass over the input (mean and mean of
  squares; the variance is ``E[x^2] - E[x]^2``, clipped at 0, as Flax's
  default ``use_fast_variance``), and the output is ``x * a + c`` with
  per-channel ``a``, ``c``: on XLA:CPU this saves passes over the
  activations in both the forward and the backward step.

  ``shift`` (optional, per channel) normalises ``x + shift`` without
  forming it: in train mode a per-channel shift cancels in the output
  (only the running mean records it), in inference mode it is folded into
  ``c``. A convolution's bias followed by this layer is passed as
  ``shift``; its gradient is then exactly 0 in train mode, as it is
  mathematically.
  """
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x, shift=None):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean",
                            lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var",
                           lambda: jnp.ones((c,), jnp.float32))
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
      if shift is not None:
        mean = mean - shift
    else:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x, axes)
      var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
      if not self.is_initializing():
        full_mean = mean if shift is None else mean + shift
        m = self.momentum
        ra_mean.value = (m * ra_mean.value
                         + (1 - m) * jax.lax.stop_gradient(full_mean))
        ra_var.value = m * ra_var.value + (1 - m) * jax.lax.stop_gradient(var)
    a = scale * jax.lax.rsqrt(var + self.epsilon)
    return x * a + (bias - mean * a)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                      dimension_numbers=_NHWC)


def conv_rows(x, kernel):
  """The VALID stride-1 convolution as one 1 x k convolution of the input's
  k row-shifted views stacked along channels (the kernel's rows likewise).
  The same sum in another order; its transpose with respect to ``x`` is a
  1 x k transposed convolution, padded along columns only, and k row-shifted
  adds, where ``lax``'s own transpose pads the output gradient by k - 1 on
  every side and does about twice the multiply-adds."""
  k = kernel.shape[0]
  oh = x.shape[1] - k + 1
  stacked = jnp.concatenate([x[:, i:i + oh] for i in range(k)], axis=-1)
  rows = jnp.transpose(kernel, (1, 0, 2, 3)).reshape(
      1, kernel.shape[1], k * kernel.shape[2], kernel.shape[3])
  return _conv(stacked, rows)


@jax.custom_jvp
def conv_valid(x, kernel):
  """``lax.conv_general_dilated`` (VALID, stride 1, NHWC/HWIO) whose
  derivative with respect to ``x`` goes through `conv_rows`: the values and
  every derivative (forward, reverse, higher order) are the convolution's,
  to float32 rounding, and reverse mode gets `conv_rows`'s transpose for
  the input gradient (measured on the MNIST ConvNet's second convolution at
  batch 128: 6.8 ms against 13 ms) while the forward pass and the kernel
  gradient stay ``lax``'s own (`conv_rows` is slower for those)."""
  return _conv(x, kernel)


def _conv_valid_jvp(primals, tangents):
  x, kernel = primals
  dx, dkernel = tangents
  y = conv_valid(x, kernel)
  dy = None
  # Symbolic zeros (an input that is data, a frozen kernel) cost nothing.
  if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
    dy = conv_rows(dx, kernel)
  if not isinstance(dkernel, jax.custom_derivatives.SymbolicZero):
    dy_k = _conv(x, dkernel)
    dy = dy_k if dy is None else dy + dy_k
  if dy is None:
    dy = jnp.zeros_like(y)
  return y, dy


conv_valid.defjvp(_conv_valid_jvp, symbolic_zeros=True)


class TorchConv(nn.Module):
  """A stride-1 convolution initialised like torch.nn.Conv2d, with a choice
  of implementation (same parameters ``kernel`` (HWIO) and ``bias``):

  * ``"xla"``: `conv_valid`: ``lax.conv_general_dilated`` with the input
    gradient through `conv_rows` (the fastest on XLA:CPU once the
    convolutions run on its own kernels, see ``hint_jax.xla_options``).
  * ``"lax"``: ``lax.conv_general_dilated`` and its own derivatives.
  * ``"im2col"``: the k*k shifted views of the input stacked along the channel
    axis, then one matrix product. The same sum in another order (agreement
    to float32 rounding is tested); a reference formulation.

  With ``return_bias=True`` the call returns ``(conv(x), bias)`` without
  adding the bias, for a following ``BatchNorm`` to take as its ``shift``.
  """
  features: int
  kernel_size: int
  padding: str = "VALID"
  impl: str = "xla"
  return_bias: bool = False

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", torch_kernel_init,
                        (k, k, cin, self.features))
    bias = self.param("bias", torch_bias_init(cin * k * k), (self.features,))
    if self.padding == "SAME":
      lo = (k - 1) // 2
      x = jnp.pad(x, ((0, 0), (lo, k - 1 - lo), (lo, k - 1 - lo), (0, 0)))
    elif self.padding != "VALID":
      raise ValueError(f"padding must be VALID or SAME, got {self.padding}")
    if self.impl == "xla":
      y = conv_valid(x, kernel)
    elif self.impl == "lax":
      y = _conv(x, kernel)
    elif self.impl == "im2col":
      h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
      cols = jnp.concatenate([x[:, i:i + h, j:j + w, :]
                              for i in range(k) for j in range(k)], axis=-1)
      y = cols @ kernel.reshape(k * k * cin, self.features)
    else:
      raise ValueError(f"unknown conv impl {self.impl!r}")
    return (y, bias) if self.return_bias else y + bias


def avg_pool2(x):
  """2x2 average pooling with stride 2 (VALID). When height and width are even
  it is the mean of the four strided sub-grids (elementwise work XLA fuses
  with its neighbours, and whose gradient is a strided scatter without
  reductions); otherwise ``nn.avg_pool`` (which drops the last row/column,
  as VALID pooling does)."""
  _, h, w, _ = x.shape
  if h % 2 == 0 and w % 2 == 0:
    return ((x[:, 0::2, 0::2] + x[:, 1::2, 0::2])
            + (x[:, 0::2, 1::2] + x[:, 1::2, 1::2])) * 0.25
  return nn.avg_pool(x, (2, 2), strides=(2, 2))
