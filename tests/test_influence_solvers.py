"""Inverse-HVP solvers (CG, direct, LiSSA) and power iteration.

Float64 (via `jax.enable_x64`, autouse fixture) unless a test says float32.
Problems are tiny closed-form top layers over random features, whose Hessian
is available densely; all keys are fixed, so runs are deterministic.
"""

import importlib

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import pytest

from hint_jax.errors import ConfigError, NumericalError
from hint_jax import influence as infl

# Submodules whose names the package re-uses for functions.
lissa_module = importlib.import_module("hint_jax.influence.lissa")

N, D, K = 60, 4, 3  # P = (D + 1) K = 15 parameters


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def make_top(seed=0, dtype=np.float64, n=N, feature_scale=1.0):
  """Top-layer parameters, features (n, D) and a right-hand side.

  Drawn with NumPy: no compilation, and identical on every platform.
  """
  rng = np.random.default_rng(seed)
  normal = lambda *shape: jnp.asarray(rng.standard_normal(shape), dtype)
  top = {"kernel": 0.5 * normal(D, K), "bias": 0.1 * normal(K)}
  phi = feature_scale * normal(n, D)
  v = {"kernel": normal(D, K), "bias": normal(K)}
  return top, phi, v


# Helpers are jitted: eager dispatch compiles every primitive separately,
# which would dominate the run time of these tiny problems.
make_op = jax.jit(infl.top_layer_hessian,
                  static_argnames=("l2_bias", "chunk_size"))
dense_of = jax.jit(lambda op: op.dense())


def flat(tree):
  return np.asarray(ravel_pytree(tree)[0], np.float64)


def reference(op, v, damping):
  h = np.asarray(dense_of(op), np.float64)
  return np.linalg.solve(h + damping * np.eye(h.shape[0]), flat(v))


def rel(a, b):
  return np.linalg.norm(a - b) / np.linalg.norm(b)


cg_jit = jax.jit(infl.cg_solve, static_argnames=("maxiter",))


def test_cg_and_direct_match_numpy_solve():
  top, phi, v = make_top()
  op = make_op(top, phi, l2=1e-3)
  damping = 0.05
  expected = reference(op, v, damping)
  x, info = cg_jit(op.matvec, v, damping, tol=1e-12)
  # CG to a 1e-12 residual on a system with condition number < 1e3.
  assert rel(flat(x), expected) <= 1e-8
  assert bool(info.converged) and not bool(info.diverged)
  assert 0 < int(info.iterations) <= 10 * 15
  assert float(info.residual) <= 1e-11  # true residual, near the 1e-12 target
  x_d, info_d = jax.jit(infl.direct_solve_dense)(dense_of(op), v, damping)
  # Cholesky in float64: rounding only.
  assert rel(flat(x_d), expected) <= 1e-8 and float(info_d.residual) < 1e-12
  x_m, _ = jax.jit(infl.direct_solve)(op.matvec, v, damping)
  assert rel(flat(x_m), expected) <= 1e-8  # dense built from matvecs
  # (`solve` with method="cg"/"direct" is checked in test_influence_scores.)


def test_cg_matches_jax_scipy_cg():
  top, phi, v = make_top(1)
  op = make_op(top, phi)
  damped = lambda p: jax.tree.map(lambda a, b: a + 0.1 * b, op.matvec(p), p)
  x_ref, _ = jax.jit(lambda v: jax.scipy.sparse.linalg.cg(damped, v,
                                                          tol=1e-12))(v)
  x, info = cg_jit(op.matvec, v, 0.1, tol=1e-12)
  # Same algorithm and tolerance; both within ~1e-10 of the exact solution.
  assert rel(flat(x), flat(x_ref)) <= 1e-8
  assert int(info.iterations) <= 15 + 5  # ≤ P steps in exact arithmetic


def test_cg_flags_indefinite_operator_and_never_returns_nan():
  v = {"a": jnp.ones(3)}
  # Plain functions cross jit as leafless `Partial`s (static by identity).
  indefinite = jax.tree_util.Partial(
      lambda p: {"a": jnp.array([1.0, -2.0, 3.0]) * p["a"]})
  x, info = cg_jit(indefinite, v, 0.0)
  assert bool(info.diverged) and not bool(info.converged)
  assert bool(jnp.all(jnp.isfinite(x["a"])))
  nan_op = jax.tree_util.Partial(lambda p: {"a": p["a"] * jnp.nan})
  x, info = cg_jit(nan_op, v, 0.0)
  assert bool(info.diverged) and bool(jnp.all(jnp.isfinite(x["a"])))


