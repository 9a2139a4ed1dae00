"""ATDA: the FAT early stop, the attack's budget, adversarial training in
the loop and on the command line."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hint_jax.defences import atda
from hint_jax.errors import ConfigError
from hint_jax.models import get_model
from hint_jax.train import Trainer, fit
from hint_jax.train.presets import preset


@pytest.mark.parametrize("tau", [0, 2])
def test_fat_stops_tau_steps_after_the_first_misclassification(
    digits_splits, digits_convnet, tau):
  digits = digits_splits
  model, st = digits_convnet
  f = model.logits_fn(st.params, st.model_state)
  x = jnp.asarray(digits.x_train[:200], jnp.float32) / 255
  y = jnp.asarray(digits.y_train[:200])
  # A small budget, so that some examples resist the whole attack.
  cfg = atda.AtdaConfig(eps=0.08, norm="linf", steps=10, tau=tau)
  x_adv, moved, first = atda.early_stopped_pgd(f, x, y, jax.random.key(0),
                                               cfg)
  moved, first = np.asarray(moved), np.asarray(first)
  never = first == cfg.steps
  assert (~never).sum() > 50 and never.sum() > 0   # both kinds present
  np.testing.assert_array_equal(moved[never], cfg.steps)
  # Misclassified at check m: it moved at checks 0..m-1 and then at most
  # tau more times (exactly tau if it stays misclassified).
  assert np.all(moved[~never] <= first[~never] + tau)
  assert np.all(moved[~never] >= first[~never])
  if tau == 0:
    np.testing.assert_array_equal(moved[~never], first[~never])
  d = np.abs(np.asarray(x_adv - x))
  assert d.max() <= 0.08 + 1e-6
  plain = atda.early_stopped_pgd(f, x, y, jax.random.key(0),
                                 dataclasses.replace(cfg, tau=None))
  np.testing.assert_array_equal(np.asarray(plain[1]), cfg.steps)


def test_l2_attack_stays_in_the_ball_exactly(digits_splits, digits_convnet):
  model, st = digits_convnet
  f = model.logits_fn(st.params, st.model_state)
  x = jnp.asarray(digits_splits.x_train[:300], jnp.float32) / 255
  y = jnp.asarray(digits_splits.y_train[:300])
  assert atda.AtdaConfig().norm == "l2"   # the default (SPEC §5)
  for eps in (0.25, 1.0, 3.0):
    cfg = atda.AtdaConfig(eps=eps, steps=10, tau=None)
    x_adv, _, first = atda.early_stopped_pgd(f, x, y, jax.random.key(1), cfg)
    d = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
    norms = np.sqrt((d.reshape(len(d), -1) ** 2).sum(1))
    # Exactly: no tolerance (the projection lands just inside the ball).
    assert np.all(norms <= eps), norms.max() - eps
    # The attack uses its budget: most examples end on or near the sphere
    # (the [0, 1] clip trims a large delta on the digits' saturated pixels).
    assert np.mean(norms > 0.9 * eps) > 0.5
    assert np.all((np.asarray(x_adv) >= 0) & (np.asarray(x_adv) <= 1))
  # A large L2 budget fools the model on most examples.
  assert np.mean(np.asarray(first) < cfg.steps) > 0.5


def test_l2_step_follows_the_normalised_gradient_of_a_linear_model():
  rng = np.random.default_rng(0)
  w = rng.standard_normal((64, 10)).astype(np.float32)
  x = np.full((5, 8, 8, 1), 0.5, np.float32)   # far from the [0, 1] clip
  y = np.arange(5)
  logits_fn = lambda v: v.reshape(v.shape[0], -1) @ jnp.asarray(w)
  cfg = atda.AtdaConfig(eps=0.25, steps=1, step_size=0.05, tau=None)
  key = jax.random.key(3)
  x_adv, moved, _ = atda.early_stopped_pgd(logits_fn, jnp.asarray(x),
                                           jnp.asarray(y), key, cfg)
  np.testing.assert_array_equal(np.asarray(moved), 1)
  d0 = np.asarray(atda.l2_ball_uniform(key, x.shape, cfg.eps), np.float64)
  assert np.all(np.sqrt((d0.reshape(5, -1) ** 2).sum(1)) <= cfg.eps)
  # d CE / dx = W (softmax(W^T x) - e_y), by hand in float64.
  xs = (x + d0).reshape(5, -1)
  z = xs @ w.astype(np.float64)
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  p[np.arange(5), y] -= 1
  g = p @ w.T.astype(np.float64)
  step = g / np.linalg.norm(g, axis=1, keepdims=True)
  want = d0.reshape(5, -1) + cfg.alpha * step
  norms = np.linalg.norm(want, axis=1, keepdims=True)
  want = np.where(norms > cfg.eps, want * cfg.eps / norms, want)
  got = (np.asarray(x_adv, np.float64) - x).reshape(5, -1)
  # float32 arithmetic on values of order 0.05: 1e-6 absolute.
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_config_checks():
  for bad in (dict(eps=0.0), dict(steps=0), dict(step_size=-1.0),
              dict(tau=-1), dict(norm="l1")):
    with pytest.raises(ConfigError):
      atda.AtdaConfig(**bad).validate()
  assert atda.AtdaConfig(eps=0.25).alpha == pytest.approx(0.05)


@pytest.mark.slow


def test_adversarial_training_changes_the_steps_and_is_reproducible(
    digits_splits):
  digits = digits_splits
  model = get_model("convnet_small", 10, digits.x_train.shape[1:])
  cfg = dataclasses.replace(preset("digits"), epochs=1, eval_every=0)
  adv = atda.make_adversary(model, atda.AtdaConfig(eps=0.3, steps=3))
  runs = []
  for adversary in (None, adv, adv):
    tr = Trainer(model, cfg, len(digits.x_train), adversary=adversary)
    st, hist, _ = fit(tr, tr.init_state(jax.random.key(0)), digits)
    runs.append((st, hist[-1]["train_loss"]))
  # Training on adversarial batches: a higher training loss, and a
  # different model from plain training; same key, same model.
  assert runs[1][1] > runs[0][1]
  for a, b in zip(jax.tree.leaves(runs[1][0].params),
                  jax.tree.leaves(runs[2][0].params)):
    np.testing.assert_array_equal(a, b)
  assert not np.allclose(runs[0][0].params["head"]["kernel"],
                         runs[1][0].params["head"]["kernel"])


def test_train_with_atda_cli(tmp_path):
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  out = tmp_path / "run"
  assert main(["train", "--dataset", "digits", "--epochs", "2", "--defence",
               "atda", "--atda-steps", "3", "--out", str(out),
               "--no-progress"]) == 0
  r = json.loads((out / "result.json").read_text())
  assert r["defence"] == "atda"
  assert r["atda"]["config"]["steps"] == 3 and r["atda"]["config"]["tau"] == 0
  assert r["atda"]["config"]["norm"] == "l2"
  assert r["defence_seconds"] == 0.0   # inside the training steps
  assert r["train_seconds"] > 0
