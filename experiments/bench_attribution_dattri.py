"""hint_jax.attribution beside dattri 0.3.0 on dattri's MNIST logistic
regression benchmark, same model, data and settings, on the same CPU.

The problem (dattri's MNIST-10 LR setting, ../shared/docs/ATTRIBUTION.md):
the first 5000 MNIST training images and the first 500 test images,
normalised with mean 0.1307 and std 0.3081, a 784 -> 10 linear model with
bias (7850 parameters) trained with SGD 0.01, batch 32, 20 epochs (here, in
JAX; dattri's side loads the same weights). Every estimator both libraries
have runs on both with the same settings (damping λ = 0.01 added to the
Hessian; CG with dattri's default of 10 iterations; LiSSA batch 32, depth 1000, scale 50; Arnoldi
100 iterations keeping 100 eigenpairs; TracIn / Grad-Dot / Grad-Cos on the
final model without projection; TRAK with a 512-dimensional random
projection on each side (its own draw: the scores agree only as far as
two projections do; without one the kernel of 5000 gradients in 7850
dimensions is singular);
dattri's loaders take the training set as one batch, its fastest setting,
since it recomputes the test side for every training batch), each
in its own process (its time includes compilation / set-up and its peak
memory is its own). Prints and writes, per estimator: both times and peak
memories, the time ratio, and the Spearman correlation of the two score
vectors of each test image (median and range over the 500).

  python experiments/bench_attribution_dattri.py --data-dir ../shared/data \\
      --dattri-python /work/dattri-venv/bin/python --work runs/dattri_bench \\
      --json experiments/results/bench/attribution_dattri_cpu.json

dattri's venv: ``python -m venv V && V/bin/pip install torch==2.13.0
dattri==0.3.0`` (dattri does not install torch itself).
"""

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ESTIMATORS = ("explicit", "cg", "lissa", "lissa_depth100", "arnoldi",
              "tracin", "grad_dot", "grad_cos", "trak")
# A run name is an estimator, or an estimator and a variant of its
# settings after "_" (lissa_depth100: LiSSA with depth 100).
VARIANTS = {"lissa_depth100": ("lissa", {"depth": 100})}
SETTINGS = {"damping": 0.01, "cg_maxiter": 10, "cg_tol": 1e-7,
            "lissa": {"batch_size": 32, "depth": 1000, "scale": 50.0},
            "arnoldi": {"iterations": 100, "top_k": 100},
            "tracin_lr": 0.01, "trak_proj_dim": 512,
            "train_batch": 5000, "test_batch": 500}


def make_problem(data_dir, path):
  """Trains the LR (JAX) and writes the problem file both sides read."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  ds = data_lib.load_dataset("mnist", data_dir)
  norm = lambda x: ((x.reshape(len(x), -1).astype(np.float32) / 255.0
                     - 0.1307) / 0.3081)
  x_tr, y_tr = norm(ds.x_train[:5000]), ds.y_train[:5000].astype(np.int32)
  x_te, y_te = norm(ds.x_test[:500]), ds.y_test[:500].astype(np.int32)
  key = jax.random.key(0)
  params = {"w": jnp.zeros((784, 10)), "b": jnp.zeros((10,))}

  @jax.jit
  def step(p, xb, yb):
    def loss(p):
      logits = xb @ p["w"] + p["b"]
      return jnp.mean(jax.nn.logsumexp(logits, 1)
                      - jnp.take_along_axis(logits, yb[:, None], 1)[:, 0])
    g = jax.grad(loss)(p)
    return jax.tree.map(lambda a, b: a - 0.01 * b, p, g)

  for epoch in range(20):
    order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch),
                                              5000))
    for s in range(0, 5000, 32):
      idx = order[s:s + 32]
      params = step(params, x_tr[idx], y_tr[idx])
  acc = float(np.mean(np.argmax(x_te @ np.asarray(params["w"])
                                + np.asarray(params["b"]), 1) == y_te))
  np.savez(path, w=np.asarray(params["w"]), b=np.asarray(params["b"]),
           x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
           settings=np.frombuffer(json.dumps(SETTINGS).encode(), np.uint8))
  return acc


def estimator_and_settings(name, settings):
  """(estimator, settings) of a run name (see VARIANTS)."""
  est, extra = VARIANTS.get(name, (name, {}))
  s = json.loads(json.dumps(settings))
  if est == "lissa":
    s["lissa"].update(extra)
  return est, s


def run_ours(problem, out_dir, name):
  """One estimator with hint_jax, in this process; writes ours_<name>."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hint_jax import attribution  # pylint: disable=g-import-not-at-top
  d = np.load(problem)
  est, s = estimator_and_settings(name, json.loads(bytes(
      d["settings"]).decode()))
  params = {"w": jnp.asarray(d["w"]), "b": jnp.asarray(d["b"])}
  apply = lambda p, x: x @ p["w"] + p["b"]
  train = (jnp.asarray(d["x_train"]), jnp.asarray(d["y_train"]))
  test = (jnp.asarray(d["x_test"]), jnp.asarray(d["y_test"]))
  lam = s["damping"]
  hess = {"curvature": "hessian", "damping": lam}
  kw = {"explicit": dict(hess),
        # dattri's default of 10 iterations (not converged on either side:
        # its CG at 300 iterations was killed for memory on 24 GB).
        "cg": dict(hess, maxiter=s["cg_maxiter"], tol=s["cg_tol"]),
        "lissa": dict(hess, **s["lissa"]),
        "arnoldi": dict(hess, **s["arnoldi"]),
        "tracin": {"learning_rates": [s["tracin_lr"]]},
        "grad_dot": {}, "grad_cos": {},
        "trak": {"proj_dim": s["trak_proj_dim"]}}[est]
  t0 = time.perf_counter()
  state = attribution.prepare(est, apply, params, train,
                              key=jax.random.key(0), **kw)
  jax.block_until_ready(state)
  prepare_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  scores = attribution.scores(state, apply, train, test, train_block=1000,
                              test_block=500)
  score_s = time.perf_counter() - t0
  np.savez(pathlib.Path(out_dir) / f"ours_{name}.npz", scores=scores)
  (pathlib.Path(out_dir) / f"ours_{name}.json").write_text(json.dumps({
      "prepare_seconds": prepare_s, "score_seconds": score_s,
      "peak_memory_mb": resource.getrusage(
          resource.RUSAGE_SELF).ru_maxrss / 1024.0,
      "jax": jax.__version__}))