def test_solve_raises_and_validates():
  top, phi, v = make_top()
  op = make_op(top, phi)
  with pytest.raises(NumericalError, match="did not reach"):
    infl.solve(op, v, method="cg", damping=1e-3, tol=1e-14, maxiter=2)
  with pytest.raises(ConfigError, match="unknown solver"):
    infl.solve(op, v, method="arnoldi")
  with pytest.raises(ConfigError, match="PRNG key"):
    infl.solve(op, v, method="lissa")


def test_loss_hessian_dense_and_matvec_match_closed_form():
  top, phi, v = make_top(2)
  y = jnp.zeros(N, jnp.int32)  # the CE Hessian does not depend on labels
  op_auto = infl.loss_hessian(infl.top_loss_one, top, phi, y, l2=0.01,
                              chunk_size=25)
  op_closed = make_op(top, phi, l2=0.01, l2_bias=True)
  # Same matrix by autodiff (chunked, 25 ∤ 60) and closed form: rounding.
  np.testing.assert_allclose(dense_of(op_auto),
                             dense_of(op_closed), rtol=0, atol=1e-13)
  mv = jax.jit(lambda o, v: o.matvec(v))
  assert rel(flat(mv(op_auto, v)), flat(op_closed.matvec(v))) <= 1e-12
  batch = jax.tree.map(lambda a: a[:7], op_auto.data)
  batch_closed = jax.tree.map(lambda a: a[:7], op_closed.data)
  assert rel(flat(jax.jit(op_auto.batch_hvp)(batch, v)),
             flat(op_closed.batch_hvp(batch_closed, v))) <= 1e-12


def test_power_iteration_finds_lambda_max():
  top, phi, v = make_top(3)
  op = make_op(top, phi)
  lam_true = np.linalg.eigvalsh(np.asarray(dense_of(op)))[-1]
  lam = jax.jit(infl.power_iteration, static_argnames="num_iters")(
      op.matvec, v, jax.random.key(0), num_iters=200)
  # 200 steps with an eigen-gap ratio well below 0.9: converged to ~1e-9;
  # the Rayleigh quotient's error is squared.
  assert abs(float(lam) - lam_true) <= 1e-6 * lam_true


def test_lissa_full_batch_float32_converges_to_fixed_point():
  with jax.enable_x64(False):
    top, phi, v = make_top(4, np.float32)
    op = make_op(top, phi, l2=1e-2)
    lam_max = np.linalg.eigvalsh(np.asarray(dense_of(op), np.float64))[-1]
    damping, scale = 0.05, 1.5 * float(lam_max)
    x, info = infl.lissa(op.batch_hvp, v, op.data, jax.random.key(0),
                         batch_size=None, depth=500, damping=damping,
                         scale=scale)
    assert x["kernel"].dtype == jnp.float32
  expected = reference(op, v, scale * damping)
  # Full batch: deterministic Richardson iteration contracting by at least
  # 1 - damp = 0.95 per step, so 500 steps leave ~1e-11 of the error;
  # what remains is float32 rounding accumulated over the steps (~1e-6).
  assert rel(flat(x), expected) <= 1e-3
  assert int(info.iterations) == 500 and bool(info.converged)
  assert float(info.damping) == pytest.approx(scale * damping, rel=1e-6)


def test_lissa_sampled_batches_unbiased_with_repeats():
  top, phi, v = make_top(5, n=40)
  op = make_op(top, phi, l2=1e-2)
  lam_max = np.linalg.eigvalsh(np.asarray(dense_of(op)))[-1]
  damping, scale = 0.1, 2.0 * float(lam_max)
  x, info = infl.lissa(op.batch_hvp, v, op.data, jax.random.key(1),
                       batch_size=10, depth=120, damping=damping, scale=scale,
                       repeats=200)
  assert bool(info.converged)
  expected = reference(op, v, scale * damping)
  # Batches of 10 of 40 with replacement: each run is an unbiased but noisy
  # estimate of the fixed point (measured RMS relative error 0.093 per run
  # over 20 seeds); the mean of 200 independent runs has ~0.093/√200 ≈ 7e-3,
  # and the bias after 120 steps is (1 - 0.1)^120 ~ 3e-6. 3e-2 is > 4 sigma.
  assert rel(flat(x), expected) <= 3e-2


