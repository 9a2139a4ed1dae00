"""EPIC: the lazy greedy against the plain greedy, the isolated-point rule
on a constructed example, and the training-loop hook (dropped points never
come back; an epoch trains on the active rows only)."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from hint_jax.defences import epic
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import get_model
from hint_jax.train import DefenceHook, Trainer, fit
from hint_jax.train.presets import preset


def _plain_greedy(sim, k):
  """Reference: recompute every candidate's exact gain at every step."""
  cover = np.zeros(len(sim))
  chosen = []
  for _ in range(k):
    gains = np.maximum(sim - cover[:, None], 0.0).sum(axis=0)
    gains[chosen] = -1.0
    j = int(np.argmax(gains))   # ties: lowest index
    chosen.append(j)
    cover = np.maximum(cover, sim[:, j])
  return np.asarray(chosen)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lazy_greedy_picks_what_the_plain_greedy_picks(seed):
  rng = np.random.default_rng(seed)
  g = rng.normal(size=(60, 3))
  sim = epic.similarity(g, scale=1.0).astype(np.float64)
  np.testing.assert_array_equal(epic.facility_location_greedy(sim, 12),
                                _plain_greedy(sim, 12))


def test_similarity_matches_its_definition():
  rng = np.random.default_rng(0)
  g = rng.normal(size=(7, 4))
  ref = np.exp(-np.linalg.norm(g[:, None] - g[None], axis=-1) / 10.0)
  # float32 storage: relative error ~1e-7.
  np.testing.assert_allclose(epic.similarity(g, 10.0), ref, rtol=1e-6)


def test_planted_isolated_points_are_dropped_and_clusters_kept():
  rng = np.random.default_rng(0)
  proxies, labels, planted = [], [], []
  for c in range(3):
    # Five tight clusters of 8 points per class, far apart ...
    for m in range(5):
      centre = rng.normal(size=4) * 20
      proxies.append(centre + 0.01 * rng.normal(size=(8, 4)))
      labels += [c] * 8
    # ... and two points far from everything.
    for _ in range(2):
      planted.append(len(labels))
      proxies.append(rng.normal(size=(1, 4)) * 20 + 200)
      labels.append(c)
  proxies, labels = np.concatenate(proxies), np.asarray(labels)
  # 42 points a class, budget 7/42: one medoid per cluster and one per
  # isolated point (each isolated point is its own best cover).
  out = epic.select_isolated(proxies, labels, budget=7 / 42, scale=1.0)
  np.testing.assert_array_equal(np.flatnonzero(out["drop"]), planted)
  assert len(out["medoids"]) == 21
  assert np.all(out["cluster_size"][~out["drop"]] == 8)


def test_config_checks_and_schedule():
  with pytest.raises(ConfigError):
    epic.EpicConfig(period=0).validate()
  with pytest.raises(ConfigError):
    epic.EpicConfig(budget=0.0).validate()
  with pytest.raises(ConfigError):
    epic.EpicConfig(scale=-1.0).validate()
  cfg = epic.EpicConfig(warmup=5, period=2)
  assert [e for e in range(12) if cfg.selects_before(e)] == [5, 7, 9, 11]


def test_gradient_proxies_are_softmax_minus_onehot():
  z = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]])
  p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  p[[0, 1], [2, 0]] -= 1
  np.testing.assert_allclose(epic.gradient_proxies(z, np.array([2, 0])), p,
                             rtol=1e-6)


