"""How accurate is each attribution estimator? LDS and LOO on a protocol.

For a ground-truth protocol (`hint_jax.pipeline.groundtruth`: dattri's
MNIST-10 logistic regression or MLP, or the quick digits ones) the study

1. retrains the ground truth: LDS (m subsets of half the training slice,
   one model each, seeds 0 .. m−1), optionally a second LDS ground truth on
   the same subsets with seeds m .. 2m−1, and LOO (the full model and one
   model per removed example, seed 0). From the two LDS ground truths, per
   test example: the *retest* correlation r (Spearman over subsets of the
   two measurements of the same subsets) and the *noise ceiling* √r: by
   the classical attenuation argument (measurement = signal + independent
   noise), a prediction that knew each subset's expected value exactly
   would correlate with one measurement at about √r (exact for Pearson,
   approximate for Spearman). An estimator above √r is fitting the noise
   of this particular ground truth, or the argument's assumptions fail;
2. trains the models the estimators attribute: the full-data model (seed
   0, the LOO ground truth's own reference model), ``tracin_models``
   independently seeded full-data models for TracIn (dattri's variant:
   seeds 1 ..), and for TRAK-k k models on random halves;
3. scores every test example against every training example with each
   estimator and each value of its hyper-parameter grid;
4. reports per test example LDS (Spearman over subsets, `metrics.lds`) and
   LOO correlation (Pearson over the removed examples,
   `metrics.loo_correlation`).

Hyper-parameters are **cross-fitted**, never chosen on the reported
points: the test examples are split into two folds (even and odd
positions); each fold's values use the grid value with the best mean of
the same metric on the other fold. Every test example is reported, each
with a choice it did not influence. Beside it, the "best on the reported
points" value (how dattri picks its influence-function damping) shows how
optimistic that choice is.

Everything is resumable: the ground truths and member models are cached
in ``out`` by their settings, each score matrix is written once (under a
temporary name, renamed when complete) and skipped when present.
"""

import dataclasses
import json
import platform
import resource
import time
from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import attribution
from hint_jax.attribution import groundtruth as gt
from hint_jax.attribution import metrics
from hint_jax.errors import ConfigError
from hint_jax.influence import restrict
from hint_jax.pipeline import files
from hint_jax.pipeline import groundtruth as pgt
from hint_jax.pipeline.training import Reporter

RECORD_FILE = "bench.json"
PER_POINT_FILE = "per_point.npz"   # cross-fitted LDS / LOO per test example
FIGURE_FILE = "per_point.png"

# dattri's published MNIST-10 values (ATTRIBUTION.md; read off its bar
# charts, about ± 0.02); None where it publishes none.
PUBLISHED = {
    "mnist_lr": {
        "explicit": (0.875, 0.80), "cg": (0.88, 0.80),
        "lissa": (0.865, 0.79), "arnoldi": (0.27, 0.31),
        "tracin": (0.28, 0.33), "grad_dot": (0.28, 0.33),
        "grad_cos": (0.165, 0.19), "trak-1": (0.48, 0.415),
        "trak-10": (0.735, 0.645), "trak-50": (0.78, 0.68)},
    "mnist_mlp": {
        "cg": (None, 0.26), "lissa": (None, 0.14), "arnoldi": (None, 0.09),
        "tracin": (None, 0.145), "grad_dot": (None, 0.10),
        "grad_cos": (None, 0.12), "trak-1": (None, 0.11),
        "trak-10": (None, 0.33), "trak-50": (None, 0.45)},
}

DAMPING = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclasses.dataclass(frozen=True)
class Arm:
  """One estimator as benchmarked: its registry name, fixed settings, the
  grid of one hyper-parameter (empty: none), and the member models."""
  label: str
  estimator: str
  settings: Tuple[Tuple[str, object], ...] = ()
  grid_name: Optional[str] = None
  grid: Tuple = ()
  members: str = "full"          # "full", "tracin" or "trak-<k>"
  params: Tuple[str, ...] = ()   # top-level parameter names (all: empty)

  def grid_values(self):
    return self.grid if self.grid_name else (None,)


