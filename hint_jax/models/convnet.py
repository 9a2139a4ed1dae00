"""The MNIST ConvNet of the HINT paper (the authors' architecture)."""

import flax.linen as nn

from hint_jax.models.layers import TorchConv, avg_pool2, torch_batch_norm
from hint_jax.models.layers import torch_bias_init, torch_kernel_init


class ConvNet(nn.Module):
  """conv5x5(40) - BN - ReLU - AvgPool2 - conv5x5(100) - BN - ReLU - AvgPool2 -
  flatten(1600) - Dense(10), all convolutions VALID.

  On 28x28x1 inputs the flattened features have 4*4*100 = 1600 entries and the
  top layer ``head`` has 1600*10 + 10 = 16010 parameters.

  Inputs are float images in [0, 1] (no normalisation, as the authors).
  ``__call__`` returns logits, or ``(logits, features)`` with
  ``return_features=True``; ``features`` are the inputs of ``head``.
  """
  num_classes: int = 10
  widths: tuple = (40, 100)
  kernel_size: int = 5
  padding: str = "VALID"
  # "xla" (fastest on CPU with hint_jax.xla_options) or "im2col";
  # "auto" is "xla" (kept for configurations that name it).
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    for i, width in enumerate(self.widths):
      impl = "xla" if self.conv_impl == "auto" else self.conv_impl
      # The conv bias goes to BatchNorm as its shift: the same values as
      # BN(conv(x) + bias) without a pass to add it (see layers.BatchNorm).
      x, bias = TorchConv(width, self.kernel_size, self.padding, impl,
                          return_bias=True, name=f"conv{i + 1}")(x)
      x = torch_batch_norm(train, name=f"bn{i + 1}")(x, bias)
      x = nn.relu(x)
      x = avg_pool2(x)
    phi = x.reshape((x.shape[0], -1))
    logits = nn.Dense(self.num_classes, kernel_init=torch_kernel_init,
                      bias_init=torch_bias_init(phi.shape[-1]),
                      name="head")(phi)
    return (logits, phi) if return_features else logits
