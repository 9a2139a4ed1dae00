"""ResNet-18, CIFAR variant, as the HINT paper uses it: 3x3 stem with stride 1, no max-pool,
BasicBlocks [2, 2, 2, 2] with widths 64/128/256/512, global average pool and a
Dense top layer. About 11.17M parameters for 10 classes.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from hint_jax.models.layers import torch_batch_norm, torch_conv
from hint_jax.models.layers import torch_bias_init, torch_kernel_init


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (1x1 conv projection
  when the shape changes), each followed by BatchNorm."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    s = (self.stride, self.stride)
    y = torch_conv(x, self.features, (3, 3), strides=s, padding=((1, 1), (1, 1)),
                   use_bias=False, name="conv1")
    y = nn.relu(torch_batch_norm(train, "bn1")(y))
    y = torch_conv(y, self.features, (3, 3), padding=((1, 1), (1, 1)),
                   use_bias=False, name="conv2")
    y = torch_batch_norm(train, "bn2")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = torch_conv(x, self.features, (1, 1), strides=s, use_bias=False,
                     name="proj_conv")
      x = torch_batch_norm(train, "proj_bn")(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """CIFAR-style ResNet. Inputs are float images in [0, 1]; the per-channel
  normalisation (``mean``/``std``) is applied inside the model, so gradients
  with respect to the input are in [0, 1] pixel space."""
  num_classes: int = 10
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 512)
  mean: Sequence[float] = (0.4914, 0.4822, 0.4465)
  std: Sequence[float] = (0.2023, 0.1994, 0.2010)

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    x = (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)
    x = torch_conv(x, self.widths[0], (3, 3), padding=((1, 1), (1, 1)),
                   use_bias=False, name="stem_conv")
    x = nn.relu(torch_batch_norm(train, "stem_bn")(x))
    for stage, (num_blocks, width) in enumerate(zip(self.stage_sizes,
                                                    self.widths)):
      for block in range(num_blocks):
        stride = 2 if (stage > 0 and block == 0) else 1
        x = BasicBlock(width, stride, name=f"stage{stage + 1}_block{block + 1}")(
            x, train)
    phi = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, kernel_init=torch_kernel_init,
                      bias_init=torch_bias_init(phi.shape[-1]),
                      name="head")(phi)
    return (logits, phi) if return_features else logits
