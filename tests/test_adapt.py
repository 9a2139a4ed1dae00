"""Networks the project has never seen, linen and nnx, through
`hint_jax.models.adapt`: influence scores against a dense float64 solve
written on the networks themselves, and HINT on plain numpy arrays."""

import flax.linen as nn
from flax import nnx
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hint_jax import hint as hint_lib
from hint_jax import influence as infl
from hint_jax.data.splits import Splits
from hint_jax.errors import ConfigError
from hint_jax.models import adapt
from hint_jax.train import DefenceHook, Trainer, fit
from hint_jax.train.loop import TrainConfig
from hint_jax.train.optim import OptimConfig

N, N_VAL, SHAPE, K = 40, 15, (3, 3, 1), 4


class LinenMLP(nn.Module):
  """Two layers with BatchNorm; its top layer is called "out"."""

  @nn.compact
  def __call__(self, x, train=False):
    x = x.reshape(len(x), -1)
    x = nn.Dense(6)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = jnp.tanh(x)
    return nn.Dense(K, name="out")(x)


class NnxMLP(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(9, 6, rngs=rngs)
    self.norm = nnx.BatchNorm(6, rngs=rngs)
    self.classifier = nnx.Linear(6, K, rngs=rngs)

  def __call__(self, x):
    x = x.reshape(len(x), -1)
    return self.classifier(jnp.tanh(self.norm(self.hidden(x))))


def _data(seed):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.uniform(0, 1, (N,) + SHAPE))
  y = jnp.asarray(rng.integers(0, K, N))
  xv = jnp.asarray(rng.uniform(0, 1, (N_VAL,) + SHAPE))
  yv = jnp.asarray(rng.integers(0, K, N_VAL))
  return x, y, xv, yv


def _dense_reference(logits_of, top, x, y, xv, yv, damping):
  """s_test, I_up and I_pert from the network's own forward pass
  ``logits_of(top, x)`` (the rest of the network fixed): jax.hessian of the
  mean training loss in theta_top, an explicit inverse, and per-example
  gradients; I_pert by differentiating <grad_theta loss, s> in x."""
  f, unravel = ravel_pytree(top)
  loss = lambda g, xb, yb: optax.softmax_cross_entropy_with_integer_labels(
      logits_of(unravel(g), xb), yb)
  h = jax.hessian(lambda g: jnp.mean(loss(g, x, y)))(f)
  gv = jax.grad(lambda g: jnp.mean(loss(g, xv, yv)))(f)
  s = jnp.linalg.solve(h + damping * jnp.eye(f.size), gv)
  one = lambda g, xi, yi: loss(g, xi[None], yi[None])[0]
  grads = jax.vmap(lambda xi, yi: jax.grad(one)(f, xi, yi))(x, y)
  up = -grads @ s
  pert = jax.vmap(jax.grad(
      lambda xi, yi: -jnp.dot(jax.grad(one)(f, xi, yi), s)))(x, y)
  return s, up, pert, unravel


def _check_influence(model, params, state, logits_of, seed):
  x, y, xv, yv = _data(seed)
  top = params["head"]
  damping = 0.1
  s_ref, up_ref, pert_ref, _ = _dense_reference(logits_of, top, x, y, xv,
                                                yv, damping)
  phi = model.features(params, state, x)
  phi_val = model.features(params, state, xv)
  op = infl.top_layer_hessian(top, phi)
  s, info = infl.s_test(op, infl.top_loss_one, top, phi_val, yv,
                        method="cg", damping=damping, tol=1e-13)
  assert bool(info.converged)
  # CG to a 1e-13 residual on a 28-parameter system: float64 rounding.
  np.testing.assert_allclose(ravel_pytree(s)[0], s_ref, rtol=1e-8,
                             atol=1e-12)
  up = infl.top_layer_up_scores(top, phi, y, s)
  np.testing.assert_allclose(up, up_ref, rtol=1e-8, atol=1e-12)
  pert = infl.top_layer_pert(model.features_fn(params, state), top, x, y, s)
  np.testing.assert_allclose(pert, pert_ref, rtol=1e-7, atol=1e-12)


def _f64(tree):
  # Flax creates float32 parameters whatever the x64 flag says.
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


@pytest.fixture
def x64():
  with jax.enable_x64(True):
    yield


