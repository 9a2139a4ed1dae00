"""The validation-set control for the transfer-scenario attacks (Bullseye
Polytope, Feature Collision): does HINT's clean validation set, used
directly, stop them?

For each undefended transfer cell: rebuild its victim exactly (the cached
pre-trained extractor, theta_top re-initialised from the cell's seed and
trained 20 epochs on the poisoned fine-tuning set; the rebuilt victim's
test accuracy and verdict on the target are checked against the cell's
result.json), then train theta_top further on the 1000 clean validation
images alone (SGD 0.1, momentum 0.9, batch 128, as the fine-tuning) for
each of several epoch counts, and record the target's class and the test
accuracy after each.

  python experiments/validation_control_transfer.py --data-dir ../shared/data \
      --exp runs/exp --cell cifar10_bp_none_t0_a291626e13 [--cell ...] \
      --epochs 1,5,20 --out experiments/results/controls_cpu/validation_control_transfer.json
"""

import argparse
import dataclasses
import json
import pathlib

import jax
import numpy as np

from hint_jax import attacks, pipeline
from hint_jax.train import transfer

from validation_control import run_cells  # the sibling script


def rebuild_and_tune(exp, cell_id, data_dir, epoch_counts):
  cell_dir = exp / "cells" / cell_id
  result = json.loads((cell_dir / "result.json").read_text())
  argv = json.loads((cell_dir / "cell.json").read_text())["key"]["train"]
  flag = lambda name: argv[argv.index(name) + 1]
  data = pipeline.DataSpec("cifar10", data_dir=data_dir,
                           subset=int(flag("--subset")))
  _, splits = pipeline.load_splits(data)
  ps = attacks.load_poisoned(result["poison"]["file"])
  x_poisoned = attacks.poisoned_training_images(ps, splits.x_train,
                                                splits.y_train)
  target, victim = ps.target, ps.meta["victim"]
  pre, fine = transfer.transfer_split(
      len(splits.x_train), jax.random.key(target["transfer_split_seed"]),
      target["pretrain_fraction"])
  pre_splits = dataclasses.replace(splits, x_train=splits.x_train[pre],
                                   y_train=splits.y_train[pre])
  schedule = {"epoch_schedule": victim.get("epoch_schedule", "absolute")}
  folder, identity = pipeline.clean_model_folder(
      exp / "victims", "cifar10", data.split_seed, data.subset, pre_splits,
      victim["model"], victim["epochs"], victim["seed"], victim["augment"],
      **schedule)
  model, state, trainer, _ = pipeline.train_clean(
      "cifar10", victim["model"], pre_splits, victim["epochs"],
      victim["seed"], folder, None, augment=victim["augment"], **schedule,
      **identity)
  seed = result["seed"]
  params = transfer.reinit_top_layer(model, state.params,
                                     jax.random.key(seed))
  params = transfer.train_top_layer(
      model, params, state.model_state, x_poisoned[fine],
      splits.y_train[fine], jax.random.fold_in(jax.random.key(seed), 1))

  def verdict(p):
    st = state.replace(params=p)
    out = pipeline.target_outcome(model, st, ps.target_x, target)
    acc = trainer.evaluate(st, splits.x_test, splits.y_test)["accuracy"]
    return {"test_accuracy": acc, "hit": out["success"],
            "predicted": out["predicted"],
            "intended_probability": out["intended_probability"]}

  rebuilt = verdict(params)
  # The rebuilt victim is the cell's own (deterministic training).
  assert rebuilt["hit"] == result["target"]["success"], cell_id
  assert np.isclose(rebuilt["test_accuracy"], result["test_accuracy"],
                    atol=1e-4), (cell_id, rebuilt, result["test_accuracy"])
  record = {"cell": cell_id, "attack": ps.meta["attacks"][0]["name"],
            "target": target["index"], "intended": target["intended_class"],
            "after": {"0": rebuilt}}
  for epochs in sorted(epoch_counts):
    tuned = transfer.train_top_layer(
        model, params, state.model_state, splits.x_val, splits.y_val,
        jax.random.fold_in(jax.random.key(seed), 3),
        config=transfer.TopLayerConfig(epochs=epochs))
    record["after"][str(epochs)] = verdict(tuned)
  return record


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--exp", required=True, help="the experiment folder")
  p.add_argument("--cell", action="append", required=True,
                 help="an undefended transfer cell's id (repeatable)")
  p.add_argument("--epochs", default="1,5,20")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--out", required=True)
  args = p.parse_args()
  run_cells(args.cell, args.epochs, args.out,
            lambda cell, counts: rebuild_and_tune(pathlib.Path(args.exp), cell,
                                                  args.data_dir, counts))


if __name__ == "__main__":
  main()
