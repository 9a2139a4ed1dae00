"""hint_jax.attribution against dense float64 maths on tiny models.

Every reference is formed independently of the estimator's code path: the
curvature as a dense matrix (jax.hessian, or the Gauss-Newton sum of
per-example Jacobians), the solves with numpy, the per-example gradients
one at a time. In float64 the estimators agree with it to ~1e-10 (CG and
LiSSA to their stopping tolerance), asserted at the tolerances given.
"""

import functools

import chex
import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from hint_jax import attribution
from hint_jax.attribution import functions
from hint_jax.attribution import trak as trak_lib
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import adapt


@pytest.fixture(scope="module", autouse=True)
def x64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


def mlp_apply(p, x):
  return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def _problem(n_train=60, n_test=5, seed=0):
  k = jax.random.split(jax.random.key(seed), 6)
  d, h, c = 6, 4, 3
  params = {"w1": 0.7 * jax.random.normal(k[0], (d, h), jnp.float64),
            "b1": 0.1 * jax.random.normal(k[1], (h,), jnp.float64),
            "w2": 0.7 * jax.random.normal(k[2], (h, c), jnp.float64),
            "b2": 0.1 * jax.random.normal(k[3], (c,), jnp.float64)}
  x = jax.random.normal(k[4], (n_train + n_test, d), jnp.float64)
  y = jax.random.randint(k[5], (n_train + n_test,), 0, c)
  return params, (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


@pytest.fixture(scope="module")
def problem():
  return _problem()


@functools.partial(jax.jit, static_argnums=(0, 4))
def _one_grad(apply, params, xi, yi, function):
  fn = (functions.example_loss if function == "loss"
        else functions.example_margin)
  return ravel_pytree(jax.grad(fn, argnums=1)(apply, params, xi, yi))[0]


def _ref_grads(apply, params, x, y, function="loss"):
  """Per-example gradients one example at a time (no vmap)."""
  return np.stack([np.asarray(_one_grad(apply, params, x[i], y[i], function))
                   for i in range(len(x))])


@functools.partial(jax.jit, static_argnums=(0,))
def _one_jacobian(apply, params, xi):
  jac = jax.jacfwd(lambda p: apply(p, xi[None])[0])(params)
  k = apply(params, xi[None]).shape[1]
  return jnp.concatenate([a.reshape(k, -1) for a in jax.tree.leaves(jac)],
                         axis=1)


def _ref_curvature(apply, params, x, y, curvature):
  """The dense Hessian (jax.hessian of the mean loss) or the Gauss-Newton
  sum over examples of J_iᵀ (diag p_i − p_i p_iᵀ) J_i, in numpy."""
  flat, unravel = ravel_pytree(params)
  if curvature == "hessian":
    return np.asarray(jax.jit(jax.hessian(lambda f: jnp.mean(jax.vmap(
        lambda xi, yi: functions.example_loss(apply, unravel(f), xi, yi))(
            x, y))))(flat))
  total = 0
  probs = np.asarray(jax.nn.softmax(apply(params, x)))
  for i in range(len(x)):
    jac = np.asarray(_one_jacobian(apply, params, x[i]))
    p = probs[i]
    total = total + jac.T @ (np.diag(p) - np.outer(p, p)) @ jac
  return total / len(x)


def _ref_if(problem, curvature, damping):
  params, (xt, yt), (xs, ys) = problem
  c = _ref_curvature(mlp_apply, params, xt, yt, curvature)
  gt = _ref_grads(mlp_apply, params, xt, yt)
  gs = _ref_grads(mlp_apply, params, xs, ys)
  return gs @ np.linalg.solve(c + damping * np.eye(len(c)), gt.T)


def _scores(name, problem, **kw):
  params, train, test = problem
  state = attribution.prepare(name, mlp_apply, params, train,
                              key=jax.random.key(1), **kw)
  return attribution.scores(state, mlp_apply, train, test, train_block=17,
                            test_block=3), state


# ----------------------------------------------------------- curvature
@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_curvature_products_match_dense(problem, curvature):
  params, (x, y), _ = problem
  dense = _ref_curvature(mlp_apply, params, x, y, curvature)
  v = np.random.default_rng(0).normal(size=len(dense))
  mv = functions.curvature_matvec(curvature)
  # float64 autodiff vs dense: agreement to rounding (~1e-15 relative).
  np.testing.assert_allclose(mv(mlp_apply, params, x, y, jnp.asarray(v)),
                             dense @ v, rtol=1e-10, atol=1e-12)
  # Chunked (7 chunks of 8 and one of 4) = one pass.
  np.testing.assert_allclose(functions.chunked_matvec(
      mv, mlp_apply, params, x, y, jnp.asarray(v), 8), dense @ v,
                             rtol=1e-10, atol=1e-12)
  if curvature == "ggn":   # positive semi-definite
    assert np.linalg.eigvalsh(dense).min() > -1e-12


# -------------------------------------------------- influence functions
@pytest.mark.parametrize("curvature,damping", [("ggn", 0.01),
                                                ("hessian", 0.5)])
def test_explicit_and_cg_equal_the_dense_solve(problem, curvature, damping):
  ref = _ref_if(problem, curvature, damping)
  explicit, _ = _scores("explicit", problem, curvature=curvature,
                        damping=damping)
  # Cholesky in float64: rounding only.
  np.testing.assert_allclose(explicit, ref, rtol=1e-8,
                             atol=1e-9 * np.abs(ref).max())
  cg, _ = _scores("cg", problem, curvature=curvature, damping=damping,
                  tol=1e-12, maxiter=500)
  # CG stopped at relative residual 1e-12; the condition number (~1e3)
  # allows ~1e-9 relative error in the solution.
  np.testing.assert_allclose(cg, ref, rtol=0, atol=1e-7 * np.abs(ref).max())


def test_lissa_converges_to_the_same_solve(problem):
  ref = _ref_if(problem, "ggn", 0.1)
  # Full-batch recursion (deterministic): the bias (1 - damp)^depth =
  # (1 - 0.1/2)^600 ~ 4e-14, so LiSSA equals the solve to rounding.
  lissa, _ = _scores("lissa", problem, curvature="ggn", damping=0.1,
                     scale=2.0, depth=600, batch_size=None)
  np.testing.assert_allclose(lissa, ref, rtol=0,
                             atol=1e-9 * np.abs(ref).max())


def test_arnoldi_with_every_eigenvector_equals_the_explicit_solve(problem):
  params, _, _ = problem
  p = ravel_pytree(params)[0].size
  ref = _ref_if(problem, "ggn", 0.05)
  arn, state = _scores("arnoldi", problem, curvature="ggn", damping=0.05,
                       iterations=p, top_k=p)
  # Lanczos with full re-orthogonalisation over all P directions is an
  # eigendecomposition; rounding grows with the condition number.
  np.testing.assert_allclose(arn, ref, rtol=0, atol=1e-8 * np.abs(ref).max())
  # The kept eigenvalues are the curvature's, largest first.
  dense = _ref_curvature(mlp_apply, params, *problem[1], "ggn")
  want = np.sort(np.linalg.eigvalsh(dense))[::-1]
  np.testing.assert_allclose(np.asarray(state.arrays["eigenvalues"]), want,
                             rtol=1e-8, atol=1e-12)
  # Fewer eigenvectors: the projection of the same solve on the top ones.
  few, _ = _scores("arnoldi", problem, curvature="ggn", damping=0.05,
                   iterations=p, top_k=5)
  w, u = np.linalg.eigh(dense)
  top = u[:, np.argsort(-np.abs(w))[:5]]
  lam = np.sort(np.abs(w))[::-1][:5]
  gt = _ref_grads(mlp_apply, params, *problem[1])
  gs = _ref_grads(mlp_apply, params, *problem[2])
  np.testing.assert_allclose(few, (gs @ top / (lam + 0.05)) @ (gt @ top).T,
                             rtol=0, atol=1e-8 * np.abs(few).max())


def test_lanczos_restarts_on_a_degenerate_spectrum():
  # Two eigenvalues with multiplicity: plain Lanczos stops after 2 steps;
  # the restart still recovers all 6 eigenpairs.
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))
  a = q @ np.diag([3.0, 3.0, 3.0, 1.0, 1.0, 1.0]) @ q.T
  vals, vecs = attribution.lanczos(lambda v: jnp.asarray(a) @ v, 6, 6,
                                   jax.random.key(0), jnp.float64)
  np.testing.assert_allclose(np.sort(vals), [1, 1, 1, 3, 3, 3], atol=1e-10)
  np.testing.assert_allclose(vecs @ a @ vecs.T, np.diag(vals), atol=1e-10)


