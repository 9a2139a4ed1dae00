"""Derivatives of hint_jax.influence against reference maths (float64).

Float64 is enabled per test by an autouse fixture (`jax.enable_x64` context),
so other test files keep JAX's float32 default. Data are made inside the
tests, under the fixture, from fixed keys: every run is identical.
"""

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hint_jax.errors import ConfigError
from hint_jax import influence as infl

N, D_IN, D_HID, K = 20, 4, 6, 3


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def mlp_loss_one(params, x, y):
  """Per-example cross-entropy of a 2-layer tanh MLP (51 parameters)."""
  h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
  logits = h @ params["top"]["kernel"] + params["top"]["bias"]
  return optax.losses.softmax_cross_entropy_with_integer_labels(logits, y)


def make_problem(seed=0):
  """MLP parameters and data, drawn with NumPy (no compilation)."""
  rng = np.random.default_rng(seed)
  normal = lambda *shape: jnp.asarray(rng.standard_normal(shape))
  params = {"hidden": {"kernel": normal(D_IN, D_HID),
                       "bias": 0.3 * normal(D_HID)},
            "top": {"kernel": normal(D_HID, K), "bias": 0.3 * normal(K)}}
  x = normal(N, D_IN)
  y = jnp.asarray(rng.integers(0, K, N))
  return params, x, y


def mean_loss(params, x, y):
  return jnp.mean(jax.vmap(mlp_loss_one, (None, 0, 0))(params, x, y))


# Reference computations are jitted: eager dispatch compiles every primitive
# separately and would dominate the run time.
hessian_of_flat = jax.jit(
    lambda f, unravel, x, y: jax.hessian(lambda g: mean_loss(unravel(g), x, y))(
        f), static_argnums=1)
grad_one = jax.jit(jax.grad(mlp_loss_one))
hvp_jit = jax.jit(infl.hvp, static_argnums=0)


def random_like(tree, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)),
                      tree)


def rel_err(a, b):
  a, b = ravel_pytree(a)[0], ravel_pytree(b)[0]
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_hvp_matches_dense_hessian_full_params():
  params, x, y = make_problem()
  v = random_like(params, 1)
  flat, unravel = ravel_pytree(params)
  h = hessian_of_flat(flat, unravel, x, y)
  expected = unravel(h @ ravel_pytree(v)[0])
  # Both sides are exact up to float64 rounding of O(P) sums (~1e-15).
  assert rel_err(hvp_jit(mean_loss, params, v, x, y), expected) <= 1e-10
  matvec = infl.make_hvp(mean_loss, params, x, y)
  assert rel_err(jax.jit(lambda m, v: m(v))(matvec, v), expected) <= 1e-10


@pytest.mark.parametrize("select", [["top"], lambda path: path[0] == "top"])
def test_hvp_matches_dense_hessian_restricted(select):
  params, x, y = make_problem()
  top, rebuild = infl.restrict(params, select)
  assert set(top) == {"top"}
  loss_top = infl.restrict_loss(mean_loss, rebuild)
  v = random_like(top, 2)
  flat, unravel = ravel_pytree(top)
  h = jax.jit(lambda f, rb: jax.hessian(
      lambda g: mean_loss(rb(unravel(g)), x, y))(f))(flat, rebuild)
  expected = unravel(h @ ravel_pytree(v)[0])
  # Exact up to float64 rounding, as above.
  assert rel_err(hvp_jit(loss_top, top, v, x, y), expected) <= 1e-10
  # The library's dense builder agrees with jax.hessian to rounding.
  dense = jax.jit(infl.dense_hessian)(loss_top, top, x, y)
  np.testing.assert_allclose(dense, h, rtol=0, atol=1e-12)


def test_restrict_rebuild_roundtrip_and_errors():
  params, _, _ = make_problem()
  sub, rebuild = infl.restrict(
      params, lambda path: path == ("hidden", "bias") or path[0] == "top")
  assert set(sub) == {"hidden", "top"} and set(sub["hidden"]) == {"bias"}
  tree_equal = lambda a, b: jax.tree.all(jax.tree.map(jnp.array_equal, a, b))
  assert tree_equal(rebuild(sub), params)
  new = jax.tree.map(jnp.zeros_like, sub)
  rebuilt = rebuild(new)
  assert float(jnp.abs(rebuilt["hidden"]["bias"]).max()) == 0.0
  assert jnp.array_equal(rebuilt["hidden"]["kernel"],
                         params["hidden"]["kernel"])
  # Lists keep None placeholders; a single key name works too.
  sub_list, rebuild_list = infl.restrict([jnp.ones(2), jnp.zeros(3)],
                                         lambda path: path[0] == 1)
  assert sub_list[0] is None and sub_list[1].shape == (3,)
  assert rebuild_list([None, jnp.ones(3)])[1].sum() == 3
  assert set(infl.restrict(params, "hidden")[0]) == {"hidden"}
  with pytest.raises(ConfigError, match="matches no leaf"):
    infl.restrict(params, ["Dense_9"])


