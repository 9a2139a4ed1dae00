"""Influence scores for a Flax linen model of your own.

Builds a small CNN that hint_jax has never seen, trains it on the embedded
8x8 digits (no download), and ranks the training images by their influence
on the validation loss (I_up over theta_top, the last Dense layer), then
prints the most harmful and the most helpful ones and the I_pert of the
most harmful one. About 30 s on a laptop CPU.

  python examples/influence_own_linen_model.py
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import data, influence
from hint_jax.models import adapt
from hint_jax.train import Trainer, fit
from hint_jax.train.loop import TrainConfig
from hint_jax.train.optim import OptimConfig


class MyCNN(nn.Module):
  """Any linen module mapping [0, 1] NHWC images to logits; its last Dense
  layer is theta_top."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(16, (3, 3))(x))
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.max_pool(x, (2, 2), (2, 2)).reshape(len(x), -1)
    x = nn.relu(nn.Dense(32)(x))
    return nn.Dense(10, name="classifier")(x)


def main():
  splits = data.split_train_val(data.load_dataset("digits"))
  model = adapt.from_linen(MyCNN(), input_shape=splits.x_train.shape[1:])
  cfg = TrainConfig(epochs=10, batch_size=64,
                    optim=OptimConfig(lr=0.05, momentum=0.9), eval_every=0)
  trainer = Trainer(model, cfg, len(splits.x_train))
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits)
  print("test accuracy", trainer.evaluate(state, splits.x_test,
                                          splits.y_test)["accuracy"])

  params, model_state = state.params, state.model_state
  top = params["head"]                       # the "classifier" layer
  phi = model.features_of_images(params, model_state, splits.x_train)
  phi_val = model.features_of_images(params, model_state, splits.x_val)
  op = influence.top_layer_hessian(top, phi)
  s, info = influence.s_test(op, influence.top_loss_one, top, phi_val,
                             jnp.asarray(splits.y_val), method="cg",
                             damping=0.01)
  print(f"s_test: CG {int(info.iterations)} iterations, converged "
        f"{bool(info.converged)}")
  i_up = np.asarray(influence.top_layer_up_scores(
      top, phi, jnp.asarray(splits.y_train), s))
  # Upweighting z changes the validation loss by about I_up(z) per unit of
  # weight, so removing it changes it by about -I_up(z) / n: a large
  # positive I_up marks a harmful example (removing it helps), a negative
  # one a helpful example.
  order = np.argsort(-i_up)
  print("most harmful training examples:", order[:5].tolist(),
        np.round(i_up[order[:5]], 4).tolist())
  print("most helpful training examples:", order[-5:].tolist(),
        np.round(i_up[order[-5:]], 4).tolist())
  worst = order[:1]
  x = jnp.asarray(splits.x_train[worst], jnp.float32) / 255.0
  pert = influence.top_layer_pert(model.features_fn(params, model_state),
                                  top, x, jnp.asarray(splits.y_train[worst]),
                                  s)
  print("I_pert of the most harmful example: shape", pert.shape,
        "max |.|", float(jnp.abs(pert).max()))


if __name__ == "__main__":
  main()