# ------------------------------------------------------- gradient family
def test_grad_dot_cos_and_tracin(problem):
  params, train, test = problem
  gt = _ref_grads(mlp_apply, params, *train)
  gs = _ref_grads(mlp_apply, params, *test)
  dot, _ = _scores("grad_dot", problem)
  np.testing.assert_allclose(dot, gs @ gt.T, rtol=1e-12, atol=1e-14)
  cos, _ = _scores("grad_cos", problem)
  np.testing.assert_allclose(cos, (gs @ gt.T) / np.outer(
      np.linalg.norm(gs, axis=1), np.linalg.norm(gt, axis=1)), rtol=1e-12)
  # TracIn with one checkpoint is eta x Grad-Dot.
  one = attribution.prepare("tracin", mlp_apply, params, train,
                            members=[params], learning_rates=[0.3])
  np.testing.assert_allclose(attribution.scores(one, mlp_apply, train, test),
                             0.3 * gs @ gt.T, rtol=1e-12, atol=1e-14)
  # Two checkpoints: the eta-weighted sum of each one's Grad-Dot.
  other = jax.tree.map(lambda a: 0.5 * a, params)
  two = attribution.prepare("tracin", mlp_apply, params, train,
                            members=[params, other],
                            learning_rates=[0.3, 0.1])
  go = (_ref_grads(mlp_apply, other, *test)
        @ _ref_grads(mlp_apply, other, *train).T)
  np.testing.assert_allclose(attribution.scores(two, mlp_apply, train, test),
                             0.3 * gs @ gt.T + 0.1 * go, rtol=1e-12,
                             atol=1e-14)
  # One number is the rate of every checkpoint (the command line's --set).
  same = attribution.prepare("tracin", mlp_apply, params, train,
                             members=[params, other], learning_rates=0.2)
  np.testing.assert_allclose(attribution.scores(same, mlp_apply, train,
                                                test),
                             0.2 * (gs @ gt.T + go), rtol=1e-12, atol=1e-14)
  with pytest.raises(ConfigError, match="learning rates"):
    attribution.prepare("tracin", mlp_apply, params, train,
                        members=[params], learning_rates=[0.1, 0.2])


