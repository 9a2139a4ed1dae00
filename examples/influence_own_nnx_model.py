"""Influence scores for a Flax nnx model of your own.

The nnx twin of `influence_own_linen_model.py`: an MLP with BatchNorm built
as an ``nnx.Module``, wrapped by `hint_jax.models.adapt.from_nnx` (its last
``nnx.Linear`` is theta_top), trained on the embedded 8x8 digits (no
download); then s_test by conjugate gradients and every training image's
I_up on the validation loss, and the I_pert of the most harmful one. About
30 s on a laptop CPU.

  python examples/influence_own_nnx_model.py
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hint_jax import data, influence
from hint_jax.models import adapt
from hint_jax.train import Trainer, fit
from hint_jax.train.loop import TrainConfig
from hint_jax.train.optim import OptimConfig


class MyMLP(nnx.Module):
  """Any nnx module mapping [0, 1] NHWC images to logits."""

  def __init__(self, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(64, 64, rngs=rngs)
    self.norm = nnx.BatchNorm(64, rngs=rngs)
    self.out = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    return self.out(nnx.relu(self.norm(self.hidden(x))))


def main():
  splits = data.split_train_val(data.load_dataset("digits"))
  model = adapt.from_nnx(MyMLP(nnx.Rngs(0)),
                         input_shape=splits.x_train.shape[1:])
  cfg = TrainConfig(epochs=10, batch_size=64,
                    optim=OptimConfig(lr=0.05, momentum=0.9), eval_every=0)
  trainer = Trainer(model, cfg, len(splits.x_train))
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits)
  print("test accuracy", trainer.evaluate(state, splits.x_test,
                                          splits.y_test)["accuracy"])

  params, model_state = state.params, state.model_state
  top = params["head"]                       # the module's `out` Linear
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
  order = np.argsort(-i_up)      # large positive I_up: harmful
  print("most harmful training examples:", order[:5].tolist(),
        np.round(i_up[order[:5]], 4).tolist())
  worst = order[:1]
  x = jnp.asarray(splits.x_train[worst], jnp.float32) / 255.0
  pert = influence.top_layer_pert(model.features_fn(params, model_state),
                                  top, x, jnp.asarray(splits.y_train[worst]),
                                  s)
  print("I_pert of the most harmful example: shape", pert.shape,
        "max |.|", float(jnp.abs(pert).max()))


if __name__ == "__main__":
  main()