def test_linen_network_matches_a_dense_solve(x64):
  del x64
  net = LinenMLP()
  model = adapt.from_linen(net, SHAPE)
  assert model.top_path == ("out",)
  params, state = _f64(model.init(jax.random.key(0)))
  # Move the BatchNorm statistics off their initial values, as training
  # would, so inference mode really uses them.
  _, state = model.apply_train(params, state, _data(9)[0])
  assert set(params) == {"head", "body"} and "out" not in params["body"]
  net_params = model.net_params(params)

  def logits_of(top, xb):
    p = {**net_params, "out": top}
    return net.apply({"params": p, "batch_stats": state}, xb, train=False)

  _check_influence(model, params, state, logits_of, 1)


def test_nnx_network_matches_a_dense_solve(x64):
  del x64
  net = NnxMLP(nnx.Rngs(0))
  model = adapt.from_nnx(net, SHAPE)
  assert model.top_path == ("classifier",)
  params, state = _f64(model.init(jax.random.key(0)))
  _, state = model.apply_train(params, state, _data(9)[0])
  assert float(jnp.abs(state["norm"]["mean"]).sum()) > 0
  net_params = model.net_params(params)
  graph, p0, s0, rest = nnx.split(net, nnx.Param, nnx.BatchStat, ...)

  def logits_of(top, xb):
    p = jax.tree.map(lambda a: a, p0)
    s = jax.tree.map(lambda a: a, s0)
    nnx.replace_by_pure_dict(p, {**net_params, "classifier": top})
    nnx.replace_by_pure_dict(s, state)
    m = nnx.merge(graph, p, s, rest)
    m.eval()
    return m(xb)

  _check_influence(model, params, state, logits_of, 2)


def test_a_top_layer_that_is_not_dense_is_refused():
  with pytest.raises(ConfigError, match="Dense"):
    adapt.from_linen(LinenMLP(), SHAPE, top=("BatchNorm_0",)).init(
        jax.random.key(0))
  with pytest.raises(ConfigError, match="no parameters at nowhere"):
    adapt.from_linen(LinenMLP(), SHAPE, top=("nowhere",)).init(
        jax.random.key(0))
  with pytest.raises(ConfigError, match="name the top layer"):
    adapt.from_nnx(TwoHeads(nnx.Rngs(0)), SHAPE)


class TwoHeads(nnx.Module):
  """Two Linear layers with as many outputs as the logits: ambiguous."""

  def __init__(self, rngs):
    self.a = nnx.Linear(9, K, rngs=rngs)
    self.b = nnx.Linear(K, K, rngs=rngs)

  def __call__(self, x):
    return self.b(self.a(x.reshape(len(x), -1)))


class SmallCNN(nn.Module):
  """32x32x1 images, 12 classes: a shape and class count no dataset here
  has."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(4, (3, 3), strides=2)(x))
    x = nn.relu(nn.Conv(8, (3, 3), strides=2)(x))
    x = x.reshape(len(x), -1)
    return nn.Dense(12)(x)


def test_hint_runs_on_plain_numpy_arrays_of_an_unseen_shape():
  rng = np.random.default_rng(0)
  n, classes = 96, 12
  images = lambda m: rng.integers(0, 256, (m, 32, 32, 1), dtype=np.uint8)
  labels = lambda m: rng.integers(0, classes, m)
  splits = Splits(x_train=images(n), y_train=labels(n), x_val=images(24),
                  y_val=labels(24), x_test=images(24), y_test=labels(24),
                  train_idx=np.arange(n), val_idx=np.arange(24), seed=0,
                  num_classes=classes, name="mine")
  model = adapt.from_linen(SmallCNN(), (32, 32, 1))
  cfg = TrainConfig(epochs=3, batch_size=16, optim=OptimConfig(lr=0.05),
                    eval_every=0)
  trainer = Trainer(model, cfg, n)
  hcfg = hint_lib.HintConfig(ratio=0.5, schedule=(1,), beta=16 / 255)
  defence = hint_lib.Hint(model, hcfg, splits.x_train, splits.y_train,
                          splits.x_val, splits.y_val, epochs=cfg.epochs)
  hook = DefenceHook(defence)
  state, history, x_final = fit(trainer, trainer.init_state(
      jax.random.key(0)), splits, before_epoch=hook)
  assert len(history) == 3 and np.isfinite(history[-1]["train_loss"])
  (update,) = defence.updates(hook.state)
  assert update.num_selected == n // 2
  changed = np.any(x_final != splits.x_train, axis=(1, 2, 3))
  # Only selected examples change, by at most beta (16 grey levels).
  selected = hook.state["hint_selected"]
  assert set(np.flatnonzero(changed)) <= set(selected.tolist())
  assert changed.any()
  diff = np.abs(x_final.astype(int) - splits.x_train.astype(int))
  assert diff.max() <= 16
  assert state.params["head"]["kernel"].shape == (8 * 8 * 8, classes)