# ------------------------------------------------------------------ TRAK
def _ref_trak(members, train, test, projections=None, ridge=0.0):
  x, y = train
  total, q = 0, 0
  for m, p in enumerate(members):
    phi = _ref_grads(mlp_apply, p, x, y, "margin")
    phi_test = _ref_grads(mlp_apply, p, *test, "margin")
    if projections is not None:
      phi, phi_test = phi @ projections[m], phi_test @ projections[m]
    gram = phi.T @ phi + ridge * np.eye(phi.shape[1])
    total = total + phi_test @ np.linalg.inv(gram) @ phi.T
    q = q + 1 - np.asarray(functions.probabilities(mlp_apply, p, x, y))
  return (total / len(members)) * (q / len(members))[None]


def test_trak_equals_the_kernel_formula(problem, monkeypatch):
  params, train, test = problem
  # Unprojected margin gradients have flat directions (a shift of every
  # logit leaves each margin unchanged), so the full kernel needs a ridge.
  exact, _ = _scores("trak", problem, proj_dim=None, ridge=1e-3)
  np.testing.assert_allclose(exact, _ref_trak([params], train, test,
                                              ridge=1e-3),
                             rtol=1e-7, atol=1e-9)
  # Projected, an ensemble of two: the same formula on the projected
  # gradients, the projections rebuilt from the state's key.
  other = jax.tree.map(lambda a: 0.8 * a, params)
  state = attribution.prepare("trak", mlp_apply, params, train,
                              members=[params, other], proj_dim=20,
                              key=jax.random.key(5))
  proj = np.asarray(trak_lib._projections(state)["projections"])  # pylint: disable=protected-access
  assert proj.shape == (2, 43, 20)
  got = attribution.scores(state, mlp_apply, train, test)
  np.testing.assert_allclose(got, _ref_trak([params, other], train, test,
                                            proj), rtol=1e-8, atol=1e-10)
  # Over the memory limit the projections are rebuilt one member at a
  # time from the same keys: the same scores (float64: the same matrix
  # products in another grouping, rounding only).
  monkeypatch.setattr(trak_lib, "STORED_PROJECTION_BYTES", 0)
  jax.clear_caches()     # the limit is read when a function is traced
  assert set(trak_lib._projections(state)) == {"keys", "shape"}  # pylint: disable=protected-access
  rebuilt = attribution.prepare("trak", mlp_apply, params, train,
                                members=[params, other], proj_dim=20,
                                key=jax.random.key(5))
  np.testing.assert_allclose(attribution.scores(rebuilt, mlp_apply, train,
                                                test), got, rtol=1e-10,
                             atol=1e-12)
  # Those flat directions without a ridge: singular, said in one line.
  with pytest.raises(ConfigError, match="singular"):
    attribution.prepare("trak", mlp_apply, params, train, proj_dim=None)