def default_arms(trak_models=(1, 10, 50), proj_dim=512,
                 explicit=True) -> Tuple[Arm, ...]:
  arms = []
  if explicit:
    arms.append(Arm("explicit", "explicit", (), "damping", DAMPING))
  arms += [
      Arm("cg", "cg", (("maxiter", 100),), "damping", DAMPING),
      Arm("lissa", "lissa", (("depth", 500), ("scale", 10.0)), "damping",
          DAMPING),
      Arm("arnoldi", "arnoldi", (("iterations", 100),), "top_k",
          (10, 50, 100)),
      Arm("kfac", "kfac", (), "damping", DAMPING),
      Arm("ekfac", "ekfac", (), "damping", DAMPING),
      Arm("grad_dot", "grad_dot"),
      Arm("grad_cos", "grad_cos"),
      Arm("tracin", "tracin", members="tracin"),
  ]
  arms += [Arm(f"trak-{k}", "trak", (("proj_dim", proj_dim),),
               members=f"trak-{k}") for k in trak_models]
  return tuple(arms)


def mlp_arms(trak_models=(1, 10, 50), proj_dim=512) -> Tuple[Arm, ...]:
  """The arms of dattri's MLP protocol (109,386 parameters: no explicit
  solve). Cheapest first, so a stopped run has its cheap arms. CG uses a
  fixed random 1000 of the 5000 training images for its curvature and 50
  iterations. LiSSA's scale 100 is what ``experiments/mlp_curvature_scale.py``
  gives for this model over 300 batches of 64 drawn with replacement
  (largest Gauss-Newton eigenvalue 51.6; the plan's first value, 1, from
  eight batches, missed that tail and diverged)."""
  arms = list(_cheap_whole_network_arms())
  arms.append(Arm("tracin", "tracin", members="tracin"))
  arms += [Arm(f"trak-{k}", "trak", (("proj_dim", proj_dim),),
               members=f"trak-{k}") for k in trak_models]
  arms += [_SUBSAMPLED_CG,
           Arm("lissa", "lissa", (("depth", 500), ("scale", 100.0)),
               "damping", DAMPING)]
  return tuple(arms)


# CG with its curvature on a fixed random 1000 training images, 50
# iterations (the MLP's and the ConvNet's 100k parameters).
_SUBSAMPLED_CG = Arm("cg", "cg", (("maxiter", 50),
                                  ("curvature_examples", 1000)),
                     "damping", DAMPING)


def _cheap_whole_network_arms() -> Tuple[Arm, ...]:
  """Grad-Dot, Grad-Cos, K-FAC, EK-FAC and Arnoldi as the MLP and ConvNet
  studies run them."""
  return (Arm("grad_dot", "grad_dot"), Arm("grad_cos", "grad_cos"),
          Arm("kfac", "kfac", (), "damping", DAMPING),
          Arm("ekfac", "ekfac", (), "damping", DAMPING),
          Arm("arnoldi", "arnoldi", (("iterations", 100),), "top_k",
              (10, 50, 100)))


# HINT's own scores as HINT computes them (`hint_jax.hint.HintConfig`'s
# defaults): influence on the top layer "head" only, the exact Hessian of
# the mean training loss, damping 0.5, solved exactly (HINT's CG converges
# to the same solve).
HINT_TOP = Arm("hint_top", "explicit", (("curvature", "hessian"),
                                        ("damping", 0.5)), params=("head",))


def convnet_arms(proj_dim=512) -> Tuple[Arm, ...]:
  """The arms of the ConvNet protocol (BatchNorm: every arm attributes the
  one full-data model; TRAK over several models and TracIn, which need
  models with their own statistics, are not here): HINT's top-layer
  scores, the same solve on the top layer with a damping grid, and the
  whole-network estimators, cheapest first.

  Not CG (planned, dropped before it ran): 50 Gauss-Newton products over
  1000 images for each of 500 test points is 25 million per-example
  products per damping value, about 20 hours per value at the 2.9 ms per
  product the whole-network CG benchmark measured on this CPU
  (experiments/results/influence_bench_cpu/README.md, "Amendment")."""
  return (
      HINT_TOP,
      Arm("top_explicit", "explicit", (("curvature", "ggn"),), "damping",
          DAMPING + (0.5,), params=("head",)),
      *_cheap_whole_network_arms(),
      Arm("trak-1", "trak", (("proj_dim", proj_dim),), members="trak-1"),
  )


