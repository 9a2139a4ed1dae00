"""Model shapes, parameter counts, initialisation and BatchNorm state."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hint_jax.errors import ConfigError
from hint_jax.models import (ConvNet, Model, get_model, is_top_layer,
                             num_params)
from hint_jax.models import layers
from hint_jax.models.layers import BatchNorm, TorchConv, avg_pool2


@pytest.mark.parametrize("name,shape,head,total", [
    ("convnet", (28, 28, 1), 16010, None),
    ("resnet18", (32, 32, 3), 5130, 11173962),
    ("convnet_small", (8, 8, 1), 32 * 2 * 2 * 10 + 10, None),
    ("logreg", (28, 28, 1), 7850, 7850),
    ("mlp", (8, 8, 1), 650, 64 * 65 + 650),
    ("resnet_tiny", (32, 32, 3), 1290, None),
])
def test_shapes_and_parameter_counts(name, shape, head, total):
  model = get_model(name, 10, shape)
  params, state = model.init(jax.random.key(0))
  assert num_params(params["head"]) == head
  if total is not None:
    assert num_params(params) == total
  x = jnp.zeros((3,) + shape)
  logits, phi = model.apply_eval(params, state, x, return_features=True)
  assert logits.shape == (3, 10)
  # The head is exactly logits = phi @ kernel + bias.
  np.testing.assert_allclose(
      logits, phi @ params["head"]["kernel"] + params["head"]["bias"],
      rtol=1e-5, atol=1e-5)
  logits_train, _ = model.apply_train(params, state, x)
  assert logits_train.shape == (3, 10)


def test_convnet_features_are_1600():
  model = get_model("convnet", 10, (28, 28, 1))
  params, state = model.init(jax.random.key(0))
  assert model.features(params, state, jnp.zeros((2, 28, 28, 1))).shape == (
      2, 1600)


def test_convnet_rejects_wrong_input_size():
  with pytest.raises(ConfigError):
    get_model("convnet", 10, (8, 8, 1))
  with pytest.raises(ConfigError):
    get_model("nope", 10, (8, 8, 1))


def test_top_layer_predicate():
  params, _ = get_model("mlp", 10, (8, 8, 1)).init(jax.random.key(0))
  paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  top = [p for p in paths if is_top_layer(p)]
  assert len(top) == 2 and len(paths) == 4


def test_pytorch_default_initialisation_bounds():
  # PyTorch: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  params, _ = get_model("convnet", 10, (28, 28, 1)).init(jax.random.key(0))
  for layer, fan_in in [("conv1", 25), ("conv2", 40 * 25), ("head", 1600)]:
    bound = 1 / math.sqrt(fan_in)
    for leaf in (params[layer]["kernel"], params[layer]["bias"]):
      assert float(jnp.max(jnp.abs(leaf))) <= bound
    # A uniform sample of this size spans most of the interval (not a
    # degenerate or much narrower init): max |w| > 0.9 bound.
    assert float(jnp.max(jnp.abs(params[layer]["kernel"]))) > 0.9 * bound


def test_batchnorm_state_is_explicit():
  model = get_model("convnet", 10, (28, 28, 1))
  params, state = model.init(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))
  _, new_state = model.apply_train(params, state, x)
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state,
                       new_state)
  assert all(v > 0 for v in jax.tree.leaves(moved))
  # PyTorch momentum 0.1: the running mean starts at 0 and moves to
  # 0.1 * (batch mean of the conv1 outputs).
  conv1 = TorchConv(40, 5, "VALID", "im2col").apply(
      {"params": params["conv1"]}, x)
  np.testing.assert_allclose(new_state["bn1"]["mean"],
                             0.1 * jnp.mean(conv1, axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  # Inference mode uses the running statistics and does not change them:
  # the same input gives the same output in batches of any size.
  a = model.apply_eval(params, new_state, x)
  b = model.apply_eval(params, new_state, x[:3])
  np.testing.assert_allclose(a[:3], b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cin,padding", [(1, "VALID"), (3, "SAME"),
                                         (4, "VALID")])
def test_im2col_conv_equals_xla_conv(cin, padding):
  x = jax.random.normal(jax.random.key(0), (4, 12, 12, cin))
  xla = TorchConv(6, 5, padding, "xla")
  col = TorchConv(6, 5, padding, "im2col")
  variables = xla.init(jax.random.key(1), x)
  want = xla.apply(variables, x)
  got = col.apply(variables, x)
  # Same sums in another order: float32 rounding only (values ~1).
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # And both equal flax's own convolution with the same kernel.
  ref = nn.Conv(6, (5, 5), padding=padding).apply(variables, x)
  np.testing.assert_allclose(want, ref, rtol=1e-5, atol=1e-5)


def test_conv_valid_derivatives_are_the_convolutions():
  """`conv_valid` (lax's convolution, input gradient through the
  row-stacked form) against lax's convolution and its own derivatives, in
  float64 so only rounding can separate them: values, reverse mode in both
  arguments, forward-over-reverse (the HVPs of the influence engine), the
  mixed input/parameter derivative (I_pert) and per-example gradients."""
  with jax.enable_x64(True):
    k = jax.random.key(0)
    x = jax.random.normal(k, (3, 9, 8, 4), jnp.float64)
    w = jax.random.normal(jax.random.fold_in(k, 1), (3, 3, 4, 5),
                          jnp.float64)
    ref = lambda x, w: jnp.sum(jnp.sin(layers._conv(x, w)))  # pylint: disable=protected-access
    new = lambda x, w: jnp.sum(jnp.sin(layers.conv_valid(x, w)))
    close = lambda a, b: jax.tree.map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-12,
                                                atol=1e-12), a, b)
    close(layers.conv_valid(x, w), layers._conv(x, w))  # pylint: disable=protected-access
    close(layers.conv_rows(x, w), layers._conv(x, w))  # pylint: disable=protected-access
    close(jax.grad(new, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w))
    v = (jax.random.normal(jax.random.fold_in(k, 2), x.shape, jnp.float64),
         jax.random.normal(jax.random.fold_in(k, 3), w.shape, jnp.float64))
    close(jax.jvp(jax.grad(new, (0, 1)), (x, w), v),
          jax.jvp(jax.grad(ref, (0, 1)), (x, w), v))
    mixed = lambda f: jax.grad(
        lambda x: jnp.sum(jax.grad(f, 1)(x, w) ** 2))(x)
    close(mixed(new), mixed(ref))
    per_example = lambda f: jax.vmap(jax.grad(
        lambda w, xi: f(xi[None], w)), (None, 0))(w, x)
    close(per_example(new), per_example(ref))
  # A gradient in the kernel only never forms the row-stacked input.
  x32, w32 = x.astype(jnp.float32), w.astype(jnp.float32)
  jaxpr = str(jax.make_jaxpr(jax.grad(
      lambda w: jnp.sum(layers.conv_valid(x32, w))))(w32))
  # (The transpose of the stacking is a split and row-shifting pads.)
  assert "conv_general_dilated" in jaxpr
  assert " pad[" not in jaxpr and " split[" not in jaxpr
  input_grad = str(jax.make_jaxpr(jax.grad(
      lambda x: jnp.sum(layers.conv_valid(x, w32))))(x32))
  assert " pad[" in input_grad and " split[" in input_grad


def test_convnet_conv_impls_agree_and_strided_pool_matches():
  x = jax.random.uniform(jax.random.key(0), (5, 28, 28, 1))
  auto = Model("a", ConvNet(conv_impl="im2col"), (28, 28, 1))
  xla = Model("b", ConvNet(conv_impl="xla"), (28, 28, 1))
  plain = Model("c", ConvNet(conv_impl="lax"), (28, 28, 1))
  params, state = auto.init(jax.random.key(1))
  np.testing.assert_allclose(auto.apply_eval(params, state, x),
                             xla.apply_eval(params, state, x),
                             rtol=1e-4, atol=1e-5)
  # The parameter gradient through conv_valid's input-gradient path is
  # lax's to float32 rounding (scale ~1e-2..1; the sums run in another
  # order).
  loss = lambda m: jax.grad(lambda p: jnp.sum(
      m.apply_eval(p, state, x) ** 2))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4,
                                                       atol=2e-5),
               loss(xla), loss(plain))
  y = jax.random.normal(jax.random.key(2), (2, 6, 8, 3))
  np.testing.assert_allclose(avg_pool2(y),
                             nn.avg_pool(y, (2, 2), strides=(2, 2)),
                             rtol=1e-6, atol=1e-6)
  odd = jax.random.normal(jax.random.key(3), (2, 5, 5, 3))
  assert avg_pool2(odd).shape == (2, 2, 2, 3)


def test_forward_module_gives_the_training_module_values():
  # A Model may run forward-only passes through another implementation of
  # the same network (here the training module convolves by im2col, the
  # forward module by XLA); it must compute the same function as the
  # training module (float32 sums in another order: ~1e-6 on values of
  # order 1).
  model = Model("convnet", ConvNet(conv_impl="im2col"), (28, 28, 1),
                ConvNet(conv_impl="xla"))
  params, state = model.init(jax.random.key(0))
  x_u8 = np.asarray(jax.random.randint(jax.random.key(1), (7, 28, 28, 1), 0,
                                       256), np.uint8)
  x = x_u8.astype(np.float32) / 255.0
  train_mod = model.module.apply({"params": params, "batch_stats": state}, x,
                                 train=False, return_features=True)
  logits, phi = model.apply_eval(params, state, x, return_features=True)
  np.testing.assert_allclose(logits, train_mod[0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(phi, train_mod[1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(model.features_of_images(params, state, x_u8, 4),
                             model.features_fn(params, state)(x),
                             rtol=1e-5, atol=1e-5)


def test_example_loss_restricts_to_any_subset():
  from hint_jax import influence as infl  # pylint: disable=g-import-not-at-top
  from hint_jax.models import is_top_variable, variables  # pylint: disable=g-import-not-at-top
  model = get_model("convnet_small", 10, (8, 8, 1))
  params, state = model.init(jax.random.key(0))
  var = variables(params, state)
  x = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1))
  y = jnp.arange(6)
  # theta_top through `variables` equals the top-layer loss.
  top, rebuild = infl.restrict(var, is_top_variable)
  loss_a = infl.restrict_loss(model.example_loss, rebuild)
  loss_b = model.top_example_loss(params, state)
  for i in range(6):
    np.testing.assert_allclose(loss_a(top, x[i], y[i]),
                               loss_b(params["head"], x[i], y[i]), rtol=1e-6)
  # Another subset (conv2) is selectable too, and its gradient is the
  # full gradient's conv2 block (BatchNorm statistics never differentiated).
  sub, rebuild2 = infl.restrict(
      var, lambda p: len(p) > 1 and p[0] == "params" and p[1] == "conv2")
  g_sub = jax.grad(infl.restrict_loss(model.example_loss, rebuild2))(
      sub, x[0], y[0])
  g_full = jax.grad(model.example_loss)(var, x[0], y[0])
  np.testing.assert_allclose(g_sub["params"]["conv2"]["kernel"],
                             g_full["params"]["conv2"]["kernel"], rtol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_batch_norm_equals_flax_batch_norm(train):
  # Same variables and values as flax.linen.BatchNorm with PyTorch's
  # momentum/eps; a shift normalises x + shift without forming it.
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (16, 6, 6, 5))
  shift = jax.random.normal(jax.random.key(1), (5,))
  ours = BatchNorm(use_running_average=not train)
  ref = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                     epsilon=1e-5)
  v_ours, v_ref = ours.init(jax.random.key(2), x), ref.init(
      jax.random.key(2), x)
  assert (jax.tree.map(jnp.shape, v_ours) == jax.tree.map(jnp.shape, v_ref))
  # Non-trivial parameters and running statistics.
  k = iter(jax.random.split(jax.random.key(3), 4))
  variables = {"params": {"scale": 1 + 0.1 * jax.random.normal(next(k), (5,)),
                          "bias": jax.random.normal(next(k), (5,))},
               "batch_stats": {"mean": jax.random.normal(next(k), (5,)),
                               "var": 1 + jax.random.uniform(next(k), (5,))}}
  for args_ours, x_ref in (((x,), x), ((x, shift), x + shift)):
    got, got_state = ours.apply(variables, *args_ours, mutable=["batch_stats"])
    want, want_state = ref.apply(variables, x_ref, mutable=["batch_stats"])
    # Outputs of order 1-3 from inputs of order 5: float32 rounding of the
    # one-pass statistics and of (x*a + c) against ((x - m)*a + b).
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    for name in ("mean", "var"):
      np.testing.assert_allclose(got_state["batch_stats"][name],
                                 want_state["batch_stats"][name],
                                 rtol=1e-5, atol=1e-5)
  if train:
    # The shift cancels in the output in train mode, so its gradient is 0.
    g = jax.grad(lambda s: jnp.sum(ours.apply(variables, x, s,
                                              mutable=["batch_stats"])[0]
                                   * x))(shift)
    assert float(jnp.max(jnp.abs(g))) == 0.0


def test_convnet_parameter_tree_is_unchanged():
  # Checkpoints written before the BatchNorm/conv-bias rewrite must load:
  # the same names and shapes as flax's layers gave.
  params, state = get_model("convnet", 10, (28, 28, 1)).init(
      jax.random.key(0))
  shapes = jax.tree.map(lambda a: tuple(a.shape), (params, state))
  assert shapes == (
      {"conv1": {"kernel": (5, 5, 1, 40), "bias": (40,)},
       "bn1": {"scale": (40,), "bias": (40,)},
       "conv2": {"kernel": (5, 5, 40, 100), "bias": (100,)},
       "bn2": {"scale": (100,), "bias": (100,)},
       "head": {"kernel": (1600, 10), "bias": (10,)}},
      {"bn1": {"mean": (40,), "var": (40,)},
       "bn2": {"mean": (100,), "var": (100,)}})


def test_convnet_equals_the_flax_layer_version():
  # The ConvNet (conv bias passed to BatchNorm as a shift, one-pass
  # statistics, strided pooling) against the same network from flax's own
  # layers, train mode (logits and new running statistics) and eval mode.
  class FlaxConvNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      for i, width in enumerate((40, 100)):
        x = nn.Conv(width, (5, 5), padding="VALID", name=f"conv{i + 1}")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         epsilon=1e-5, name=f"bn{i + 1}")(x)
        x = nn.avg_pool(nn.relu(x), (2, 2), strides=(2, 2))
      return nn.Dense(10, name="head")(x.reshape((x.shape[0], -1)))

  model = get_model("convnet", 10, (28, 28, 1))
  params, state = model.init(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
  variables = {"params": params, "batch_stats": state}
  got, got_state = model.apply_train(params, state, x)
  want, want_state = FlaxConvNet().apply(variables, x, train=True,
                                         mutable=["batch_stats"])
  # Logits of order 1 after two BatchNorms: float32 rounding only.
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  for a, b in zip(jax.tree.leaves(got_state),
                  jax.tree.leaves(want_state["batch_stats"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(model.apply_eval(params, got_state, x),
                             FlaxConvNet().apply(
                                 {"params": params, "batch_stats": got_state},
                                 x),
                             rtol=1e-4, atol=1e-4)
