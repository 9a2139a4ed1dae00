"""The dattri half of `bench_groundtruth_dattri.py` (run with dattri's
virtual environment): ``retrain_lds`` of dattri's MNIST logistic regression
on the data in PROBLEM (written by the other half), then each model's test
loss; prints one JSON line (seconds from just before ``retrain_lds`` to the
last loss, mean test accuracy).

  DATTRI_PY dattri_retrain_side.py problem.npz MODELS_DIR
"""

import json
import pathlib
import shutil
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset


def main(problem, models):
  data = np.load(problem)
  x_tr = torch.tensor(data["x_train"]).reshape(-1, 1, 28, 28)
  y_tr = torch.tensor(data["y_train"], dtype=torch.long)
  x_te = torch.tensor(data["x_test"]).reshape(-1, 1, 28, 28)
  y_te = torch.tensor(data["y_test"], dtype=torch.long)
  shutil.rmtree(models, ignore_errors=True)
  t0 = time.perf_counter()
  from dattri.benchmark.datasets.mnist import loss_mnist_lr, train_mnist_lr  # pylint: disable=import-outside-toplevel
  from dattri.benchmark.models.logistic_regression import create_lr_model  # pylint: disable=import-outside-toplevel
  from dattri.model_util.retrain import retrain_lds  # pylint: disable=import-outside-toplevel
  loader = DataLoader(TensorDataset(x_tr, y_tr), batch_size=32)
  retrain_lds(train_mnist_lr, loader, models, num_subsets=50,
              subset_ratio=0.5, seed=0)
  test_loader = DataLoader(TensorDataset(x_te, y_te), batch_size=500)
  correct = []
  for ckpt in sorted(pathlib.Path(models).glob("*/model_weights_0.pt")):
    loss_mnist_lr(str(ckpt), test_loader)
    model = create_lr_model("mnist")
    model.load_state_dict(torch.load(ckpt))
    with torch.no_grad():
      correct.append(float((model(x_te).argmax(1) == y_te).float().mean()))
  print(json.dumps({"seconds": time.perf_counter() - t0,
                    "mean_test_accuracy": float(np.mean(correct)),
                    "models": len(correct)}))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
