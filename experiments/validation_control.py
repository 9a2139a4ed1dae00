"""Control for the MNIST controls: how much do HINT's 1000 clean validation
images give on their own?

HINT's update is the one thing in a HINT run that sees clean labelled data:
s_test is the inverse Hessian times the gradient of the loss on the 1000
validation images. This control gives an undefended cell's final model
those same images directly: it fine-tunes the model (the whole network,
the cell's optimiser: SGD 0.01, batch 128) on the validation images alone
for each of several epoch counts, and reports the test accuracy after each.
No poisoned image is seen again.

  python experiments/validation_control.py --data-dir ../shared/data \
      --cell runs/exp/cells/mnist_p1_none_t0_8523f782fd [--cell ...] \
      --epochs 1,5,20 --out experiments/results/controls_cpu/validation_control.json

The cell folders must hold their checkpoint (``checkpoint.msgpack``; the
committed copies under experiments/results hold only results). Prints one
JSON line per cell and writes them all to OUT.
"""

import argparse
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp

from hint_jax import pipeline
from hint_jax.models import get_model
from hint_jax.pipeline import checkpoint
from hint_jax.train import Trainer, fit
from hint_jax.train.presets import preset


def fine_tune(cell, data_dir, epoch_counts, seed):
  settings, params, model_state = checkpoint.read_final(cell)
  data = pipeline.DataSpec(settings["dataset"], data_dir=data_dir,
                           split_seed=settings["split_seed"],
                           num_val=settings["num_val"],
                           subset=settings["subset"])
  _, splits = pipeline.load_splits(data)
  # Train on the validation images only; the test set stays the test set.
  val = dataclasses.replace(splits, x_train=splits.x_val,
                            y_train=splits.y_val)
  model = get_model(settings["model"], splits.num_classes,
                    splits.x_train.shape[1:])
  record = {"cell": str(cell), "seed": settings["seed"],
            "num_val": len(splits.x_val), "after": {}}
  for epochs in [0] + sorted(epoch_counts):
    cfg = dataclasses.replace(preset(settings["dataset"], epochs=epochs),
                              eval_every=0)
    trainer = Trainer(model, cfg, len(val.x_train))
    state = trainer.init_state(jax.random.key(seed)).replace(
        params=jax.tree.map(jnp.asarray, params),
        model_state=jax.tree.map(jnp.asarray, model_state))
    state, _, _ = fit(trainer, state, val)
    test = trainer.evaluate(state, splits.x_test, splits.y_test)
    record["after"][str(epochs)] = test["accuracy"]
  return record


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cell", action="append", required=True,
                 help="an undefended cell's folder (repeatable)")
  p.add_argument("--epochs", default="1,5,20",
                 help="fine-tuning epochs over the validation images")
  p.add_argument("--seed", type=int, default=0,
                 help="seed of the fine-tuning's batch order")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--out", required=True)
  args = p.parse_args()
  run_cells(args.cell, args.epochs, args.out,
            lambda cell, counts: fine_tune(pathlib.Path(cell), args.data_dir,
                                           counts, args.seed))


def run_cells(cells, epochs_text, out, control):
  """Runs ``control(cell, epoch_counts)`` for every cell, printing each
  record as a JSON line, and writes them all to ``out``."""
  counts = [int(e) for e in epochs_text.split(",") if e.strip()]
  records = []
  for cell in cells:
    rec = control(cell, counts)
    print(json.dumps(rec), flush=True)
    records.append(rec)
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"epochs": counts, "cells": records},
                            indent=1) + "\n")


if __name__ == "__main__":
  main()
