"""How accurate are influence functions? Predicted vs actual retraining.

For an L2-regularised softmax top layer θ_top over fixed features φ (all of
logistic regression; the last layer of a network with its body frozen), the
study compares, for a few test points z_t,

* leave-one-out: the predicted change of the test loss ℓ(z_t) when a
  training point z_i is removed, ΔL ≈ (1/n)⟨∇_θ ℓ(z_i), s_test⟩
  (`influence.predicted_loo_change`), with the actual change after retraining
  without z_i;
* input perturbation: the predicted change when a training input x_i is
  moved by δ, ΔL ≈ (1/n)⟨I_pert(z_i), δ⟩ with I_pert = −∇_x⟨∇_θ ℓ(z_i),
  s_test⟩ (`influence.influence_pert`, through the whole network), with the
  actual change after retraining with x_i + δ in place of x_i.

Conventions. The objective is R(θ) = (1/n) Σ_j ℓ(z_j; θ) + (l2/2)‖θ‖² with
the bias penalised too (`top_layer_objective(..., l2_bias=True)`; strictly
convex), θ̂ its minimiser and H = ∇²R(θ̂), L2 term included and no extra
damping: s_test = H⁻¹ ∇_θ ℓ(z_t; θ̂). Retraining keeps the objective's form:
removing z_i gives it weight 0 while keeping the 1/n (so the first-order
prediction is exactly the linearisation of what is retrained), and a
perturbation replaces ℓ(x_i) by ℓ(x_i + δ) in the same sum. Differentiating
the optimality condition ∇R_ε(θ̂_ε) = 0 gives both formulas above:
removal is the gradient change −(1/n)∇_θ ℓ(z_i), so Δθ ≈ (1/n) H⁻¹ ∇_θ ℓ(z_i);
a perturbation is the change (1/n) ∇_x∇_θ ℓ(z_i) δ, so Δθ ≈ −(1/n) H⁻¹
∇_x∇_θ ℓ(z_i) δ; and ΔL ≈ ⟨∇_θ ℓ(z_t), Δθ⟩.

Everything runs in float64: leave-one-out effects are O(1/n). The first
minimiser comes from L-BFGS (float32) polished by Newton's method, and every
retraining is warm-started from θ̂ and run by Newton's method until the
gradient norm is at the float64 rounding floor (`studies.newton`).

Which points. Test points: ⌈num_test/2⌉ drawn uniformly from the test points
that θ̂ misclassifies and the rest from the correctly classified ones (their
loss gradients, hence influences, are larger and more varied). Training
points removed for test point t: the num_top with the largest |predicted
change|, plus num_random drawn uniformly from the others. Perturbed: the
num_pert most influential, each moved once along the unit I_pert direction
(the steepest first-order increase of the test loss) and once along a random
unit direction (Gaussian, normalised), both with ‖δ‖₂ = eps, not clipped to
[0, 1]. All draws come from `numpy.random.SeedSequence(seed)`.

References:
  Koh & Liang, "Understanding black-box predictions via influence
  functions", ICML 2017 (Sec. 2; Fig. 2: Pearson 0.86 on a small CNN).
"""