def test_lissa_small_scale_raises_with_lambda_max_and_safe_scale():
  top, phi, v = make_top(6, feature_scale=3.0)
  op = make_op(top, phi)
  lam_max = float(np.linalg.eigvalsh(np.asarray(dense_of(op)))[-1])
  small = lam_max / 4  # λ_max > (2 - damp)·scale: the recursion diverges
  # The compiled core that `lissa` runs returns, flagged, with zeros.
  x, info = lissa_module._lissa_jit(
      op.batch_hvp, v, op.data, jax.random.key(0), batch_size=None,
      depth=500, damping=0.01, scale=small, repeats=1)
  assert bool(info.diverged) and not bool(info.converged)
  assert int(info.iterations) < 500  # stopped at the blow-up
  assert all(bool(jnp.all(a == 0)) for a in jax.tree.leaves(x))  # no NaN/inf
  with pytest.raises(NumericalError, match=r"λ_max ≈ .*safe scale ≥") as err:
    infl.lissa(op.batch_hvp, v, op.data, jax.random.key(0), batch_size=None,
               depth=500, damping=0.01, scale=small)
  safe = float(str(err.value).split("safe scale ≥ ")[1].split(" ")[0])
  # Full-batch power iteration: the reported λ_max is within 5 % of the true
  # one, and the suggested scale (1.1 λ̂_max) makes the recursion converge.
  assert safe == pytest.approx(1.1 * lam_max, rel=5e-2)
  x, info = infl.lissa(op.batch_hvp, v, op.data, jax.random.key(0),
                       batch_size=None, depth=500, damping=0.01, scale=safe)
  assert bool(info.converged)


def test_lissa_auto_scale():
  top, phi, v = make_top(7, feature_scale=3.0)
  op = make_op(top, phi)
  lam_max = float(np.linalg.eigvalsh(np.asarray(dense_of(op)))[-1])
  x, info = infl.lissa(op.batch_hvp, v, op.data, jax.random.key(2),
                       batch_size=None, depth=500, damping=0.05,
                       scale="auto")
  # Full batch: λ̂_max from 30 power iterations is within 5 % of λ_max.
  assert float(info.lambda_max) == pytest.approx(lam_max, rel=5e-2)
  assert float(info.scale) == pytest.approx(1.1 * float(info.lambda_max))
  expected = reference(op, v, float(info.damping))
  # Converged Richardson iteration ((1 - 0.05)^500 ~ 7e-12) in float64.
  assert rel(flat(x), expected) <= 1e-8
  # Through `solve`, the damping λ is kept and only the method changes.
  damping = 0.2 * lam_max
  x_s, info_s = infl.solve(op, v, method="lissa", damping=damping,
                           key=jax.random.key(3), batch_size=None,
                           depth=500, scale="auto")
  assert float(info_s.damping) == pytest.approx(damping)
  # Per-step damp = λ/scale ≈ 0.2/1.1 here: (1 - 0.18)^500 ~ 1e-43.
  assert rel(flat(x_s), reference(op, v, damping)) <= 1e-8


def test_lissa_and_cg_do_not_recompile(backend_compiles):
  traces = []

  def counting_batch_hvp(op, batch, w):
    traces.append(1)  # runs only while tracing
    return op.batch_hvp(batch, w)

  for seed in (8, 9):  # new parameters, features and right-hand side
    top, phi, v = make_top(seed)
    op = make_op(top, phi)
    infl.lissa(jax.tree_util.Partial(counting_batch_hvp, op), v, op.data,
               jax.random.key(seed), depth=50, damping=0.01, scale=10.0)
    assert len(traces) == 1, "second LiSSA call retraced"
  # The library's own compiled solvers: nothing is compiled on the second
  # call with new parameters, damping and scale.
  counts = []
  for seed in (10, 11):
    counts.append(backend_compiles())
    top, phi, v = make_top(seed)
    op = make_op(top, phi)
    infl.solve(op, v, method="cg", damping=0.1 * seed)
    infl.lissa(op.batch_hvp, v, op.data, jax.random.key(0), depth=50,
               scale=float(seed))
  assert backend_compiles() == counts[1]
  # A user-jitted CG step with a closure built inside the trace.
  cg_traces = []

  @jax.jit
  def user_step(top, phi, v):
    cg_traces.append(1)
    return infl.cg_solve(infl.top_layer_hessian(top, phi).matvec, v, 0.1)

  for seed in (12, 13):
    user_step(*make_top(seed))
  assert len(cg_traces) == 1
