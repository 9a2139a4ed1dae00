"""Training: no recompilation, determinism, optimizer maths, augmentation,
the epoch loop's hook and resuming."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hint_jax import data as data_lib
from hint_jax.errors import ConfigError
from hint_jax.models import get_model
from hint_jax.train import (OptimConfig, TrainConfig, Trainer, fit,
                            make_optimizer, random_shift_flip)
from hint_jax.train.presets import preset


@pytest.fixture(scope="module")
def digits():
  ds = data_lib.load_dataset("digits")
  return data_lib.split_train_val(ds, seed=0)


def _trainer(splits, epochs=2, **kw):
  cfg = dataclasses.replace(preset("digits"), epochs=epochs, **kw)
  model = get_model("convnet_small", 10, splits.x_train.shape[1:])
  return Trainer(model, cfg, len(splits.x_train))


def test_train_step_does_not_recompile(digits, backend_compiles):
  trainer = _trainer(digits)
  state = trainer.init_state(jax.random.key(0))
  batches = trainer.epoch_batches(state, 0, len(digits.x_train))
  x, y = jnp.asarray(digits.x_train), jnp.asarray(digits.y_train)
  state, _ = trainer.train_steps(state, x, y, batches[:2])
  before = backend_compiles()
  state, _ = trainer.train_steps(state, x, y, batches[2:5])
  # Second call, new batches and new state values: nothing compiled.
  assert backend_compiles() == before
  # Evaluation with a partial last batch is padded to one shape too.
  trainer.evaluate(state, digits.x_test, digits.y_test)
  before = backend_compiles()
  trainer.evaluate(state, digits.x_test[:7], digits.y_test[:7])
  assert backend_compiles() == before


def test_same_seed_gives_bit_identical_parameters(digits):
  def run(seed):
    trainer = _trainer(digits)
    state, hist, _ = fit(trainer, trainer.init_state(jax.random.key(seed)),
                         digits)
    return state, hist

  a, hist = run(3)
  b, _ = run(3)
  c, _ = run(4)
  for la, lb in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(la, lb)
  assert any(not np.array_equal(la, lc) for la, lc in
             zip(jax.tree.leaves(a.params), jax.tree.leaves(c.params)))
  assert hist[-1]["test_accuracy"] > 0.5  # it does learn in 2 epochs


def test_resume_equals_uninterrupted_run(digits, tmp_path):
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  trainer = _trainer(digits, epochs=3)
  full, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), digits)
  # Run 2 epochs, save, restore into a fresh template, run the third.
  short = dataclasses.replace(trainer.config, epochs=2)
  t2 = Trainer(trainer.model, short, len(digits.x_train))
  part, hist, _ = fit(t2, t2.init_state(jax.random.key(0)), digits)
  checkpoint.save(tmp_path, part, 1, {"k": 1}, hist)
  restored, done, _, _ = checkpoint.load(
      tmp_path, trainer.init_state(jax.random.key(9)), {"k": 1})
  assert done == 2
  resumed, _, _ = fit(trainer, restored, digits, start_epoch=done)

  def arrays(st):
    return jax.tree.leaves(st.replace(key=jax.random.key_data(st.key)))

  for la, lb in zip(arrays(full), arrays(resumed)):
    np.testing.assert_array_equal(la, lb)
  with pytest.raises(ConfigError):
    checkpoint.load(tmp_path, restored, {"k": 2})


def test_before_epoch_hook_changes_the_images_trained_on(digits):
  trainer = _trainer(digits, epochs=2)
  seen = []

  def hook(epoch, state, x):
    seen.append((epoch, int(x.sum())))
    return (np.zeros_like(x), 0.5) if epoch == 1 else (x, 0.0)

  state0 = trainer.init_state(jax.random.key(0))
  _, hist, x_final = fit(trainer, state0, digits, before_epoch=hook)
  assert [e for e, _ in seen] == [0, 1]
  assert x_final.sum() == 0 and hist[1]["hook_seconds"] == 0.5
  # Zeroed images in epoch 2 change the result versus no hook.
  plain, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), digits)
  hooked, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), digits,
                     before_epoch=hook)
  assert not np.array_equal(jax.tree.leaves(plain.params)[0],
                            jax.tree.leaves(hooked.params)[0])


def test_zero_epochs_and_bad_configs(digits):
  trainer = _trainer(digits, epochs=0)
  state = trainer.init_state(jax.random.key(0))
  out, hist, _ = fit(trainer, state, digits)
  assert hist == [] and int(out.step) == 0
  with pytest.raises(ConfigError):
    TrainConfig(epochs=-1).validate()
  with pytest.raises(ConfigError):
    OptimConfig(lr=0.0).validate()
  with pytest.raises(ConfigError):
    OptimConfig(lr=0.1, nesterov=True).validate()
  with pytest.raises(ConfigError):
    Trainer(get_model("mlp", 10, (8, 8, 1)), TrainConfig(batch_size=4096),
            100)


def test_sgd_matches_pytorch_formulation():
  # torch.optim.SGD(lr, momentum=m, nesterov=True, weight_decay=wd):
  #   g <- g + wd * p;  buf <- m * buf + g;  p <- p - lr * (g + m * buf)
  cfg = OptimConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                    lr_milestones=(2,))
  opt = make_optimizer(cfg, steps_per_epoch=1)
  p = {"w": jnp.array([1.0, -2.0])}
  state = opt.init(p)
  buf = np.zeros(2)
  p_ref = np.array([1.0, -2.0])
  rng = np.random.default_rng(0)
  for step in range(4):
    g = rng.normal(size=2)
    lr = 0.1 if step < 2 else 0.01  # x0.1 at epoch 2 (1 step per epoch)
    g_ref = g + 5e-4 * p_ref
    buf = 0.9 * buf + g_ref
    p_ref = p_ref - lr * (g_ref + 0.9 * buf)
    updates, state = opt.update({"w": jnp.asarray(g, jnp.float32)}, state, p)
    p = optax.apply_updates(p, updates)
    # float32 against float64 over 4 steps: ~1e-7 relative.
    np.testing.assert_allclose(p["w"], p_ref, rtol=1e-5, atol=1e-6)


def test_random_shift_flip():
  x = jnp.arange(2 * 32 * 32 * 3, dtype=jnp.float32).reshape(2, 32, 32, 3)
  y = random_shift_flip(jax.random.key(0), x)
  assert y.shape == x.shape
  np.testing.assert_array_equal(y, random_shift_flip(jax.random.key(0), x))
  # Zero shift and no flip is the identity.
  np.testing.assert_array_equal(
      random_shift_flip(jax.random.key(0), x, max_shift=0, flip=False), x)
  # Each output is a shifted (zero-filled) and possibly flipped copy: every
  # non-zero output pixel value exists in the input image.
  for i in range(2):
    vals = set(np.asarray(x[i]).ravel().tolist())
    out = np.asarray(y[i]).ravel()
    assert set(out[out != 0].tolist()) <= vals
  # Over many keys, shifts cover the full range and flips happen.
  img = jnp.zeros((1, 32, 32, 1)).at[0, 16, 10, 0].set(1.0)
  cols, rows = set(), set()
  for k in range(200):
    out = np.asarray(random_shift_flip(jax.random.key(k), img))[0, :, :, 0]
    r, c = np.argwhere(out == 1)[0]
    rows.add(int(r))
    cols.add(int(c))
  assert rows == set(range(12, 21))           # 16 +- 4
  assert set(range(6, 15)) <= cols            # 10 +- 4
  assert set(range(17, 26)) <= cols           # flipped: 31 - 10 +- 4


def test_short_runs_keep_the_presets_shape():
  from hint_jax.hint.config import scaled_schedule  # pylint: disable=g-import-not-at-top
  # SPEC §7: 15 of 80 epochs -> milestones 6/9/13 (30, 50, 70 x 15/80 =
  # 5.6, 9.4, 13.1), HINT 1/3/8 (5, 15, 40 x 15/80 = 0.94, 2.8, 7.5).
  assert preset("cifar10", epochs=15).optim.lr_milestones == (6, 9, 13)
  assert scaled_schedule((5, 15, 40), 15, 80) == (1, 3, 8)
  absolute = preset("cifar10", epochs=15, epoch_schedule="absolute")
  assert absolute.optim.lr_milestones == (30, 50, 70)
  # Full-length and longer runs are unchanged; no milestones stay none.
  assert preset("cifar10").optim.lr_milestones == (30, 50, 70)
  assert preset("cifar10", epochs=100).optim.lr_milestones == (30, 50, 70)
  assert preset("mnist", epochs=3).optim.lr_milestones == ()
  assert scaled_schedule((9,), 10, 10) == (9,)
  # Very short runs: milestones at >= 1 and before the end, no repeats;
  # HINT's epochs within the run.
  assert preset("cifar10", epochs=2).optim.lr_milestones == (1,)
  assert preset("cifar10", epochs=1).optim.lr_milestones == ()
  assert scaled_schedule((5, 15, 40), 2, 80) == (0, 1)
  # A model trained for part of a longer run takes that run's milestones.
  part = preset("cifar10", epochs=4, shape_epochs=15)
  assert part.epochs == 4 and part.optim.lr_milestones == (6, 9, 13)
  with pytest.raises(ConfigError):
    preset("cifar10", epoch_schedule="relative")


def test_optimizer_overrides_of_the_preset():
  from hint_jax.pipeline import specs  # pylint: disable=g-import-not-at-top
  base = preset("mnist")
  assert base.optim.momentum == 0.0 and base.optim.lr == 0.01
  moved = preset("mnist", momentum=0.9, lr=0.02)
  assert (moved.optim.momentum, moved.optim.lr) == (0.9, 0.02)
  assert moved.optim.lr_milestones == base.optim.lr_milestones
  # None keeps the preset's (a spec's unset field).
  assert preset("cifar10", momentum=None).optim.momentum == 0.9
  assert specs.TrainSpec(momentum=0.9).config("mnist").optim.momentum == 0.9
  with pytest.raises(ConfigError, match="momentum"):
    preset("mnist", momentum=1.0)
  with pytest.raises(ConfigError, match="nesterov"):
    preset("cifar10", momentum=0.0)