import dataclasses
import functools
import math
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax import influence as infl
from hint_jax.errors import ConfigError, NumericalError
from hint_jax.studies import newton as nt
from hint_jax.studies.report import summary

Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """Settings of the study (see the module docstring).

  Attributes:
    l2: L2 coefficient of the objective (on kernel and bias).
    num_test: test points.
    num_top: most influential training points removed per test point.
    num_random: random training points removed per test point.
    num_pert: training points perturbed per test point (the most
      influential; each along I_pert and along a random direction).
    eps: L2 norm of each input perturbation δ (pixel values in [0, 1]).
    seed: seed of the point and direction draws.
    retrain_batch: retrainings solved together (one compiled shape).
    lbfgs_iter: L-BFGS iteration cap of the warm start.
    gtol: gradient-norm target of every Newton solve.
    feature_batch: images per forward pass when computing features.
  """
  l2: float = 0.01
  num_test: int = 5
  num_top: int = 50
  num_random: int = 20
  num_pert: int = 10
  eps: float = 1.0
  seed: int = 0
  retrain_batch: int = 64
  lbfgs_iter: int = 500
  gtol: float = 1e-14
  feature_batch: int = 1000

  def validate(self) -> "StudyConfig":
    for name in ("num_test", "retrain_batch", "lbfgs_iter", "feature_batch"):
      if int(getattr(self, name)) < 1:
        raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
    for name in ("num_top", "num_random", "num_pert", "seed"):
      if int(getattr(self, name)) < 0:
        raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
    if self.num_top + self.num_random < 2:
      raise ConfigError("num_top + num_random must be >= 2 to correlate")
    if self.num_pert > self.num_top:
      raise ConfigError(f"num_pert ({self.num_pert}) must be <= num_top "
                        f"({self.num_top}): the perturbed points are the most "
                        "influential ones")
    for name in ("l2", "eps", "gtol"):
      value = float(getattr(self, name))
      if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a finite number > 0, got {value}")
    return self


# ------------------------------------------------------------------ helpers


@xla_options.jit
def _losses(theta, phi_aug, y):
  """Per-example cross-entropy and logits of Θ on augmented features."""
  logits = phi_aug @ theta
  return (jax.nn.logsumexp(logits, -1)
          - jnp.take_along_axis(logits, y[:, None], -1)[:, 0]), logits