def entry(work, name):
  """The record of one run from its files in ``work``."""
  ours = json.loads((work / f"ours_{name}.json").read_text())
  theirs = json.loads((work / f"dattri_{name}.json").read_text())
  rec = {"ours": ours, "dattri": theirs}
  if "failed" in theirs:
    return rec
  a = np.load(work / f"ours_{name}.npz")["scores"]
  b = np.load(work / f"dattri_{name}.npz")["scores"]
  rho = spearman_rows(a, b)
  t_ours = ours["prepare_seconds"] + ours["score_seconds"]
  t_theirs = theirs["cache_seconds"] + theirs["attribute_seconds"]
  rec.update(seconds_ratio=t_theirs / t_ours,
             spearman_median=float(np.median(rho)),
             spearman_min=float(rho.min()), spearman_max=float(rho.max()),
             pearson_of_all=float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
  return rec


def line(name, rec):
  ours = rec["ours"]
  t_ours = ours["prepare_seconds"] + ours["score_seconds"]
  head = f"{name}: hint_jax {t_ours:.1f} s ({ours['peak_memory_mb']:.0f} MB)"
  if "failed" in rec["dattri"]:
    return f"{head}, dattri failed: {rec['dattri']['failed']}"
  theirs = rec["dattri"]
  t = theirs["cache_seconds"] + theirs["attribute_seconds"]
  return (f"{head}, dattri {t:.1f} s ({theirs['peak_memory_mb']:.0f} MB), "
          f"{rec['seconds_ratio']:.1f}x; Spearman per test image median "
          f"{rec['spearman_median']:.4f} (min {rec['spearman_min']:.4f})")


def spearman_rows(a, b):
  from scipy import stats  # pylint: disable=g-import-not-at-top
  rho = np.array([stats.spearmanr(a[t], b[t])[0] for t in range(len(a))])
  return rho[np.isfinite(rho)]


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data-dir", default=None)
  p.add_argument("--dattri-python", required=False)
  p.add_argument("--work", default="runs/dattri_bench")
  p.add_argument("--json", default=None)
  p.add_argument("--estimators", default=",".join(ESTIMATORS))
  p.add_argument("--from-files", action="store_true",
                 help="rebuild the record from WORK's files, run nothing")
  p.add_argument("--one", nargs=3, metavar=("PROBLEM", "OUT", "NAME"),
                 help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.one:
    run_ours(*args.one)
    return
  if not args.dattri_python and not args.from_files:
    p.error("--dattri-python is required")
  work = pathlib.Path(args.work)
  work.mkdir(parents=True, exist_ok=True)
  problem = work / "problem.npz"
  acc = (json.loads(pathlib.Path(args.json).read_text())["lr_test_accuracy"]
         if args.from_files and args.json
         and pathlib.Path(args.json).exists()
         else make_problem(args.data_dir, problem))
  print(f"LR test accuracy {acc:.4f}", flush=True)
  record = {"problem": "dattri MNIST-10 LR: first 5000 train, first 500 "
                       "test, 7850 parameters", "lr_test_accuracy": acc,
            "settings": SETTINGS, "estimators": {}}
  if args.json and pathlib.Path(args.json).exists():   # add to a record
    record["estimators"] = json.loads(pathlib.Path(args.json).read_text())[
        "estimators"]
  for name in args.estimators.split(","):
    if not args.from_files:
      subprocess.run([sys.executable, __file__, "--one", str(problem),
                      str(work), name], check=True)
      done = subprocess.run([args.dattri_python,
                             str(HERE / "dattri_side.py"), str(problem),
                             str(work), name], check=False)
      if done.returncode != 0:
        why = (f"killed by signal {-done.returncode} (out of memory: 24 GB)"
               if done.returncode < 0 else f"exit status {done.returncode}")
        (work / f"dattri_{name}.json").write_text(json.dumps(
            {"failed": why}))
        (work / f"dattri_{name}.npz").unlink(missing_ok=True)
    record["estimators"][name] = entry(work, name)
    print(line(name, record["estimators"][name]), flush=True)
  add_versus_explicit(work, record)
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(record, indent=1) + "\n")


def add_versus_explicit(work, record):
  """Each side's influence-function approximations (cg, lissa, arnoldi)
  against its own explicit solve: median Spearman per test image."""
  for side in ("ours", "dattri"):
    ref = work / f"{side}_explicit.npz"
    if not ref.exists():
      continue
    exact = np.load(ref)["scores"]
    for name in ("cg", "lissa", "lissa_depth100", "arnoldi"):
      path = work / f"{side}_{name}.npz"
      if name in record["estimators"] and path.exists() and path.stat(
          ).st_mtime >= ref.stat().st_mtime - 3600:
        rho = spearman_rows(np.load(path)["scores"], exact)
        record["estimators"][name][f"{side}_spearman_vs_explicit"] = float(
            np.median(rho))


if __name__ == "__main__":
  main()
