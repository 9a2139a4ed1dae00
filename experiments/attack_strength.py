"""How strong is each attack of a mixed poisoned file, alone and combined?

Trains the dataset's model with its training preset on subsets of a
poisoned-dataset file: the rows of one attack, of several attacks together
("pgd+dap"), or "clean" (the clean images of the first attack's rows, the
same number of examples), and reports the clean test accuracy of each.

  python experiments/attack_strength.py POISON.npz clean pgd dap durp dc \
      pgd+dap --data-dir ../shared/data --json out.json
"""

import argparse
import dataclasses
import json
import sys
import time

import jax
import numpy as np

from hint_jax import attacks
from hint_jax import data as data_lib
from hint_jax.models import get_model
from hint_jax.train import Trainer, fit
from hint_jax.train.presets import default_model, preset


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("poison")
  p.add_argument("subsets", nargs="+")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--epochs", type=int, default=None)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", default=None)
  args = p.parse_args()
  ps = attacks.load_poisoned(args.poison)
  meta = ps.meta
  ds = data_lib.load_dataset(meta["dataset"], args.data_dir)
  splits = data_lib.split_train_val(ds, meta["num_val"], meta["split_seed"])
  x_poisoned = attacks.poisoned_training_images(
      ps, splits.x_train, splits.y_train, where=args.poison)
  names = [a["name"] for a in meta["attacks"]]
  results = []
  for subset in args.subsets:
    if subset == "clean":
      rows = np.flatnonzero(ps.attack_id == 0)
      x = splits.x_train[rows]
    else:
      parts = subset.split("+")
      if any(a not in names for a in parts):
        sys.exit(f"unknown attack in {subset!r}; the file has {names}")
      rows = np.flatnonzero(np.isin(ps.attack_id,
                                    [names.index(a) for a in parts]))
      x = x_poisoned[rows]
    sp = dataclasses.replace(splits, x_train=x, y_train=splits.y_train[rows])
    model = get_model(default_model(meta["dataset"]), splits.num_classes,
                      x.shape[1:])
    cfg = dataclasses.replace(preset(meta["dataset"], epochs=args.epochs),
                              eval_every=0)
    trainer = Trainer(model, cfg, len(rows))
    t0 = time.perf_counter()
    _, hist, _ = fit(trainer, trainer.init_state(jax.random.key(args.seed)),
                     sp)
    r = {"subset": subset, "num_train": int(len(rows)),
         "epochs": cfg.epochs,
         "test_accuracy": hist[-1]["test_accuracy"],
         "seconds": time.perf_counter() - t0}
    results.append(r)
    print(f"{subset:>16s}: {len(rows):6d} images, test accuracy "
          f"{100 * r['test_accuracy']:.2f}% ({r['seconds']:.0f} s)",
          flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"poison": args.poison, "poison_meta": meta,
                 "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