def test_per_example_grads_match_loop_and_chunking():
  params, x, y = make_problem()
  loop = [grad_one(params, x[i], y[i]) for i in range(N)]
  expected = jax.tree.map(lambda *g: jnp.stack(g), *loop)
  jitted = jax.jit(infl.per_example_grads, static_argnums=(0, 4))
  for chunk_size in (None, 7):  # 7 does not divide 20: remainder path too.
    # vmap of the same grad: equal to float64 rounding.
    assert rel_err(jitted(mlp_loss_one, params, x, y, chunk_size),
                   expected) <= 1e-12
  # Eager (not jitted) gives the same.
  assert rel_err(infl.per_example_grads(mlp_loss_one, params, x, y),
                 expected) <= 1e-12


def test_grad_dot_forward_mode_matches_explicit_dot():
  params, x, y = make_problem()
  v = random_like(params, 3)
  explicit = jax.jit(lambda p, v: jax.vmap(
      lambda xi, yi: optax.tree.vdot(jax.grad(mlp_loss_one)(p, xi, yi), v))(
          x, y))(params, v)
  jitted = jax.jit(infl.per_example_grad_dot, static_argnums=(0, 5))
  for chunk_size in (None, 6):
    # Forward and reverse mode differ only by float64 rounding.
    np.testing.assert_allclose(
        jitted(mlp_loss_one, params, x, y, v, chunk_size), explicit,
        rtol=1e-11, atol=1e-13)
  # Eager (not jitted) gives the same.
  np.testing.assert_allclose(
      infl.per_example_grad_dot(mlp_loss_one, params, x, y, v), explicit,
      rtol=1e-11, atol=1e-13)


def test_hvp_vmap_over_directions_matches_loop():
  params, x, y = make_problem()
  vs = jax.tree.map(lambda *a: jnp.stack(a),
                    *[random_like(params, s) for s in range(4)])
  batched = jax.jit(jax.vmap(
      lambda v: infl.hvp(mean_loss, params, v, x, y)))(vs)
  for i in range(4):
    v_i = jax.tree.map(lambda a: a[i], vs)
    # Same computation batched or not: float64 rounding only.
    assert rel_err(jax.tree.map(lambda a: a[i], batched),
                   hvp_jit(mean_loss, params, v_i, x, y)) <= 1e-12


def _dot_at(params, v, x_i, y_i):
  return optax.tree.vdot(jax.grad(mlp_loss_one)(params, x_i, y_i), v)


dots = jax.jit(jax.vmap(_dot_at, (None, None, 0, 0)))
mixed_jit = jax.jit(infl.mixed_input_grad, static_argnums=(0, 5))


def test_mixed_input_grad_matches_grad_of_dot_and_finite_differences():
  params, x, y = make_problem()
  v = random_like(params, 4)
  got = mixed_jit(mlp_loss_one, params, x, y, v, None)
  assert got.shape == x.shape
  grad_of_dot = jax.jit(jax.vmap(jax.grad(_dot_at, argnums=2),
                                 (None, None, 0, 0)))(params, v, x, y)
  # Mixed partials commute: both forms agree to float64 rounding.
  np.testing.assert_allclose(got, grad_of_dot, rtol=1e-10, atol=1e-12)
  chunked = mixed_jit(mlp_loss_one, params, x, y, v, 8)
  np.testing.assert_allclose(chunked, got, rtol=1e-12, atol=1e-14)
  eps = 1e-5
  fd = np.zeros(x.shape)
  for j in range(D_IN):
    e = jnp.zeros(D_IN).at[j].set(eps)
    plus, minus = dots(params, v, x + e, y), dots(params, v, x - e, y)
    fd[:, j] = (plus - minus) / (2 * eps)
  # Central differences: truncation O(eps² · f''') ~ 1e-10 plus rounding
  # O(1e-16 / eps) ~ 1e-11, on entries of size O(1).
  np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-8)


def test_mixed_input_grad_restricted_runs_through_whole_network():
  params, x, y = make_problem()
  top, rebuild = infl.restrict(params, ["top"])
  loss_top = infl.restrict_loss(mlp_loss_one, rebuild)
  v_top = random_like(top, 5)
  v_full = {"hidden": jax.tree.map(jnp.zeros_like, params["hidden"]),
            "top": v_top["top"]}
  got = mixed_jit(loss_top, top, x, y, v_top, None)
  expected = mixed_jit(mlp_loss_one, params, x, y, v_full, None)
  # A zero tangent on the body makes the two identical up to rounding.
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
  assert float(jnp.abs(got).max()) > 1e-3  # non-trivial: x reaches the top
  with pytest.raises(ConfigError, match="floating point"):
    infl.mixed_input_grad(loss_top, top, x.astype(jnp.int32), y, v_top)


def test_mean_grad_chunked_matches_grad_of_mean():
  params, x, y = make_problem()
  expected = jax.jit(jax.grad(mean_loss))(params, x, y)
  for chunk_size in (None, 6, 20, 50):
    got = jax.jit(infl.mean_grad, static_argnums=(0, 4))(
        mlp_loss_one, params, x, y, chunk_size)
    # The chunks weight each example 1/n exactly once: rounding only.
    assert rel_err(got, expected) <= 1e-12
