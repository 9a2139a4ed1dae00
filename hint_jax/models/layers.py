"""Layers initialised like PyTorch's defaults.

The paper's numbers rest on PyTorch's default initialisation, which trains the
MNIST ConvNet measurably faster than Flax's defaults (SPEC §1). PyTorch
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
  """
  return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                      epsilon=1e-5, name=name)


class TorchConv(nn.Module):
  """A stride-1 convolution initialised like torch.nn.Conv2d, with a choice
  of implementation (same parameters ``kernel`` (HWIO) and ``bias``):

  * ``"xla"``: ``lax.conv_general_dilated``.
  * ``"im2col"``: the k*k shifted views of the input stacked along the channel
    axis, then one matrix product. On XLA:CPU this is several times faster for
    the gradient of a convolution with a single input channel (the MNIST
    ConvNet's first layer), whose weight gradient XLA otherwise computes as a
    slow convolution over the batch. Numerically it is the same sum in another
    order (agreement to ~1e-7 in float32 is tested).
  """
  features: int
  kernel_size: int
  padding: str = "VALID"
  impl: str = "xla"

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
      y = jax.lax.conv_general_dilated(
          x, kernel, (1, 1), "VALID",
          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    elif self.impl == "im2col":
      h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
      cols = jnp.concatenate([x[:, i:i + h, j:j + w, :]
                              for i in range(k) for j in range(k)], axis=-1)
      y = cols @ kernel.reshape(k * k * cin, self.features)
    else:
      raise ValueError(f"unknown conv impl {self.impl!r}")
    return y + bias


def avg_pool2(x):
  """2x2 average pooling with stride 2 (VALID). When height and width are even
  it is a reshape and a mean, whose gradient is a cheap broadcast; otherwise
  ``nn.avg_pool`` (which drops the last row/column, as VALID pooling does)."""
  b, h, w, c = x.shape
  if h % 2 == 0 and w % 2 == 0:
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
  return nn.avg_pool(x, (2, 2), strides=(2, 2))