# ------------------------------------------ the sign against retraining
def test_influence_predicts_leave_one_out_with_the_stated_sign():
  # Multinomial logistic regression with L2 = damping / 2 |theta|^2, fit to
  # the optimum: the explicit Hessian score / n is the first-order change
  # of the test loss when one training example is left out.
  k = jax.random.split(jax.random.key(3), 3)
  n, d, c, lam = 120, 4, 3, 0.2
  x = jax.random.normal(k[0], (n + 3, d), jnp.float64)
  y = jax.random.randint(k[1], (n + 3,), 0, c)
  apply = lambda p, xb: xb @ p["w"] + p["b"]
  init = {"w": jnp.zeros((d, c)), "b": jnp.zeros((c,))}
  flat0, unravel = ravel_pytree(init)

  @jax.jit
  def fit(mask):
    def obj(f):
      losses = jax.vmap(lambda xi, yi: functions.example_loss(
          apply, unravel(f), xi, yi))(x[:n], y[:n])
      return jnp.sum(mask * losses) / n + 0.5 * lam * f @ f

    def newton(f, _):   # 25 steps: converged to machine precision
      return f - jnp.linalg.solve(jax.hessian(obj)(f), jax.grad(obj)(f)), None
    return unravel(jax.lax.scan(newton, flat0, None, length=25)[0])

  params = fit(jnp.ones(n))
  test = (x[n:], y[n:])
  state = attribution.prepare("explicit", apply, params, (x[:n], y[:n]),
                              curvature="hessian", damping=lam)
  s = attribution.scores(state, apply, (x[:n], y[:n]), test)
  test_loss = lambda p: np.asarray(jax.vmap(
      lambda xi, yi: functions.example_loss(apply, p, xi, yi))(*test))
  base = test_loss(params)
  left_out = np.arange(0, n, 4)
  actual = np.stack([test_loss(fit(jnp.ones(n).at[i].set(0.0))) - base
                     for i in left_out], axis=1)
  # Positive score = the example helps = leaving it out raises the loss.
  # First order in 1/n: with n = 120 the retrained changes are ~3-4%
  # larger than predicted (measured slopes 1.028-1.039, Pearson 0.9998;
  # slope 1.16 at n = 30).
  for t in range(3):
    pred = s[t, left_out] / n
    r = np.corrcoef(actual[t], pred)[0, 1]
    slope = np.polyfit(pred, actual[t], 1)[0]
    assert r > 0.995, r
    assert abs(slope - 1) < 0.1, slope


