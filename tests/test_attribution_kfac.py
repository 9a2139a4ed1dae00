"""K-FAC and EK-FAC (`hint_jax.attribution.kfac`) and the layer taps they
stand on (`hint_jax.models.capture`), in float64 against dense maths
computed on its own path: each layer's Gauss-Newton block from the
Jacobian of the logits with respect to that layer's own parameters."""

import chex
import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hint_jax import attribution
from hint_jax.errors import ConfigError
from hint_jax.models import adapt, capture, get_model


@pytest.fixture(scope="module", autouse=True)
def x64():
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", False)


class _Mlp(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    x = jnp.tanh(nn.Dense(5, name="hidden")(x.reshape(len(x), -1)))
    return nn.Dense(3, name="out")(x)


class _Conv(nn.Module):
  """A strided SAME convolution, a VALID one without bias, then Dense."""

  @nn.compact
  def __call__(self, x, train=False):
    x = jnp.tanh(nn.Conv(3, (3, 3), strides=(2, 2), padding="SAME",
                         name="c1")(x))
    x = jnp.tanh(nn.Conv(2, (2, 2), padding="VALID", use_bias=False,
                         name="c2")(x))
    return nn.Dense(3, name="out")(x.reshape(len(x), -1))


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _setup(module, shape, n=12, seed=0):
  model = adapt.from_linen(module, shape)
  params, state = model.init(jax.random.key(seed))
  params, state = _f64(params), _f64(state)
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n,) + shape))
  y = jnp.asarray(rng.integers(0, 3, n))
  return model, params, state, x, y


def _layer_params(params, name):
  """Where an adapted linen model keeps the layer ``name``'s parameters."""
  return params["head"] if name == "out" else params["body"][name]


def _with_layer(params, name, layer):
  if name == "out":
    return {**params, "head": layer}
  return {**params, "body": {**params["body"], name: layer}}


def _layout(tree):
  """A layer's parameters (or a leading-axis batch of them) as the
  (d_in [+ 1 bias row], d_out) matrix K-FAC works on, flattened."""
  k = tree["kernel"]
  k = k.reshape(k.shape[:-4] + (-1, k.shape[-1])) if k.ndim >= 4 else k
  if "bias" in tree:
    k = jnp.concatenate([k, tree["bias"][..., None, :]], axis=-2)
  return k.reshape(k.shape[:-2] + (-1,))


def _ggn_block(model, state, params, name, x):
  """(1/n) Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i over the layer's own
  parameters, J_i the Jacobian of example i's logits, in _layout order."""
  total = 0
  for i in range(len(x)):
    fn = lambda layer, i=i: model.apply_eval(_with_layer(params, name, layer),
                                             state, x[i:i + 1])[0]
    jac = _layout(jax.jacfwd(fn)(_layer_params(params, name)))
    jac = np.asarray(jac)                                  # (K, D)
    p = np.asarray(jax.nn.softmax(fn(_layer_params(params, name))))
    total = total + jac.T @ (np.diag(p) - np.outer(p, p)) @ jac
  return total / len(x)


def _dense_factor(state_arrays, j):
  """A ⊗ S (kfac) or the EK-FAC matrix, rebuilt from the stored basis and
  eigenvalues in _layout order."""
  f = state_arrays[f"l{j}"]
  q = np.kron(np.asarray(f["qa"]), np.asarray(f["qs"]))
  return q @ np.diag(np.asarray(f["eig"]).ravel()) @ q.T


def test_taps_give_every_layers_own_gradient():
  # Σ_locations ā δᵀ from the taps (patches of a strided SAME convolution,
  # a bias-free one, a Dense) equals autodiff's gradient of each layer.
  model, params, state, x, y = _setup(_Conv(), (5, 5, 2))
  apply = capture.tapped_apply(model, state)
  layers = apply.layers(params, x[:1])
  assert [(l.name, l.kind, l.d_in, l.bias, l.locations) for l in layers] == [
      ("c1", "conv", 18, True, 9), ("c2", "conv", 12, False, 4),
      ("out", "dense", 8, True, 1)]
  from hint_jax.attribution import kfac  # pylint: disable=g-import-not-at-top
  _, grads = kfac._layer_grads(apply, params, x, y)  # pylint: disable=protected-access
  for l in layers:
    def loss(layer, i, name=l.name):
      logits = model.apply_eval(_with_layer(params, name, layer), state,
                                x[i:i + 1])[0]
      return jax.nn.logsumexp(logits) - logits[y[i]]
    want = np.stack([np.asarray(_layout(jax.grad(loss)(
        _layer_params(params, l.name), i))) for i in range(len(x))])
    np.testing.assert_allclose(np.asarray(grads[l.name]).reshape(len(x), -1),
                               want, rtol=1e-10, atol=1e-13)


def test_kfac_of_one_example_is_its_exact_gauss_newton_block():
  model, params, state, x, y = _setup(_Mlp(), (2, 3))
  apply = capture.tapped_apply(model, state)
  one = (x[:1], y[:1])
  st = attribution.prepare("kfac", apply, params, one, fisher="exact")
  for j, name in enumerate(("hidden", "out")):
    want = _ggn_block(model, state, params, name, x[:1])
    # (a aᵀ) ⊗ E_ŷ[δ δᵀ] = (a ⊗ δ)(a ⊗ δ)ᵀ in expectation: exact, to
    # float64 rounding.
    np.testing.assert_allclose(_dense_factor(st.arrays, j), want,
                               rtol=1e-9, atol=1e-12)