def choose_test_points(correct: np.ndarray, num_test: int,
                       rng: np.random.Generator) -> np.ndarray:
  """⌈num_test/2⌉ misclassified and the rest correct test points, at random.

  Takes more from one group when the other is too small.
  """
  wrong, right = np.flatnonzero(~correct), np.flatnonzero(correct)
  if num_test > len(correct):
    raise ConfigError(f"num_test={num_test} exceeds the {len(correct)} test "
                      "points")
  n_wrong = min(len(wrong), max(num_test - len(right), (num_test + 1) // 2))
  chosen = np.concatenate([rng.choice(wrong, n_wrong, replace=False),
                           rng.choice(right, num_test - n_wrong,
                                      replace=False)])
  return chosen.astype(np.int64)


def select_removals(predicted: np.ndarray, num_top: int, num_random: int,
                    rng: np.random.Generator):
  """The num_top largest |predicted| and num_random others drawn at random."""
  order = np.argsort(-np.abs(predicted), kind="stable")
  top, rest = order[:num_top], order[num_top:]
  rand = rng.choice(rest, min(num_random, len(rest)), replace=False)
  return top.astype(np.int64), np.sort(rand).astype(np.int64)


def _tick(on_progress, stage, done, total):
  if on_progress is not None:
    on_progress(stage, done, total)


class _Timer:
  """Seconds per stage, in order."""

  def __init__(self):
    self.seconds, self._t0 = {}, time.perf_counter()

  def lap(self, name):
    now = time.perf_counter()
    self.seconds[name] = now - self._t0
    self._t0 = now


# ------------------------------------------------------------------- stages


def _fit(problem, theta0, config, timer, on_progress):
  """θ̂: L-BFGS (float32), the dense Hessian there, then Newton (float64).

  Returns:
    (θ̂, Cholesky factor of the reference Hessian, diagnostics).
  """
  n, dim = problem.phi_aug.shape
  _tick(on_progress, "fit", 0, 3)
  theta_warm, lbfgs_iters, lbfgs_norm = nt.lbfgs(
      theta0, problem, max_iter=config.lbfgs_iter)
  timer.lap("lbfgs")
  _tick(on_progress, "fit", 1, 3)
  chol = nt.cholesky(nt.dense_hessian(theta_warm, problem))
  if not bool(jnp.all(jnp.isfinite(chol))):
    raise NumericalError("the Cholesky factorisation of the dense Hessian "
                         "failed (not positive definite in float32); raise "
                         "--l2")
  timer.lap("hessian")
  _tick(on_progress, "fit", 2, 3)
  base = jax.tree.map(lambda a: a[None], nt.no_mods(2, dim, jnp.float64))
  theta, info = nt.newton(theta_warm[None], problem, base, chol,
                          nt.woodbury_batch(chol, theta_warm, base, n),
                          gtol=config.gtol)
  theta_hat = theta[0]
  # The optimum checked independently, through the library's objective.
  phi, y = problem.phi_aug[:, 1:], problem.y
  objective = functools.partial(infl.top_layer_objective, l2=config.l2,
                                l2_bias=True)
  lib_grad = jax.grad(objective)(nt.to_top(theta_hat), phi, y)
  train_pred = jnp.argmax(problem.phi_aug @ theta_hat, -1)
  timer.lap("newton")
  _tick(on_progress, "fit", 3, 3)
  return theta_hat, chol, {
      "lbfgs_iterations": lbfgs_iters,
      "lbfgs_grad_norm_float32": lbfgs_norm,
      "newton_max_grad_norms": info.max_grad_norms,
      "newton_cg_iterations": info.cg_iterations,
      "grad_norm": float(info.grad_norm[0]),
      "grad_norm_library": float(optax.tree.norm(lib_grad)),
      "objective": float(objective(nt.to_top(theta_hat), phi, y)),
      "train_accuracy": float(jnp.mean(train_pred == y)),
  }


def _s_test(problem, theta_hat, chol, phi_t, y_t, l2):
  """s_test = H⁻¹ ∇θ ℓ(z_t; θ̂) for each test point, in float64, with the
  residual also measured with the library's closed-form HVP."""
  top_hat = nt.to_top(theta_hat)
  g_test = jax.vmap(jax.grad(infl.top_loss_one), (None, 0, 0))(
      top_hat, phi_t, y_t)
  rhs = jax.vmap(nt.from_top)(g_test)
  s, rel, iters = nt.solve_hessian(theta_hat, problem, chol, rhs)
  lib_rel = []
  for t in range(len(rhs)):
    hs = infl.top_layer_hvp(top_hat, problem.phi_aug[:, 1:], nt.to_top(s[t]),
                            l2=l2, l2_bias=True)
    lib_rel.append(float(jnp.linalg.norm(nt.from_top(hs) - rhs[t])
                         / jnp.linalg.norm(rhs[t])))
  return s, np.asarray(rel), lib_rel, {
      "cg_iterations": int(iters), "max_relative_residual": float(rel.max()),
      "max_relative_residual_library": max(lib_rel)}


def _perturbations(model, params, model_state, x_train, y_train, removals,
                   s_tops, top_hat, config, rng):
  """I_pert directions and perturbed inputs for each test point.

  Returns:
    (jobs: list of (t, i, direction name, predicted ΔL), perturbed images
    (jobs, H, W, C) float64 or None).
  """
  n = len(y_train)
  loss_top = model.top_example_loss(params, model_state)
  jobs, images = [], []
  for t, (top, _) in enumerate(removals):
    sel = top[:config.num_pert]
    if not len(sel):
      continue
    x_sel = np.asarray(x_train[sel], np.float64) / 255.0
    ipert = np.asarray(infl.influence_pert(
        loss_top, top_hat, jnp.asarray(x_sel), jnp.asarray(y_train[sel]),
        s_tops[t]))
    for j, i in enumerate(sel):
      rand = rng.standard_normal(ipert[j].shape)
      for name, u in (("ipert", ipert[j] / np.linalg.norm(ipert[j])),
                      ("random", rand / np.linalg.norm(rand))):
        delta = config.eps * u
        jobs.append((t, int(i), name, float(np.sum(ipert[j] * delta)) / n))
        images.append(x_sel[j] + delta)
  return jobs, (np.stack(images) if images else None)


def _job_mods(problem, unique, pert_rows, pert_psi):
  """`Mods` of every retraining: removals (−1 at φ̃_i, an inactive term),
  then perturbations (−1 at φ̃(x_i), +1 at φ̃(x_i + δ))."""
  phi_aug, y = problem.phi_aug, problem.y
  mods = nt.Mods(jnp.stack([phi_aug[unique]] * 2, 1),
                 jnp.stack([y[unique]] * 2, 1),
                 jnp.tile(jnp.asarray([-1.0, 0.0]), (len(unique), 1)))
  if len(pert_rows):
    pert = nt.Mods(jnp.stack([phi_aug[pert_rows], pert_psi], 1),
                   jnp.stack([y[pert_rows]] * 2, 1),
                   jnp.tile(jnp.asarray([-1.0, 1.0]), (len(pert_rows), 1)))
    mods = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), mods, pert)
  return mods


