"""``hint-jax train``: train a model on a dataset, write result.json and
metrics.jsonl, resume from the last finished epoch if interrupted."""

import dataclasses
import json
import pathlib
import platform
import time

import jax
import numpy as np

from hint_jax import data as data_lib
from hint_jax.cli import checkpoint
from hint_jax.cli.common import (Progress, info, nonneg_int, out_dir,
                                 positive_float, positive_int,
                                 write_json_atomic)
from hint_jax.models import MODEL_NAMES, get_model, num_params
from hint_jax.train import Trainer, fit
from hint_jax.train.presets import default_model, preset


def add_data_args(p):
  p.add_argument("--dataset", required=True,
                 choices=data_lib.DATASET_NAMES)
  p.add_argument("--data-dir", default=None,
                 help="data directory (default: $HINT_JAX_DATA_DIR, else "
                 "~/.cache/hint_jax/data)")
  p.add_argument("--source", default="auto",
                 help="where to read the dataset from: auto, idx (mnist), "
                 "pickle|jpeg (cifar10), npz, tfds; auto picks a complete "
                 "official copy, then (cifar10) the JPEG copy, then the "
                 "exact-pixel subset")
  p.add_argument("--subset", type=positive_int, default=None,
                 help="train on this many training images (seeded choice)")
  p.add_argument("--num-val", type=nonneg_int, default=None,
                 help="validation images held out of the training set "
                 "(default: 1000 for mnist/cifar10, 100 for digits)")
  p.add_argument("--split-seed", type=nonneg_int, default=0,
                 help="seed of the train/validation split")


def add_train_args(p):
  p.add_argument("--model", choices=MODEL_NAMES, default=None,
                 help="default: convnet (mnist), resnet18 (cifar10), "
                 "convnet_small (digits)")
  p.add_argument("--epochs", type=nonneg_int, default=None)
  p.add_argument("--batch-size", type=positive_int, default=None)
  p.add_argument("--lr", type=positive_float, default=None)
  p.add_argument("--seed", type=nonneg_int, default=0,
                 help="seed of initialisation, data order and augmentation")
  p.add_argument("--eval-every", type=nonneg_int, default=None,
                 help="evaluate every N epochs (0: only at the end)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--overwrite", action="store_true",
                 help="discard a checkpoint of a run with other settings")
  p.add_argument("--no-progress", action="store_true")


def register(sub):
  p = sub.add_parser("train", help="train a model (optionally defended)")
  add_data_args(p)
  add_train_args(p)
  p.set_defaults(func=run)


def load_splits(args):
  """Loads the dataset and splits it. ``--subset`` is a cap: if fewer
  training images are left after validation (a partial copy), all of them
  are used and that is said on stderr and recorded in result.json."""
  dataset = data_lib.load_dataset(args.dataset, args.data_dir, args.source)
  splits = data_lib.split_train_val(dataset, args.num_val, args.split_seed)
  if args.subset is not None:
    if args.subset <= len(splits.x_train):
      splits = data_lib.take_subset(splits, args.subset, args.split_seed)
    else:
      info(f"--subset {args.subset}: only {len(splits.x_train)} training "
           f"images in {dataset.source} after validation; using all of them")
  return dataset, splits


def run(args):
  out = out_dir(args.out)
  t_start = time.perf_counter()
  dataset, splits = load_splits(args)
  info(f"data: {dataset.source}: {len(splits.x_train)} train / "
       f"{len(splits.x_val)} val / {len(splits.x_test)} test")
  cfg = preset(args.dataset, epochs=args.epochs, batch_size=args.batch_size,
               lr=args.lr, eval_every=args.eval_every)
  model_name = args.model or default_model(args.dataset)
  model = get_model(model_name, splits.num_classes, splits.x_train.shape[1:])
  trainer = Trainer(model, cfg, len(splits.x_train))
  state = trainer.init_state(jax.random.key(args.seed))

  settings = {"dataset": args.dataset, "source": dataset.source,
              "model": model_name, "seed": args.seed,
              "split_seed": args.split_seed, "subset": args.subset,
              "num_val": len(splits.x_val),
              "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
  if args.overwrite:
    checkpoint.clear(out)
    (out / "metrics.jsonl").unlink(missing_ok=True)
  resumed = checkpoint.load(out, state, settings)
  start_epoch, history = 0, []
  if resumed is not None:
    state, start_epoch, history, _ = resumed
    info(f"resuming {out} after epoch {start_epoch}")
  elif (out / "metrics.jsonl").exists():
    (out / "metrics.jsonl").unlink()

  progress = Progress(False if args.no_progress else None)

  def on_epoch_end(epoch, st, record, _x):
    history.append(record)
    with open(out / "metrics.jsonl", "a") as f:
      f.write(json.dumps(record) + "\n")
    checkpoint.save(out, st, epoch, settings, history)
    progress.close()
    acc = record.get("test_accuracy")
    info(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}"
         + (f", test accuracy {acc:.4f}" if acc is not None else "")
         + f" ({record['train_seconds']:.1f} s)")

  try:
    state, _, _ = fit(trainer, state, splits, start_epoch=start_epoch,
                      on_progress=progress, on_epoch_end=on_epoch_end)
  finally:
    progress.close()
  final = (trainer.evaluate(state, splits.x_test, splits.y_test)
           if not history or "test_accuracy" not in history[-1] else
           {"accuracy": history[-1]["test_accuracy"],
            "loss": history[-1]["test_loss"]})
  result = {
      **{k: v for k, v in settings.items() if k != "config"},
      "epochs": cfg.epochs, "batch_size": cfg.batch_size,
      "lr": cfg.optim.lr, "num_train": len(splits.x_train),
      "num_params": num_params(state.params),
      "test_accuracy": final["accuracy"], "test_loss": final["loss"],
      "val_accuracy": history[-1].get("val_accuracy") if history else None,
      "train_seconds": sum(r["train_seconds"] for r in history),
      "total_seconds": time.perf_counter() - t_start,
      "backend": jax.default_backend(), "jax_version": jax.__version__,
      "machine": platform.machine(), "config": settings["config"],
  }
  write_json_atomic(out / "result.json", result)
  print(f"{args.dataset}/{model_name}: test accuracy "
        f"{100 * final['accuracy']:.2f}% after {cfg.epochs} epochs; "
        f"wrote {out / 'result.json'}")
  return 0
