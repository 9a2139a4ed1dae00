"""Small models for tests and influence studies."""

from typing import Sequence

import flax.linen as nn

from hint_jax.models.layers import torch_bias_init, torch_kernel_init


def _head(num_classes, phi):
  return nn.Dense(num_classes, kernel_init=torch_kernel_init,
                  bias_init=torch_bias_init(phi.shape[-1]), name="head")(phi)


class LogReg(nn.Module):
  """Multinomial logistic regression on flattened pixels: the features are
  the pixels themselves and ``head`` is the whole model."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    del train
    phi = x.reshape((x.shape[0], -1))
    logits = _head(self.num_classes, phi)
    return (logits, phi) if return_features else logits


class MLP(nn.Module):
  """Flatten - [Dense - ReLU (- Dropout)] x len(hidden) - Dense head;
  dropout (rate ``dropout``, only when ``train``; rng stream "dropout")
  after each hidden layer when ``dropout`` > 0."""
  num_classes: int = 10
  hidden: Sequence[int] = (64,)
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False, return_features: bool = False):
    h = x.reshape((x.shape[0], -1))
    for i, width in enumerate(self.hidden):
      h = nn.relu(nn.Dense(width, kernel_init=torch_kernel_init,
                           bias_init=torch_bias_init(h.shape[-1]),
                           name=f"dense{i + 1}")(h))
      if self.dropout > 0:
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
    logits = _head(self.num_classes, h)
    return (logits, h) if return_features else logits
