"""hint_jax.xla_options: which compiler options apply, the jit wrapper, and
that the options change no result beyond float32 rounding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hint_jax import xla_options
from hint_jax.models import get_model
from hint_jax.train import Trainer
from hint_jax.train.presets import preset


def test_options_on_this_cpu_and_switch(monkeypatch):
  if jax.default_backend() != "cpu":
    pytest.skip("the options are for the CPU backend")
  version = xla_options._jaxlib_version()  # pylint: disable=protected-access
  lo, hi = xla_options.MEASURED_JAXLIB
  if lo <= version < hi:
    assert xla_options.compiler_options() == xla_options.CPU_OPTIONS
    assert xla_options.status().startswith("CPU options")
  else:
    assert xla_options.compiler_options() is None
    assert "outside the measured range" in xla_options.status()
  monkeypatch.setenv(xla_options.ENV_VAR, "0")
  assert xla_options.compiler_options() is None
  assert xla_options.ENV_VAR in xla_options.status()


def test_jit_wrapper_behaves_like_jax_jit():
  @functools.partial(xla_options.jit, static_argnames=("k",))
  def f(x, k):
    return x * k

  assert f.__name__ == "f"
  np.testing.assert_array_equal(f(jnp.arange(3.0), k=2), [0.0, 2.0, 4.0])
  f(jnp.arange(3.0) + 1, k=2)
  assert f._cache_size() == 1  # pylint: disable=protected-access
  f(jnp.arange(3.0), k=3)
  assert f._cache_size() == 2  # pylint: disable=protected-access
  # Callable inside another jitted function, and lowerable.
  g = jax.jit(lambda x: f(x, k=5) + 1)
  np.testing.assert_array_equal(g(jnp.ones(2)), [6.0, 6.0])
  # Concrete arguments under a trace take the plain path too.
  h = jax.jit(lambda x: f(jnp.ones(2), k=4) + x)
  np.testing.assert_array_equal(h(jnp.ones(2)), [5.0, 5.0])
  assert jax.grad(lambda x: f(x, k=3).sum())(jnp.ones(2)).tolist() == [3, 3]
  assert "multiply" in f.lower(jnp.ones(2), k=2).as_text()


def _ten_steps(monkeypatch, setting):
  if setting is not None:
    monkeypatch.setenv(xla_options.ENV_VAR, setting)
  else:
    monkeypatch.delenv(xla_options.ENV_VAR, raising=False)
  model = get_model("convnet", 10, (28, 28, 1))
  trainer = Trainer(model, preset("mnist", batch_size=32), 320)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (320, 28, 28, 1), dtype=np.uint8)
  y = rng.integers(0, 10, 320).astype(np.int32)
  state = trainer.init_state(jax.random.key(0))
  state, _ = trainer.train_epoch(state, x, y, 0)
  return state.params, trainer.evaluate(state, x[:64], y[:64])


def test_training_with_and_without_the_options_agrees(monkeypatch):
  with_opts, acc_a = _ten_steps(monkeypatch, None)
  without, acc_b = _ten_steps(monkeypatch, "0")
  # Ten SGD steps with the same batches: only the kernels' summation order
  # differs, so parameters agree to float32 rounding grown over ten steps
  # (observed ~1e-6; parameters are of order 0.1).
  for a, b in zip(jax.tree.leaves(with_opts), jax.tree.leaves(without)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
  assert abs(acc_a["loss"] - acc_b["loss"]) < 1e-3