# ------------------------------------- streaming, jit, vmap, save/load
# Every estimator with settings small enough for the 43-parameter MLP, and
# how closely two evaluations of the same maths agree: exact maths to
# rounding whatever the batch shapes; CG and LiSSA stop on rounding-
# dependent iterates (CG at a relative residual of 1e-10, cond ~1e3).
EVERY_ESTIMATOR = (("grad_dot", {}, 1e-9), ("grad_cos", {}, 1e-9),
                   ("tracin", {"learning_rates": [0.5]}, 1e-9),
                   ("explicit", {}, 1e-9),
                   ("cg", {"tol": 1e-10, "maxiter": 200}, 1e-6),
                   ("lissa", {"depth": 30, "batch_size": 8}, 1e-6),
                   ("arnoldi", {"iterations": 20, "top_k": 8}, 1e-9),
                   ("trak", {"proj_dim": 16}, 1e-9))


@pytest.mark.slow
class ScoreBlockVariants(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_score_block_equals_streaming_for_every_estimator(self):
    params, train, test = _problem(n_train=24, n_test=3)
    for name, kw, tol in EVERY_ESTIMATOR:
      state = attribution.prepare(name, mlp_apply, params, train, **kw)
      block = self.variant(functools.partial(attribution.score_block,
                                             apply=mlp_apply))
      whole = block(state, x_test=test[0], y_test=test[1],
                    x_train=train[0], y_train=train[1])
      streamed = attribution.scores(state, mlp_apply, train, test,
                                    train_block=7, test_block=2)
      chex.assert_trees_all_close(
          np.asarray(whole), streamed, rtol=0,
          atol=tol * float(np.abs(streamed).max()), custom_message=name)


@pytest.mark.slow
def test_score_block_vmaps_over_test_points():
  params, train, test = _problem(n_train=24, n_test=3)
  for name, kw, tol in EVERY_ESTIMATOR:
    state = attribution.prepare(name, mlp_apply, params, train, **kw)
    whole = attribution.score_block(state, mlp_apply, *test, *train)
    rows = jax.jit(jax.vmap(lambda xt, yt, st=state: attribution.score_block(
        st, mlp_apply, xt[None], yt[None], *train)[0]))(*test)
    chex.assert_trees_all_close(rows, whole, rtol=0,
                                atol=tol * float(np.abs(whole).max()),
                                custom_message=name)


def test_state_saves_and_loads_as_one_file(problem, tmp_path):
  params, train, test = problem
  for name, kw in (("explicit", {}), ("trak", {"proj_dim": 8}),
                   ("arnoldi", {"iterations": 10, "top_k": 4}),
                   ("lissa", {"depth": 20})):
    state = attribution.prepare(name, mlp_apply, params, train,
                                key=jax.random.key(2), **kw)
    path = tmp_path / f"{name}.npz"
    attribution.save_state(path, state)
    back = attribution.load_state(path)
    assert back.estimator == name and back.settings == state.settings
    np.testing.assert_array_equal(
        attribution.scores(back, mlp_apply, train, test),
        attribution.scores(state, mlp_apply, train, test))
  (tmp_path / "bad.npz").write_bytes(b"not a file")
  with pytest.raises(DataError, match="cannot read"):
    attribution.load_state(tmp_path / "bad.npz")


def test_bad_input_is_one_clear_error(problem):
  params, train, _ = problem
  with pytest.raises(ConfigError, match="unknown estimator"):
    attribution.prepare("influence", mlp_apply, params, train)
  with pytest.raises(ConfigError, match="has no setting"):
    attribution.prepare("cg", mlp_apply, params, train, proj_dim=3)
  with pytest.raises(ConfigError, match="takes one model"):
    attribution.prepare("cg", mlp_apply, params, train,
                        members=[params, params])
  with pytest.raises(ConfigError, match="curvature"):
    attribution.prepare("cg", mlp_apply, params, train, curvature="fisher")
  with pytest.raises(ConfigError, match="damping must be a number"):
    attribution.prepare("cg", mlp_apply, params, train, damping="high")
  with pytest.raises(ConfigError, match="curvature_examples"):
    attribution.prepare("cg", mlp_apply, params, train,
                        curvature_examples="half")
  with pytest.raises(ConfigError, match="curvature must be a word"):
    attribution.prepare("cg", mlp_apply, params, train, curvature=3)
  with pytest.raises(ConfigError, match="max_parameters"):
    attribution.prepare("explicit", mlp_apply, params, train,
                        max_parameters=10)
  with pytest.raises(DataError):
    attribution.prepare("grad_dot", mlp_apply, params, (train[0], train[1][:3]))


# --------------------------------------------------- linen and nnx models
class _LinenNet(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(3, (2, 2))(x).reshape(len(x), -1)
    x = nn.BatchNorm(use_running_average=not train)(jnp.tanh(x))
    return nn.Dense(3, name="out")(x)


class _NnxNet(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(12, 5, rngs=rngs)
    self.classifier = nnx.Linear(5, 3, rngs=rngs)

  def __call__(self, x):
    return self.classifier(jnp.tanh(self.hidden(x.reshape(len(x), -1))))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_every_estimator_on_linen_and_nnx_models(kind):
  shape = (2, 2, 3)
  if kind == "linen":
    model = adapt.from_linen(_LinenNet(), shape)
  else:
    model = adapt.from_nnx(_NnxNet(nnx.Rngs(0)), shape)
  params, model_state = model.init(jax.random.key(0))
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  model_state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                             model_state)
  apply = lambda p, x: model.apply_eval(p, model_state, x)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(40,) + shape))
  y = jnp.asarray(rng.integers(0, 3, 40))
  train, test = (x[:36], y[:36]), (x[:4], y[:4])   # tests = 4 train points
  p = ravel_pytree(params)[0].size
  for name, kw, _ in EVERY_ESTIMATOR:
    kw = dict(kw)
    if name == "arnoldi":
      kw.update(iterations=p, top_k=min(p, 30))
    if name == "trak":
      kw.update(proj_dim=min(16, p))
    state = attribution.prepare(name, apply, params, train, **kw)
    s = attribution.scores(state, apply, train, test, train_block=10)
    assert s.shape == (4, 36) and np.all(np.isfinite(s)), name
    # Each test point is training point t: with positive semi-definite
    # curvature (the GGN) every estimator scores it as helping itself.
    assert np.all(np.diag(s[:, :4]) > 0), (name, np.diag(s[:, :4]))