def _retrain(theta_hat, problem, chol, mods: nt.Mods, config, on_progress):
  """Newton retraining of every modified objective in `mods` (leading axis:
  jobs), warm-started from θ̂, in batches padded to one shape.

  Returns:
    (list of retrained Θ batches, diagnostics).
  """
  num_jobs = mods.coef.shape[0]
  batch = min(config.retrain_batch, num_jobs)
  n = problem.phi_aug.shape[0]
  thetas, norms, steps, cg_iters = [], [], [], []
  _tick(on_progress, "retrain", 0, num_jobs)
  for start in range(0, num_jobs, batch):
    part = jax.tree.map(lambda a: a[start:start + batch], mods)
    size = part.coef.shape[0]
    if size < batch:  # pad with inactive terms: one compiled shape
      part = jax.tree.map(
          lambda a: jnp.concatenate(
              [a, jnp.zeros((batch - size,) + a.shape[1:], a.dtype)]), part)
    wb = nt.woodbury_batch(chol, theta_hat, part, n)
    theta0 = jnp.broadcast_to(theta_hat, (batch,) + theta_hat.shape)
    theta, info = nt.newton(theta0, problem, part, chol, wb,
                            gtol=config.gtol)
    thetas.append(theta[:size])
    norms.append(np.asarray(info.grad_norm[:size]))
    steps.append(len(info.cg_iterations))
    cg_iters.extend(info.cg_iterations)
    _tick(on_progress, "retrain", start + size, num_jobs)
  max_norm = float(np.max(np.concatenate(norms)))
  return thetas, {"jobs": int(num_jobs), "batch": int(batch),
                  "max_grad_norm": max_norm,
                  "max_newton_steps": int(max(steps)),
                  "max_cg_iterations": int(max(cg_iters, default=0)),
                  "converged": max_norm <= config.gtol}


# ---------------------------------------------------------------- the study


def run_study(model, params: Any, model_state: Any, x_train: np.ndarray,
              y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              config: StudyConfig, *,
              on_progress: Optional[Progress] = None) -> dict:
  """Runs the study for θ_top = params["head"] over the model's features.

  θ_top is re-optimised (from the given head) on the regularised objective
  before anything else, so θ̂ satisfies the optimality condition the
  influence formulas assume; the rest of the network stays as given.

  Args:
    model: a `hint_jax.models.Model` (logreg: φ = pixels; convnet: the
      1600 penultimate features).
    params, model_state: trained network parameters and BatchNorm state.
    x_train, y_train: uint8 training images (n, H, W, C) and labels.
    x_test, y_test: uint8 test images and labels.
    config: `StudyConfig`.
    on_progress: optional `(stage, done, total)` callback.

  Returns:
    A JSON-serialisable dict: settings, convergence diagnostics, per test
    point the predicted and actual changes, Pearson and Spearman
    correlations (overall, per test point, per kind) and timings.

  Raises:
    ConfigError: impossible settings.
    NumericalError: the dense Hessian is not positive definite.
  """
  config.validate()
  with jax.enable_x64(True):
    return _run(model, params, model_state, x_train, y_train, x_test, y_test,
                config, on_progress)


