"""Training-data attribution for a linen model of your own, three ways.

Trains a small MLP on the embedded 8x8 digits (no download), scores every
training image for 40 test images with three estimators of
`hint_jax.attribution` (an influence function by conjugate gradients with
Gauss-Newton curvature, TRAK with a 256-dimensional projection, and
Grad-Dot), prints how well their scores agree (Spearman per test image,
median over the 40) and each test image's strongest proponent, and draws
the agreement as a scatter plot. About 30 s on a laptop CPU.

  python examples/attribution_three_estimators.py [PLOT.png]
"""

import sys

import flax.linen as nn
import jax
import numpy as np
from scipy import stats

from hint_jax import attribution, data
from hint_jax.models import adapt
from hint_jax.train import Trainer, fit
from hint_jax.train.loop import TrainConfig
from hint_jax.train.optim import OptimConfig


class MyMLP(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Dense(32)(x.reshape(len(x), -1)))
    return nn.Dense(10, name="out")(x)


def main(plot=None):
  splits = data.split_train_val(data.load_dataset("digits"))
  model = adapt.from_linen(MyMLP(), input_shape=splits.x_train.shape[1:])
  cfg = TrainConfig(epochs=20, batch_size=64,
                    optim=OptimConfig(lr=0.05, momentum=0.9), eval_every=0)
  trainer = Trainer(model, cfg, len(splits.x_train))
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits)
  print("test accuracy", trainer.evaluate(state, splits.x_test,
                                          splits.y_test)["accuracy"])

  # The model as a pure function of all its parameters, inference mode.
  apply = lambda p, x: model.apply_eval(p, state.model_state, x)
  to_float = lambda x: np.asarray(x, np.float32) / 255.0
  train = (to_float(splits.x_train), splits.y_train)
  test = (to_float(splits.x_test[:40]), splits.y_test[:40])

  runs = {"cg": dict(curvature="ggn", damping=0.01, maxiter=50),
          "trak": dict(proj_dim=256),
          "grad_dot": {}}
  scores = {}
  for name, settings in runs.items():
    prep = attribution.prepare(name, apply, state.params, train,
                               key=jax.random.key(0), **settings)
    scores[name] = attribution.scores(prep, apply, train, test)
    print(f"{name}: scores {scores[name].shape}, strongest proponent of "
          f"test image 0: training image {int(np.argmax(scores[name][0]))}")

  names = list(scores)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      rho = [stats.spearmanr(scores[a][t], scores[b][t])[0]
             for t in range(len(test[0]))]
      print(f"Spearman {a} vs {b}: median {np.median(rho):.2f} over "
            f"{len(rho)} test images")

  if plot:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, other in zip(axes, names[1:]):
      ax.scatter(scores["cg"][0], scores[other][0], s=4)
      ax.set_xlabel("cg score (test image 0)")
      ax.set_ylabel(f"{other} score")
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    print(f"wrote {plot}")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else None)
