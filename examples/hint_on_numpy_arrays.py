"""HINT on your own numpy arrays.

Takes plain uint8 arrays (here the embedded 8x8 digits, a quarter of the
training labels flipped to the next class as a simple poison), wraps them
in `hint_jax.data.Splits`, and trains a linen MLP of your own twice from
the same seed: without a defence and with HINT's healthy noise. Prints
both test accuracies and what HINT did. About a minute on a laptop CPU.

  python examples/hint_on_numpy_arrays.py
"""

import flax.linen as nn
import jax
import numpy as np

from hint_jax import data, hint
from hint_jax.data.splits import Splits
from hint_jax.models import adapt
from hint_jax.train import DefenceHook, Trainer, fit
from hint_jax.train.loop import TrainConfig
from hint_jax.train.optim import OptimConfig


class MyMLP(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Dense(64)(x.reshape(len(x), -1)))
    return nn.Dense(10)(x)


def my_arrays():
  """Any uint8 NHWC images with integer labels will do."""
  digits = data.split_train_val(data.load_dataset("digits"))
  x_train, y_train = digits.x_train, digits.y_train.copy()
  rng = np.random.default_rng(0)
  flip = rng.choice(len(y_train), len(y_train) // 4, replace=False)
  y_train[flip] = (y_train[flip] + 1) % 10
  return (x_train, y_train, digits.x_val, digits.y_val, digits.x_test,
          digits.y_test)


def main():
  x, y, xv, yv, xt, yt = my_arrays()
  splits = Splits(x_train=x, y_train=y, x_val=xv, y_val=yv, x_test=xt,
                  y_test=yt, train_idx=np.arange(len(x)),
                  val_idx=np.arange(len(xv)), seed=0, num_classes=10,
                  name="mine")
  model = adapt.from_linen(MyMLP(), input_shape=x.shape[1:])
  cfg = TrainConfig(epochs=20, batch_size=64,
                    optim=OptimConfig(lr=0.05, momentum=0.9), eval_every=0)
  trainer = Trainer(model, cfg, len(x))
  for name, defence in (
      ("no defence", None),
      ("HINT", hint.Hint(model, hint.HintConfig(schedule=(5, 15)), x, y, xv,
                         yv, epochs=cfg.epochs))):
    # HINT is pure functions over a state; the hook carries it across epochs.
    hook = None if defence is None else DefenceHook(defence)
    state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits,
                      before_epoch=hook)
    acc = trainer.evaluate(state, xt, yt)["accuracy"]
    line = f"{name}: test accuracy {100 * acc:.2f}%"
    if defence is not None:
      s = defence.summary(hook.state)
      line += (f" ({s['num_selected']} examples noised, "
               f"{len(s['updates'])} updates)")
    print(line)


if __name__ == "__main__":
  main()