def _run(model, params, model_state, x_train, y_train, x_test, y_test,
         config, on_progress):
  timer = _Timer()
  to64 = lambda t: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)
  params, model_state = to64(params), to64(model_state)
  test_rng, removal_rng, direction_rng = (
      np.random.default_rng(s)
      for s in np.random.SeedSequence(config.seed).spawn(3))
  y_train = np.asarray(y_train, np.int32)
  y_test = np.asarray(y_test, np.int32)
  n = len(y_train)

  # Features (float64, inference mode).
  _tick(on_progress, "features", 0, 1)
  features = lambda x: model.features_of_images(
      params, model_state, jnp.asarray(x, jnp.float64) / 255.0,
      config.feature_batch)
  phi, phi_test = features(x_train), features(x_test)
  problem = nt.make_problem(phi, y_train, config.l2)
  dim, k = problem.phi_aug.shape[1], int(params["head"]["bias"].shape[0])
  timer.lap("features")

  theta_hat, chol, training = _fit(problem, nt.from_top(params["head"]),
                                   config, timer, on_progress)
  top_hat = nt.to_top(theta_hat)
  test_loss, test_logits = map(np.asarray, _losses(
      theta_hat, nt.augment(phi_test), jnp.asarray(y_test)))
  test_pred = np.argmax(test_logits, -1)
  training["test_accuracy"] = float(np.mean(test_pred == y_test))
  test_idx = choose_test_points(test_pred == y_test, config.num_test,
                                test_rng)

  _tick(on_progress, "s_test", 0, 1)
  s, s_rel, s_lib_rel, s_diag = _s_test(
      problem, theta_hat, chol, phi_test[test_idx],
      jnp.asarray(y_test[test_idx]), config.l2)
  s_tops = [nt.to_top(s_t) for s_t in s]
  timer.lap("s_test")

  # Predicted LOO changes of every training point; removals; perturbations.
  predicted = [np.asarray(infl.predicted_loo_change(
      infl.top_layer_up_scores(top_hat, phi, problem.y, s_t), n))
               for s_t in s_tops]
  removals = [select_removals(p, config.num_top, config.num_random,
                              removal_rng) for p in predicted]
  unique = np.unique(np.concatenate([np.concatenate(r) for r in removals]))
  pert_jobs, pert_images = _perturbations(
      model, params, model_state, x_train, y_train, removals, s_tops, top_hat,
      config, direction_rng)
  pert_psi = (nt.augment(model.features_of_images(
      params, model_state, jnp.asarray(pert_images), config.feature_batch))
              if pert_jobs else None)
  timer.lap("selection_and_pert_directions")

  # Retraining: one job per removed point (shared by the test points that
  # selected it) and one per perturbation, all warm-started from θ̂.
  mods = _job_mods(problem, unique,
                   np.asarray([i for _, i, _, _ in pert_jobs], np.int64),
                   pert_psi)
  thetas, retraining = _retrain(theta_hat, problem, chol, mods, config,
                                on_progress)
  actual = _actual_changes(thetas, phi_test[test_idx], y_test[test_idx],
                           test_loss[test_idx])
  timer.lap("retrain")

  per_test, loo_pairs, pert_pairs = _per_test_points(
      test_idx, removals, predicted, actual, unique, pert_jobs,
      (y_test, test_pred, test_loss), (s_rel, s_lib_rel))
  timings = dict(timer.seconds, total=sum(timer.seconds.values()))
  return {
      "settings": _settings_record(config, model.name, n, dim, k),
      "training": training,
      "s_test": s_diag,
      "retraining": {**retraining, "loo_jobs": int(len(unique)),
                     "pert_jobs": len(pert_jobs)},
      "test_points": per_test,
      "loo": _pooled(per_test, "loo", loo_pairs, ("top", "random")),
      "pert": _pooled(per_test, "pert", pert_pairs, ("ipert", "random")),
      "timings_seconds": timings,
  }