# ----------------------------------------------------- the command line
def test_attribute_command_writes_scores_and_its_record(tmp_path, capsys):
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_enable_x64", False)   # as a user runs it
  try:
    out = tmp_path / "a"
    assert main(["attribute", "--dataset", "digits", "--estimator",
                 "grad_dot", "--epochs", "1", "--num-train", "100",
                 "--num-test", "7", "--train-block", "32", "--out", str(out),
                 "--no-progress"]) == 0
    s = np.load(out / "scores.npy")
    assert s.shape == (7, 100) and s.dtype == np.float32
    rec = json.loads((out / "attribution.json").read_text())
    assert rec["estimator"] == "grad_dot" and rec["scores"]["shape"] == [7,
                                                                        100]
    assert "helps" in rec["scores"]["sign"] and rec["peak_memory_mb"] > 0
    assert not list(out.glob("*.partial"))
    # The same model again from its folder, another estimator: a run folder
    # is any folder with a final checkpoint.
    again = tmp_path / "b"
    assert main(["attribute", "--dataset", "digits", "--estimator", "trak",
                 "--run", str(out / "model"), "--num-train", "100",
                 "--num-test", "7", "--set", "proj_dim=32", "--out",
                 str(again), "--no-progress"]) == 0
    state = attribution.load_state(again / "state.npz")
    assert state.estimator == "trak" and state.options["proj_dim"] == 32
    capsys.readouterr()
    assert main(["attribute", "--dataset", "digits", "--estimator", "cg",
                 "--set", "proj_dim=3", "--out", str(tmp_path / "c")]) == 2
    assert "cg has no setting proj_dim" in capsys.readouterr().err
    assert main(["attribute", "--dataset", "digits", "--estimator", "cg",
                 "--set", "damping", "--out", str(tmp_path / "c")]) == 2
    assert main(["attribute", "--dataset", "digits", "--estimator", "cg",
                 "--run", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "c")]) == 2
  finally:
    jax.config.update("jax_enable_x64", True)