def test_epoch_trains_on_active_rows_only(digits_splits):
  digits = digits_splits
  model = get_model("logreg", 10, digits.x_train.shape[1:])
  cfg = dataclasses.replace(preset("digits"), epochs=1, eval_every=0)
  tr = Trainer(model, cfg, len(digits.x_train))
  st = tr.init_state(jax.random.key(0))
  n = len(digits.x_train)
  everything = tr.epoch_batches(st, 0, n)
  np.testing.assert_array_equal(tr.epoch_batches(st, 0, n, np.arange(n)),
                                everything)
  active = np.arange(0, n, 3)
  b = tr.epoch_batches(st, 0, n, active)
  assert b.shape == (len(active) // cfg.batch_size, cfg.batch_size)
  assert set(b.ravel()) <= set(active)
  assert len(set(b.ravel())) == b.size   # each row once per epoch
  with pytest.raises(ConfigError):
    tr.epoch_batches(st, 0, n, active[:3])


def test_epic_hook_drops_for_good(digits_splits):
  digits = digits_splits
  model = get_model("logreg", 10, digits.x_train.shape[1:])
  cfg = dataclasses.replace(preset("digits"), epochs=6, eval_every=0)
  tr = Trainer(model, cfg, len(digits.x_train))
  # Flip a tenth of the labels: a less regular set to select from.
  y = digits.y_train.copy()
  flip = np.arange(0, len(y), 10)
  y[flip] = (y[flip] + 3) % 10
  data = dataclasses.replace(digits, y_train=y)
  ep = epic.Epic(model, epic.EpicConfig(warmup=2, period=1, budget=0.1), y)
  hook = DefenceHook(ep)
  seen = []

  def before(epoch, state, x):
    out = hook(epoch, state, x)
    seen.append(hook.state["epic_active"])
    return out

  fit(tr, tr.init_state(jax.random.key(0)), data, before_epoch=before,
      active_fn=hook.active_indices)
  records = hook.state["epic"]
  assert [r["epoch"] for r in records] == [2, 3, 4, 5]
  assert records[0]["dropped"] > 0
  for prev, cur in zip(seen, seen[1:]):
    assert not np.any(cur & ~prev)   # never re-admitted
  s = ep.summary(hook.state)
  assert s["epic_dropped"] == int((~hook.state["epic_active"]).sum()) > 0
  # Pure: the first state is untouched by the selections that followed.
  assert ep.init()["epic_active"].all() and seen[0].all()
  with pytest.raises(DataError, match="EPIC state"):
    ep.check({"epic_active": np.ones(3, bool), "epic": []})


def test_train_with_epic_records_drops_and_resumes(tmp_path,
                                                   interrupted_run):
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  base = ["train", "--dataset", "digits", "--epochs", "5", "--defence",
          "epic", "--epic-warmup", "2", "--epic-period", "1",
          "--no-progress"]
  assert main(base + ["--out", str(tmp_path / "full")]) == 0
  a = json.loads((tmp_path / "full" / "result.json").read_text())
  assert a["defence"] == "epic"
  assert [r["epoch"] for r in a["epic"]["epic_selections"]] == [2, 3, 4]
  assert a["num_train_kept"] == a["num_train"] - a["epic"]["epic_dropped"]
  assert a["epic_seconds"] > 0 and a["defence_seconds"] > 0
  # Killed after epoch 3 (after the first selection), resumed.
  assert interrupted_run(base + ["--out", str(tmp_path / "cut")], 2) == 0
  b = json.loads((tmp_path / "cut" / "result.json").read_text())
  assert b["test_accuracy"] == a["test_accuracy"]
  assert b["num_train_kept"] == a["num_train_kept"]
  assert ([r["dropped"] for r in b["epic"]["epic_selections"]] ==
          [r["dropped"] for r in a["epic"]["epic_selections"]])


def test_bad_epic_settings_are_one_line_errors(tmp_path):
  from test_cli import _assert_one_line_error, _run_cli  # pylint: disable=g-import-not-at-top
  for extra, word in ((["--epic-budget", "0"], "budget"),
                      (["--epic-warmup", "9"], "warm-up"),
                      (["--epic-scale", "-2"], "scale")):
    line = _assert_one_line_error(_run_cli(
        ["train", "--dataset", "digits", "--epochs", "8", "--defence",
         "epic", "--out", str(tmp_path / "o")] + extra))
    assert word in line, line