def _actual_changes(thetas, phi_test, y_test, test_loss):
  """(jobs, num_test): each retrained model's test losses minus θ̂'s."""
  test_aug, test_y = nt.augment(phi_test), jnp.asarray(y_test)
  job_losses = np.concatenate([np.asarray(jax.vmap(
      lambda th: _losses(th, test_aug, test_y)[0])(th)) for th in thetas])
  return job_losses - test_loss[None, :]


def _settings_record(config, model_name, n, dim, k):
  return {**dataclasses.asdict(config), "model": model_name,
          "n_train": n, "feature_dim": dim - 1, "num_classes": k,
          "num_params": dim * k, "l2_bias": True,
          "damping": 0.0, "dtype": "float64",
          "loo_convention": "weight 0, keep 1/n",
          "predicted_loo": "(1/n) <grad_theta l(z_i), s_test>",
          "predicted_pert": "(1/n) <I_pert(z_i), delta>, I_pert = "
                            "-grad_x <grad_theta l(z_i), s_test>"}


def _per_test_points(test_idx, removals, predicted, actual, unique,
                     pert_jobs, test, residuals):
  """Each test point's record (its removals' and perturbations' predicted
  and actual changes, with their summaries), and the pooled
  ``(kind, predicted, actual)`` pairs of both studies. ``actual`` has a
  row per removed point (``unique``) then one per perturbation job."""
  (y_test, test_pred, test_loss), (s_rel, s_lib_rel) = test, residuals
  row = {int(i): j for j, i in enumerate(unique)}
  per_test, loo_pairs, pert_pairs = [], [], []
  for t, ti in enumerate(test_idx):
    top, rand = removals[t]
    idx = np.concatenate([top, rand])
    kinds = ["top"] * len(top) + ["random"] * len(rand)
    pred = predicted[t][idx]
    act = actual[[row[int(i)] for i in idx], t]
    loo_pairs += list(zip(kinds, pred, act))
    mine = [(j, job) for j, job in enumerate(pert_jobs) if job[0] == t]
    p_pred = np.asarray([job[3] for _, job in mine])
    p_act = np.asarray([actual[len(unique) + j, t] for j, _ in mine])
    pert_pairs += [(job[2], a, b)
                   for (_, job), a, b in zip(mine, p_pred, p_act)]
    per_test.append({
        "test_index": int(ti), "label": int(y_test[ti]),
        "predicted_class": int(test_pred[ti]),
        "test_loss": float(test_loss[ti]),
        "s_test_relative_residual": float(s_rel[t]),
        "s_test_relative_residual_library": s_lib_rel[t],
        "loo": {"train_index": idx.tolist(), "kind": kinds,
                "predicted": pred.tolist(), "actual": act.tolist(),
                **summary(pred, act)},
        "pert": {"train_index": [job[1] for _, job in mine],
                 "direction": [job[2] for _, job in mine],
                 "predicted": p_pred.tolist(), "actual": p_act.tolist(),
                 **summary(p_pred, p_act)},
    })
  return per_test, loo_pairs, pert_pairs


def _pooled(per_test, study, pairs, kinds):
  """A study's pairs pooled over test points, per-test correlations and
  the summary by kind."""
  out = summary([p for _, p, _ in pairs], [a for _, _, a in pairs])
  for stat in ("pearson", "spearman"):
    out[f"per_test_{stat}"] = [point[study][stat] for point in per_test]
  out["by_kind"] = {kind: summary([p for k_, p, _ in pairs if k_ == kind],
                                  [a for k_, _, a in pairs if k_ == kind])
                    for kind in kinds}
  return out


