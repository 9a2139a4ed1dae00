"""Control for a from-scratch Table III trial: the victim's own seed trained
on the clean split (no poisons; otherwise the cell's settings: resnet_tiny,
10000 images, 15 epochs, augmentation and epoch schedule as given), and
its verdict on the trial's target. A poisoned victim that hits is evidence
of the attack only if this clean twin does not already give the intended
class.

  python experiments/clean_control.py --seed 102 --target 2446 \
      --intended 3 --no-augment --data-dir ../shared/data \
      --out runs/control_seed102

Prints one JSON line and writes it to OUT/control.json; the trained model
is kept in OUT (a rerun reloads it).
"""

import argparse
import json
import pathlib

from hint_jax import pipeline


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seed", type=int, required=True,
                 help="the cell's victim seed (100 + trial)")
  p.add_argument("--target", type=int, required=True,
                 help="the target's test index")
  p.add_argument("--intended", type=int, required=True)
  p.add_argument("--no-augment", action="store_true")
  p.add_argument("--epoch-schedule", choices=("scaled", "absolute"),
                 default="scaled",
                 help="the cell's (the table3 cpu profile: scaled; its "
                 "cells committed before the option existed: absolute)")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--out", required=True)
  args = p.parse_args()
  _, splits = pipeline.load_splits(pipeline.DataSpec(
      "cifar10", data_dir=args.data_dir, num_val=1000, subset=10000))
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  model, state, _, acc = pipeline.train_clean(
      "cifar10", "resnet_tiny", splits, 15, args.seed, out, None,
      "clean control", augment=False if args.no_augment else None,
      epoch_schedule=args.epoch_schedule)
  verdict = pipeline.target_outcome(model, state, splits.x_test[args.target], {
      "index": args.target, "true_class": int(splits.y_test[args.target]),
      "intended_class": args.intended})
  record = {"seed": args.seed, "no_augment": args.no_augment,
            "epoch_schedule": args.epoch_schedule,
            "test_accuracy": acc, **verdict}
  (out / "control.json").write_text(json.dumps(record, indent=1) + "\n")
  print(json.dumps(record))


if __name__ == "__main__":
  main()