@dataclasses.dataclass(frozen=True)
class BenchJob:
  """What to benchmark (see the module docstring).

  Attributes:
    protocol: a name of `hint_jax.pipeline.groundtruth.PROTOCOLS`.
    arms: the estimators (``default_arms()``).
    num_subsets: LDS subsets m.
    num_removed: LOO examples left out (None: every training example;
      0: no LOO ground truth).
    noise_ceiling: train the second LDS ground truth.
    tracin_models: full-data models TracIn sums over.
    chunk: models trained at once.
  """
  protocol: str = "mnist_lr"
  arms: Tuple[Arm, ...] = default_arms()
  num_subsets: int = 50
  num_removed: Optional[int] = None
  noise_ceiling: bool = True
  tracin_models: int = 10
  chunk: int = 50


PROFILES = {
    "quick": BenchJob(
        protocol="digits_lr", num_subsets=20, num_removed=40,
        tracin_models=3, chunk=64,
        arms=(Arm("explicit", "explicit", (), "damping", (1e-3, 1e-1)),
              Arm("cg", "cg", (("maxiter", 50),), "damping", (1e-3, 1e-1)),
              Arm("ekfac", "ekfac", (), "damping", (1e-3, 1e-1)),
              Arm("grad_dot", "grad_dot"),
              Arm("tracin", "tracin", members="tracin"),
              Arm("trak-4", "trak", (("proj_dim", 128),),
                  members="trak-4"))),
    "cpu-lr": BenchJob(protocol="mnist_lr"),
    "cpu-mlp": BenchJob(protocol="mnist_mlp", num_removed=0,
                        arms=mlp_arms()),
    "quick-convnet": BenchJob(
        protocol="digits_convnet", num_subsets=20, num_removed=0, chunk=20,
        arms=(HINT_TOP,
              Arm("top_explicit", "explicit", (("curvature", "ggn"),),
                  "damping", (1e-2, 0.5), params=("head",)),
              Arm("grad_dot", "grad_dot"),
              Arm("ekfac", "ekfac", (), "damping", (1e-3, 1e-1)),
              Arm("trak-1", "trak", (("proj_dim", 128),),
                  members="trak-1"))),
    # One ConvNet at a time: on the 2-core CPU two vmapped ConvNets
    # trained 2.2x slower than one (and ten far slower still), with the
    # steps called one by one (`Protocol.step_loop`); the ground truth's
    # files do not depend on the chunk.
    "cpu-convnet": BenchJob(protocol="mnist_convnet", num_removed=0,
                            chunk=1, arms=convnet_arms()),
}


def _peak_mb() -> float:
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / (1024.0 ** 2 if platform.system() == "Darwin" else 1024.0)


def _members(job, name, data, protocol, out, reporter):
  """The stacked parameters of a member set, trained once and cached."""
  n = len(data.x_train)
  if name == "full":
    masks, seeds = np.ones((1, n), bool), np.array([0])
  elif name == "tracin":
    masks = np.ones((job.tracin_models, n), bool)
    seeds = 1 + np.arange(job.tracin_models)
  elif name.startswith("trak-"):
    k = int(name.split("-")[1])
    masks = gt.subset_masks(jax.random.key(1000 + k), n, k, 0.5)
    seeds = 1000 + np.arange(k)
  else:
    raise ConfigError(f"unknown member set {name!r}")
  path = out / "members" / f"{name}.npz"
  template = jax.eval_shape(data.init, jax.random.key(0))
  treedef = jax.tree.structure(template)
  if path.exists():
    with np.load(path) as z:
      leaves = [jnp.asarray(z[f"arr_{i}"]) for i in range(len(z.files))]
    return jax.tree.unflatten(treedef, leaves)
  reporter.note(f"training the {name} member models ({len(masks)})")
  parts = []
  for i in range(0, len(masks), job.chunk):
    parts.append(gt.train_models(
        data.init, data.train_loss, data.x_train, data.y_train,
        masks[i:i + job.chunk], seeds[i:i + job.chunk], protocol.spec,
        jax.random.key(0), stateful=data.stateful,
        step_loop=protocol.step_loop))
  params = jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
  path.parent.mkdir(exist_ok=True)
  files.write_npz_atomic(path, *[np.asarray(a)
                                for a in jax.tree.leaves(params)])
  return params