def train_body(model, splits, epochs, seed, reporter=None):
  """Trains the whole network with the dataset's preset (``epochs`` if
  given); returns ``(params, model_state, record)``."""
  from hint_jax.train import Trainer, fit  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top
  cfg = preset(splits.name, epochs=epochs, eval_every=0)
  if reporter is not None:
    reporter.note(f"training {model.name} for {cfg.epochs} epochs on "
                  f"{len(splits.x_train)} images ...")
  trainer = Trainer(model, cfg, len(splits.x_train))
  state = trainer.init_state(jax.random.key(seed))
  t0 = time.perf_counter()
  try:
    state, history, _ = fit(trainer, state, splits, on_progress=(
        None if reporter is None else reporter.steps))
  finally:
    if reporter is not None:
      reporter.pause()
  test = trainer.evaluate(state, splits.x_test, splits.y_test)
  record = {"epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "lr": cfg.optim.lr, "seconds": time.perf_counter() - t0,
            "test_accuracy_sgd": test["accuracy"],
            "test_loss_sgd": test["loss"],
            "train_loss_last_epoch": (history[-1]["train_loss"]
                                      if history else None)}
  return state.params, state.model_state, record


def study_job(dataset_name, model_name, out, config: StudyConfig, *,
              data_dir=None, subset=None, epochs=None, quick=False,
              reporter=None, on_progress=None) -> dict:
  """The whole study as a job: loads ``dataset_name`` (``subset`` training
  images), trains the network's body first unless the model is "logreg"
  (θ = all of it), runs `run_study`, and writes ``influence_accuracy.json``,
  ``loo_scatter.png`` and ``pert_scatter.png`` into the folder ``out``.
  Returns the result. ``reporter`` (a `hint_jax.pipeline.Reporter`) hears
  status lines and the body's training; ``on_progress(stage, done,
  total)`` the study's passes."""
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import files  # pylint: disable=g-import-not-at-top
  from hint_jax.studies import report  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  import platform  # pylint: disable=g-import-not-at-top
  note = (lambda _t: None) if reporter is None else reporter.note
  out = files.make_out(files.check_out(out))
  t_start = time.perf_counter()
  config = config.validate()
  dataset = data_lib.load_dataset(dataset_name, data_dir)
  splits = data_lib.split_train_val(dataset, subset=subset)
  note(f"data: {dataset.source}: {len(splits.x_train)} train / "
       f"{len(splits.x_test)} test")
  model = get_model(model_name, splits.num_classes, splits.x_train.shape[1:])
  params, model_state = model.init(jax.random.key(config.seed))
  body = None
  if model_name != "logreg":
    params, model_state, body = train_body(model, splits, epochs,
                                           config.seed, reporter)
    note(f"body trained: SGD test accuracy {body['test_accuracy_sgd']:.4f} "
         f"({body['seconds']:.0f} s)")
  result = run_study(model, params, model_state, splits.x_train,
                     splits.y_train, splits.x_test, splits.y_test, config,
                     on_progress=on_progress)
  result["settings"].update(
      dataset=dataset_name, source=dataset.source, quick=quick,
      subset=subset, split_seed=splits.seed, num_val=len(splits.x_val),
      body_training=body,
      theta=("all parameters" if model_name == "logreg"
             else "theta_top (head), body frozen"))
  result["total_seconds"] = time.perf_counter() - t_start
  result["environment"] = {"backend": jax.default_backend(),
                           "jax_version": jax.__version__,
                           "machine": platform.machine()}
  out = pathlib.Path(out)
  files.write_json_atomic(out / "influence_accuracy.json", result)
  report.scatter(result, "loo", out / "loo_scatter.png")
  report.scatter(result, "pert", out / "pert_scatter.png")
  if not result["retraining"]["converged"]:
    note(f"warning: some retrainings stopped at gradient norm "
         f"{result['retraining']['max_grad_norm']:.2e} > gtol "
         f"{config.gtol:g} (the float64 rounding floor)")
  return result