def test_ekfac_eigenvalues_are_the_ggn_diagonal_in_the_kronecker_basis():
  model, params, state, x, y = _setup(_Conv(), (5, 5, 2), n=10)
  apply = capture.tapped_apply(model, state)
  st = attribution.prepare("ekfac", apply, params, (x, y), fisher="exact",
                           chunk_size=4)
  for j, name in enumerate(("c1", "c2", "out")):
    f = st.arrays[f"l{j}"]
    q = np.kron(np.asarray(f["qa"]), np.asarray(f["qs"]))
    ggn = _ggn_block(model, state, params, name, x)
    np.testing.assert_allclose(np.asarray(f["eig"]).ravel(),
                               np.diag(q.T @ ggn @ q), rtol=1e-8,
                               atol=1e-12)


def test_kfac_scores_are_the_block_diagonal_solve():
  model, params, state, x, y = _setup(_Conv(), (5, 5, 2), n=14)
  apply = capture.tapped_apply(model, state)
  train, test = (x[:10], y[:10]), (x[10:], y[10:])
  from hint_jax.attribution import kfac  # pylint: disable=g-import-not-at-top
  for name in ("kfac", "ekfac"):
    st = attribution.prepare(name, apply, params, train, damping=0.05,
                             key=jax.random.key(3))
    got = attribution.scores(st, apply, train, test, train_block=4)
    _, g_tr = kfac._layer_grads(apply, params, *train)  # pylint: disable=protected-access
    _, g_te = kfac._layer_grads(apply, params, *test)  # pylint: disable=protected-access
    want = 0
    for j, l in enumerate(apply.layers(params, x[:1])):
      c = _dense_factor(st.arrays, j)
      a = np.asarray(g_te[l.name]).reshape(len(test[0]), -1)
      b = np.asarray(g_tr[l.name]).reshape(len(train[0]), -1)
      want = want + a @ np.linalg.solve(c + 0.05 * np.eye(len(c)), b.T)
    np.testing.assert_allclose(got, want, rtol=1e-8,
                               atol=1e-10 * np.abs(want).max())


def test_kfac_on_the_project_convnet_and_refusals():
  model = get_model("convnet_small", 3, (6, 6, 1))
  jax.config.update("jax_enable_x64", False)   # the models initialise in f32
  try:
    params, state = model.init(jax.random.key(0))
  finally:
    jax.config.update("jax_enable_x64", True)
  params, state = _f64(params), _f64(state)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(16, 6, 6, 1)))
  y = jnp.asarray(rng.integers(0, 3, 16))
  apply = capture.tapped_apply(model, state)
  for name in ("kfac", "ekfac"):
    st = attribution.prepare(name, apply, params, (x, y), chunk_size=5)
    s = attribution.scores(st, apply, (x, y), (x[:4], y[:4]))
    assert s.shape == (4, 16) and np.all(np.isfinite(s))
    assert np.all(np.diag(s[:, :4]) > 0)       # each helps itself
  with pytest.raises(ConfigError, match="tapped_apply"):
    attribution.prepare("kfac", lambda p, xb: model.apply_eval(p, state, xb),
                        params, (x, y))
  with pytest.raises(ConfigError, match="fisher"):
    attribution.prepare("kfac", apply, params, (x, y), fisher="true")

  class Nnx(nnx.Module):
    def __init__(self, rngs):
      self.out = nnx.Linear(36, 3, rngs=rngs)

    def __call__(self, xb):
      return self.out(xb.reshape(len(xb), -1))

  nmodel = adapt.from_nnx(Nnx(nnx.Rngs(0)), (6, 6, 1))
  nparams, nstate = nmodel.init(jax.random.key(0))
  with pytest.raises(ConfigError, match="nnx"):
    attribution.prepare("kfac", capture.tapped_apply(nmodel, nstate),
                        nparams, (x, y))


@pytest.mark.slow
class KfacVariants(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_score_block_equals_streaming_and_vmaps(self):
    model, params, state, x, y = _setup(_Conv(), (5, 5, 2), n=12)
    apply = capture.tapped_apply(model, state)
    train, test = (x[:9], y[:9]), (x[9:], y[9:])
    for name in ("kfac", "ekfac"):
      st = attribution.prepare(name, apply, params, train)
      block = self.variant(attribution.score_block)
      whole = block(st, apply, *test, *train)
      streamed = attribution.scores(st, apply, train, test, train_block=4,
                                    test_block=2)
      # The same maths in other batch shapes: rounding only.
      atol = 1e-9 * float(np.abs(streamed).max())
      chex.assert_trees_all_close(np.asarray(whole), streamed, rtol=0,
                                  atol=atol)
      rows = jax.jit(jax.vmap(lambda xt, yt, s=st: attribution.score_block(
          s, apply, xt[None], yt[None], *train)[0]))(*test)
      chex.assert_trees_all_close(rows, whole, rtol=0, atol=atol)