def _attributed(data, arm, stack):
  """``(apply, [params of each member])`` an arm attributes: the members'
  parameters (a stateful model's statistics held in ``apply``), restricted
  to ``arm.params`` when it names some."""
  count = jax.tree.leaves(stack)[0].shape[0]
  if data.stateful and count > 1:
    raise ConfigError(f"{arm.label}: an estimator over several models needs "
                      "a model without batch statistics")
  apply, first = data.bind(gt.unstack(stack, 0))
  member_list = [first] + [data.bind(gt.unstack(stack, i))[1]
                           for i in range(1, count)]
  if arm.params:
    if count > 1:
      raise ConfigError(f"{arm.label}: a parameter subset applies to one "
                        "model")
    sub, rebuild = restrict(first, arm.params)
    whole = apply
    apply = lambda p, x: whole(rebuild(p), x)
    member_list = [sub]
  return apply, member_list


def _score_file(out, arm, value):
  tag = arm.label if value is None else f"{arm.label}_{arm.grid_name}={value}"
  return out / "scores" / f"{tag}.npy"


def _scores(job, arm, value, data, members, out, reporter):
  """The (n_test, n_train) scores of one arm at one grid value, with the
  seconds spent (cached)."""
  path = _score_file(out, arm, value)
  meta = path.with_suffix(".json")
  if path.exists() and meta.exists():
    return np.load(path), json.loads(meta.read_text())
  settings = dict(arm.settings)
  if arm.grid_name:
    settings[arm.grid_name] = value
  apply, member_list = _attributed(data, arm, members[arm.members])
  train = (jnp.asarray(data.x_train), jnp.asarray(data.y_train))
  reporter.note(f"{arm.label}: scoring ({', '.join(f'{k}={v}' for k, v in settings.items()) or 'no settings'})")
  t0 = time.perf_counter()
  state = attribution.prepare(
      arm.estimator, apply, member_list[0], train,
      key=jax.random.key(0),
      members=member_list if len(member_list) > 1 else None, **settings)
  jax.block_until_ready(state)
  t1 = time.perf_counter()
  s = np.asarray(attribution.scores(
      state, apply, (data.x_train, data.y_train),
      (data.x_test, data.y_test),
      on_progress=lambda d, t: reporter.stage(arm.label, d, t)),
                 np.float32)
  t2 = time.perf_counter()
  reporter.pause()
  path.parent.mkdir(exist_ok=True)
  files.write_npy_atomic(path, s)
  info = {"settings": settings, "seconds_prepare": t1 - t0,
          "seconds_scores": t2 - t1, "peak_memory_mb_so_far": _peak_mb()}
  files.write_json_atomic(meta, info)
  return s, info


def cross_fit(per_value: Dict[object, np.ndarray]) -> dict:
  """Cross-fitted choice over a grid: per test example, the metric at the
  grid value that is best (highest mean) on the other fold (folds: even
  and odd positions). ``per_value`` maps each grid value to the metric
  per test example."""
  values = list(per_value)
  n = len(next(iter(per_value.values())))
  folds = (np.arange(n) % 2 == 0, np.arange(n) % 2 == 1)
  out = np.full(n, np.nan)
  chosen = []
  for this, other in (folds, folds[::-1]):
    best = max(values, key=lambda v: np.nanmean(per_value[v][other])
               if np.isfinite(per_value[v][other]).any() else -np.inf)
    out[this] = per_value[best][this]
    chosen.append(best)
  oracle = max(values, key=lambda v: np.nanmean(per_value[v])
               if np.isfinite(per_value[v]).any() else -np.inf)
  return {"per_point": out, "chosen": chosen, "oracle_value": oracle,
          "oracle": metrics.summary(per_value[oracle]),
          "by_value": {str(v): metrics.summary(per_value[v])
                       for v in values}}


def _groundtruths(job, out, data_dir, reporter):
  lds_job = pgt.GroundTruthJob(protocol=job.protocol, kind="lds",
                               num_subsets=job.num_subsets, chunk=job.chunk)
  pgt.run_groundtruth(lds_job, out / "gt_lds", data_dir=data_dir,
                      reporter=reporter)
  found = {"lds": pgt.load_groundtruth(out / "gt_lds")}
  if job.noise_ceiling:
    ceiling = dataclasses.replace(lds_job, first_seed=job.num_subsets)
    pgt.run_groundtruth(ceiling, out / "gt_lds_ceiling", data_dir=data_dir,
                        reporter=reporter)
    found["ceiling"] = pgt.load_groundtruth(out / "gt_lds_ceiling")
  if job.num_removed != 0:
    loo = pgt.GroundTruthJob(protocol=job.protocol, kind="loo",
                             num_removed=job.num_removed, chunk=job.chunk)
    pgt.run_groundtruth(loo, out / "gt_loo", data_dir=data_dir,
                        reporter=reporter)
    found["loo"] = pgt.load_groundtruth(out / "gt_loo")
  return found


