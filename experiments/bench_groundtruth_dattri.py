"""Ground-truth retraining speed: hint_jax's `train_models` beside dattri
0.3.0's ``retrain_lds`` on dattri's MNIST-10 logistic-regression protocol,
same model, data, training and number of models, on the same CPU.

Both sides retrain the LDS ground truth: 50 models, each on a random half
(2500) of the first 5000 MNIST training images (normalised with mean
0.1307, std 0.3081), logistic regression 784 -> 10 with bias, SGD lr 0.01,
batch 32, 20 epochs, PyTorch's default initialisation, and evaluate every
model's loss on the first 500 test images. dattri: ``retrain_lds(
train_mnist_lr, DataLoader(batch_size=32), num_subsets=50,
subset_ratio=0.5, seed=0)`` (its own subsets and checkpoint files), then
``loss_mnist_lr`` of each checkpoint. hint_jax: `hint_jax.pipeline.
groundtruth`'s ``mnist_lr`` protocol through `train_models` (50 models at
once) and `evaluate_losses`. Each side runs ``--repeats`` times, each time
in a fresh process (its wall time includes imports of the training code,
compilation and writing; the data are loaded before the clock starts);
the record keeps every time and their medians, and each side's mean test
accuracy (the two sides draw different subsets and seeds, so models differ;
accuracy shows they train alike).

  python experiments/bench_groundtruth_dattri.py --data-dir ../shared/data \\
      --dattri-python /work/dattri-venv/bin/python \\
      --work runs/gt_dattri_bench \\
      --json experiments/results/bench/groundtruth_dattri_cpu.json
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def ours(data_dir, work):
  """One timed retraining on the hint_jax side; prints a JSON line."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from hint_jax.pipeline import groundtruth as pgt  # pylint: disable=import-outside-toplevel
  protocol = pgt.get_protocol("mnist_lr")
  data = pgt.load_protocol(protocol, data_dir)
  np.savez(pathlib.Path(work) / "problem.npz", x_train=data.x_train,
           y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
  t0 = time.perf_counter()
  import jax  # pylint: disable=import-outside-toplevel
  from hint_jax.attribution import groundtruth as gt  # pylint: disable=import-outside-toplevel
  masks = gt.subset_masks(jax.random.key(0), 5000, 50, 0.5)
  params = gt.train_models(data.init, data.train_loss, data.x_train,
                           data.y_train, masks, np.arange(50), protocol.spec,
                           jax.random.key(0))
  losses = gt.evaluate_losses(data.eval_loss, params, data.x_test,
                              data.y_test)
  logits = jax.vmap(data.apply, in_axes=(0, None))(params, data.x_test)
  acc = float(np.mean(np.argmax(np.asarray(logits), -1) == data.y_test))
  np.save(pathlib.Path(work) / "ours_test_loss.npy", losses)
  print(json.dumps({"seconds": time.perf_counter() - t0,
                    "mean_test_accuracy": acc}))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data-dir", default=None)
  p.add_argument("--dattri-python", required=True)
  p.add_argument("--work", default="runs/gt_dattri_bench")
  p.add_argument("--json", default=None)
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--ours", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args()
  work = pathlib.Path(args.work)
  work.mkdir(parents=True, exist_ok=True)
  if args.ours:
    ours(args.data_dir, work)
    return
  runs = {"hint_jax": [], "dattri": []}
  for _ in range(args.repeats):
    for side in ("hint_jax", "dattri"):
      if side == "hint_jax":
        argv = [sys.executable, __file__, "--ours", "--work", str(work),
                "--dattri-python", args.dattri_python]
        argv += ["--data-dir", args.data_dir] if args.data_dir else []
      else:
        argv = [args.dattri_python, str(HERE / "dattri_retrain_side.py"),
                str(work / "problem.npz"), str(work / "dattri_models")]
      done = subprocess.run(argv, check=True, capture_output=True,
                            text=True)
      rec = json.loads(done.stdout.strip().splitlines()[-1])
      runs[side].append(rec)
      print(f"{side}: {rec['seconds']:.1f} s, mean test accuracy "
            f"{rec['mean_test_accuracy']:.4f}", flush=True)
  med = {s: statistics.median(r["seconds"] for r in v)
         for s, v in runs.items()}
  from hint_jax import xla_options  # pylint: disable=import-outside-toplevel
  record = {"protocol": "dattri MNIST-10 LR, LDS ground truth: 50 models "
                        "on random halves of 5000 images, 20 epochs",
            "processor": xla_options.processor_summary(),
            "runs": runs, "median_seconds": med,
            "speedup_median": med["dattri"] / med["hint_jax"]}
  print(f"median: hint_jax {med['hint_jax']:.1f} s, dattri "
        f"{med['dattri']:.1f} s, ratio {record['speedup_median']:.1f}x")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
  main()
