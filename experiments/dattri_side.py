"""The dattri half of `bench_attribution_dattri.py`: runs in a virtual
environment with dattri 0.3.0 and torch (never a dependency of hint_jax).

  DATTRI_PY problem.npz out_dir ESTIMATOR [ESTIMATOR ...]

Reads the logistic regression and the data the other half wrote
(``w`` (784, 10), ``b`` (10,), ``x_train``, ``y_train``, ``x_test``,
``y_test``, settings as JSON in ``settings``), runs each of dattri's
attributors on it with those settings, and writes
``out_dir/dattri_<estimator>.npz`` (``scores`` (n_test, n_train), dattri's
own (n_train, n_test) transposed) and ``out_dir/dattri_<estimator>.json``
(seconds of ``cache`` and of ``attribute``, peak memory).
"""

import json
import pathlib
import resource
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dattri.algorithm.influence_function import (IFAttributorArnoldi,
                                                 IFAttributorCG,
                                                 IFAttributorExplicit,
                                                 IFAttributorLiSSA)
from dattri.algorithm.tracin import TracInAttributor
from dattri.algorithm.trak import TRAKAttributor
from dattri.task import AttributionTask


def main(problem, out_dir, names):
  torch.manual_seed(0)
  data = np.load(problem)
  settings = json.loads(bytes(data["settings"]).decode())
  model = nn.Linear(784, 10)
  with torch.no_grad():
    model.weight.copy_(torch.tensor(data["w"].T))
    model.bias.copy_(torch.tensor(data["b"]))
  model.eval()
  x_tr = torch.tensor(data["x_train"])
  y_tr = torch.tensor(data["y_train"], dtype=torch.long)
  x_te = torch.tensor(data["x_test"])
  y_te = torch.tensor(data["y_test"], dtype=torch.long)

  def loss_func(params, batch):
    x, y = batch
    logits = torch.func.functional_call(model, params, x)
    return nn.CrossEntropyLoss()(logits, y.long())   # LiSSA's batches: float

  def correct_probability(params, batch):
    x, y = batch
    logits = torch.func.functional_call(model, params, x.unsqueeze(0))
    return torch.exp(-nn.CrossEntropyLoss()(logits, y.unsqueeze(0)))

  task = AttributionTask(loss_func=loss_func, model=model,
                         checkpoints=model.state_dict())
  train_set, test_set = TensorDataset(x_tr, y_tr), TensorDataset(x_te, y_te)
  train_loader = DataLoader(train_set, batch_size=settings["train_batch"],
                            shuffle=False)
  full_loader = DataLoader(train_set, batch_size=len(train_set),
                           shuffle=False)
  test_loader = DataLoader(test_set, batch_size=settings["test_batch"],
                           shuffle=False)
  lam = settings["damping"]
  out_dir = pathlib.Path(out_dir)
  for name in names:
    run, name = name, name.split("_depth")[0]
    if run != name:                      # lissa_depth100: depth 100
      settings["lissa"]["depth"] = int(run.split("_depth")[1])
    if name == "explicit":
      att = IFAttributorExplicit(task, regularization=lam)
    elif name == "cg":
      att = IFAttributorCG(task, max_iter=settings["cg_maxiter"],
                           tol=settings["cg_tol"], regularization=lam,
                           mode=settings.get("cg_mode", "rev-rev"))
    elif name == "lissa":
      s = settings["lissa"]
      att = IFAttributorLiSSA(task, batch_size=s["batch_size"],
                              recursion_depth=s["depth"],
                              damping=lam / s["scale"], scaling=s["scale"])
    elif name == "arnoldi":
      s = settings["arnoldi"]
      att = IFAttributorArnoldi(task, proj_dim=s["top_k"],
                                max_iter=s["iterations"], regularization=lam)
    elif name in ("tracin", "grad_dot", "grad_cos"):
      lr = settings["tracin_lr"] if name == "tracin" else 1.0
      att = TracInAttributor(task, weight_list=torch.tensor([lr]),
                             normalized_grad=(name == "grad_cos"))
      att.projector_kwargs = None      # exact gradients, as the other side
    elif name == "trak":
      att = TRAKAttributor(task, correct_probability_func=correct_probability,
                           projector_kwargs={
                               "proj_dim": settings["trak_proj_dim"],
                               "proj_seed": 0, "device": "cpu",
                               "proj_max_batch_size": 32})
    else:
      raise SystemExit(f"unknown estimator {name}")
    t0 = time.perf_counter()
    if name in ("tracin", "grad_dot", "grad_cos"):
      att.cache()
    else:
      att.cache(full_loader)
    cache_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if name == "trak":     # its signature: (test loader, train loader)
      scores = att.attribute(test_loader)
    else:
      scores = att.attribute(train_loader, test_loader)
    attribute_s = time.perf_counter() - t0
    np.savez(out_dir / f"dattri_{run}.npz",
             scores=scores.detach().numpy().T.astype(np.float32))
    (out_dir / f"dattri_{run}.json").write_text(json.dumps({
        "cache_seconds": cache_s, "attribute_seconds": attribute_s,
        "peak_memory_mb": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__}))
    print(f"dattri {run}: {cache_s + attribute_s:.1f} s", flush=True)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], sys.argv[3:])