def run_bench(job: BenchJob, out, *, data_dir=None,
              reporter: Reporter = None) -> dict:
  """Runs the study into ``out``; returns the record (also
  ``out/bench.json``)."""
  reporter = reporter or Reporter()
  protocol = pgt.get_protocol(job.protocol)
  labels = [a.label for a in job.arms]
  if len(set(labels)) != len(labels):
    raise ConfigError(f"arm labels must be unique: {labels}")
  out = files.check_out(out)
  taken = files.take_out(out)   # one study per folder at a time
  try:
    return _run_bench(job, protocol, out, data_dir, reporter)
  except BaseException:
    taken.release(failed=True)
    raise
  finally:
    taken.release()


def _run_bench(job, protocol, out, data_dir, reporter):
  truth = _groundtruths(job, out, data_dir, reporter)
  data = pgt.load_protocol(protocol, data_dir)
  members = {name: _members(job, name, data, protocol, out, reporter)
             for name in sorted({a.members for a in job.arms} | {"full"})}
  record = {"protocol": protocol.describe(), "num_subsets": job.num_subsets,
            "num_removed": (None if "loo" not in truth
                            else int(len(truth["loo"]["removed"]))),
            "num_test": len(data.x_test), "arms": {},
            "published": PUBLISHED.get(job.protocol, {}),
            "hyperparameters": "cross-fitted over two folds of test "
                               "points (even / odd positions)"}
  ceiling_pp = None
  if "ceiling" in truth:
    retest = metrics.spearman_columns(-truth["lds"]["test_loss"],
                                      -truth["ceiling"]["test_loss"])
    record["retest_lds"] = metrics.summary(retest)
    record["retest_lds_summed"] = float(metrics.spearman_columns(
        -truth["lds"]["test_loss"].sum(1, keepdims=True),
        -truth["ceiling"]["test_loss"].sum(1, keepdims=True))[0])
    record["noise_ceiling_lds"] = metrics.summary(
        np.sqrt(np.clip(retest, 0, None)))
    ceiling_pp = np.sqrt(np.clip(retest, 0, None))
  full_acc = float(np.mean(np.argmax(np.asarray(data.logits(
      gt.unstack(members["full"], 0), jnp.asarray(data.x_test))), -1)
                           == data.y_test))
  record["full_model_test_accuracy"] = full_acc
  per_point = {}
  for arm in job.arms:
    lds_by, loo_by, agg_by, infos = {}, {}, {}, {}
    for value in arm.grid_values():
      s, info = _scores(job, arm, value, data, members, out, reporter)
      lds_by[value] = metrics.lds(s, truth["lds"]["masks"],
                                  truth["lds"]["test_loss"])
      agg_by[value] = metrics.lds_aggregate(s, truth["lds"]["masks"],
                                            truth["lds"]["test_loss"])
      if "loo" in truth:
        loo_by[value] = metrics.loo_correlation(
            s[:, truth["loo"]["removed"]], truth["loo"]["loo_change"])
      infos[str(value)] = info
    entry = {"estimator": arm.estimator, "settings": dict(arm.settings),
             "params": list(arm.params) or "all",
             "grid": {arm.grid_name: list(arm.grid)} if arm.grid_name
             else None, "members": arm.members, "runs": infos}
    lds_fit = cross_fit(lds_by)
    lds_fit_point = lds_fit.pop("per_point")
    entry["lds"] = metrics.summary(lds_fit_point)
    entry["lds_choice"] = lds_fit
    # One number per grid value (no test points to cross-fit over): every
    # value's, and the one at the value best on the per-point LDS.
    entry["lds_summed"] = {
        "by_value": {str(v): a for v, a in agg_by.items()},
        "at_best_per_point_value": agg_by[lds_fit["oracle_value"]]}
    loo_fit_point = None
    if loo_by:
      loo_fit = cross_fit(loo_by)
      loo_fit_point = loo_fit.pop("per_point")
      entry["loo"] = metrics.summary(loo_fit_point)
      entry["loo_choice"] = loo_fit
    record["arms"][arm.label] = entry
    np.save(out / "scores" / f"{arm.label}.lds_per_point.npy",
            np.asarray([lds_by[v] for v in arm.grid_values()]))
    per_point[arm.label] = (lds_fit_point, loo_fit_point)
    files.write_json_atomic(out / RECORD_FILE, _jsonable(record))
  record["peak_memory_mb"] = _peak_mb()
  if ceiling_pp is not None:
    per_point["noise ceiling"] = (ceiling_pp, None)
  _save_per_point(out / PER_POINT_FILE, per_point)
  ceiling_only = per_point.pop("noise ceiling", (None,))[0]
  record["figure"] = (FIGURE_FILE if per_point_figure(
      per_point, ceiling_only, out / FIGURE_FILE) else None)
  files.write_json_atomic(out / RECORD_FILE, _jsonable(record))
  return _jsonable(record)


def _save_per_point(path, per_point):
  arrays = {}
  for label, (lds_pp, loo_pp) in per_point.items():
    arrays[f"lds/{label}"] = lds_pp
    if loo_pp is not None:
      arrays[f"loo/{label}"] = loo_pp
  files.write_npz_atomic(path, **arrays)


def per_point_figure(per_point, ceiling, path) -> bool:
  """Box plots of the cross-fitted LDS (and LOO) per test example for
  each arm, the noise ceiling's beside the LDS; False without
  matplotlib."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  labels = list(per_point)
  has_loo = any(v[1] is not None for v in per_point.values())
  fig, axes = plt.subplots(1, 2 if has_loo else 1, squeeze=False,
                           figsize=(11 if has_loo else 6, 4))
  lds_sets = [v[0][np.isfinite(v[0])] for v in per_point.values()]
  names = labels
  if ceiling is not None:
    lds_sets.append(ceiling[np.isfinite(ceiling)])
    names = labels + ["noise ceiling"]
  axes[0, 0].boxplot(lds_sets)
  axes[0, 0].set_xticks(range(1, len(names) + 1), names, rotation=45,
                        ha="right")
  axes[0, 0].set_ylabel("LDS per test example (Spearman)")
  axes[0, 0].axhline(0, color="grey", lw=0.5)
  if has_loo:
    loo_labels = [k for k, v in per_point.items() if v[1] is not None]
    axes[0, 1].boxplot([per_point[k][1][np.isfinite(per_point[k][1])]
                        for k in loo_labels])
    axes[0, 1].set_xticks(range(1, len(loo_labels) + 1), loo_labels,
                          rotation=45, ha="right")
    axes[0, 1].set_ylabel("LOO correlation per test example (Pearson)")
    axes[0, 1].axhline(0, color="grey", lw=0.5)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.floating, np.integer)):
    return obj.item()
  return obj


def table(record: dict) -> str:
  """The study's Markdown table: per arm, LDS and LOO (mean ± std over
  test examples, cross-fitted), the best-on-reported value, dattri's
  published value, and the time."""
  pub = record.get("published", {})
  rows = ["| estimator | LDS | LDS best-on-reported | dattri LDS | LOO | "
          "dattri LOO | LDS of the summed test loss | seconds |",
          "|---|---|---|---|---|---|---|---|"]

  def fmt(s):
    return "-" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f}"

  for label, e in record["arms"].items():
    p_loo, p_lds = pub.get(label, (None, None))
    secs = sum(r["seconds_prepare"] + r["seconds_scores"]
               for r in e["runs"].values())
    summed = (e.get("lds_summed") or {}).get("at_best_per_point_value")
    rows.append(
        f"| {label} | {fmt(e['lds'])} | {e['lds_choice']['oracle']['mean']:.3f}"
        f" | {'-' if p_lds is None else p_lds} | {fmt(e.get('loo'))} | "
        f"{'-' if p_loo is None else p_loo} | "
        f"{'-' if summed is None else f'{summed:.3f}'} | {secs:.0f} |")
  if "noise_ceiling_lds" in record:
    summed = record.get("retest_lds_summed")
    rows.append(f"| (retest r) | {fmt(record['retest_lds'])} | | | | | "
                f"{'-' if summed is None else f'{summed:.3f}'} | |")
    rows.append(f"| (noise ceiling √r) | {fmt(record['noise_ceiling_lds'])}"
                " | | | | | | |")
  return "\n".join(rows)
