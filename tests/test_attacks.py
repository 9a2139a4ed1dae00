"""Untargeted attacks (PGD, DAP, DURP), mixed poisoning and the
poisoned-dataset file, on the embedded digits with a small trained victim."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from hint_jax import attacks
from hint_jax import data as data_lib
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import get_model
from hint_jax.train import Trainer, fit
from hint_jax.train.presets import preset


@pytest.fixture(scope="module")
def victim():
  """convnet_small trained 10 epochs on clean digits; (model, state, splits)."""
  splits = data_lib.split_train_val(data_lib.load_dataset("digits"), seed=0)
  model = get_model("convnet_small", 10, splits.x_train.shape[1:])
  cfg = dataclasses.replace(preset("digits"), epochs=10, eval_every=0)
  trainer = Trainer(model, cfg, len(splits.x_train))
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits)
  return model, state, splits


def _predict(model, state, x_u8):
  logits = model.logits_fn(state.params, state.model_state)(
      np.asarray(x_u8, np.float32) / 255.0)
  return np.asarray(logits).argmax(-1)


@pytest.mark.parametrize("eps,levels", [(0.3, 76), (8 / 255, 8),
                                        (16 / 255, 16), (0.0, 0)])
def test_budget_levels(eps, levels):
  assert attacks.budget_levels(eps) == levels


def test_pgd_and_dap_stay_in_budget_and_work(victim):
  model, state, splits = victim
  x, y = splits.x_test[:200], splits.y_test[:200]
  f = model.logits_fn(state.params, state.model_state)
  eps = 0.3
  clean_acc = np.mean(_predict(model, state, x) == y)
  pgd = attacks.pgd_attack(f, x, y, jax.random.key(1), eps=eps, steps=10,
                           step_size=0.05, chunk_size=64)
  dap = attacks.dap_attack(f, x, y, num_classes=10, eps=eps, steps=10,
                           chunk_size=64)
  for adv in (pgd, dap):
    assert adv.dtype == np.uint8 and adv.shape == x.shape
    # Exact, after uint8 quantisation: no tolerance.
    assert np.abs(adv.astype(int) - x.astype(int)).max() <= 76
  # PGD maximises the victim's error; DAP pushes predictions to (y+1) mod 10.
  # Measured: clean 99%, under PGD 0%, DAP reaches (y+1) on 91%.
  assert np.mean(_predict(model, state, pgd) == y) < clean_acc - 0.5
  shifted = (y + 1) % 10
  assert np.mean(_predict(model, state, dap) == shifted) > 0.5
  assert np.mean(_predict(model, state, x) == shifted) < 0.05
  # Same seed, same poisons; DAP is deterministic.
  again = attacks.pgd_attack(f, x, y, jax.random.key(1), eps=eps, steps=10,
                             step_size=0.05, chunk_size=64)
  np.testing.assert_array_equal(pgd, again)
  other = attacks.pgd_attack(f, x, y, jax.random.key(2), eps=eps, steps=10,
                             step_size=0.05, chunk_size=64)
  assert np.any(other != pgd)
  np.testing.assert_array_equal(
      dap, attacks.dap_attack(f, x, y, num_classes=10, eps=eps, steps=10,
                              chunk_size=64))


@pytest.mark.parametrize("values", ["sign", "uniform"])
def test_durp_is_one_perturbation_per_class(values):
  # Mid-grey images: x +- 76 never clips, so x_new - x is exactly the
  # class's perturbation for every image of the class.
  rng = np.random.default_rng(0)
  x = rng.integers(90, 166, (60, 8, 8, 1)).astype(np.uint8)
  y = np.arange(60) % 10
  adv = attacks.durp_attack(x, y, jax.random.key(0), num_classes=10, eps=0.3,
                            values=values)
  d = adv.astype(int) - x.astype(int)
  assert np.abs(d).max() <= 76
  if values == "sign":  # every pixel moves by the whole budget, both ways
    assert set(np.unique(d)) == {-76, 76}
    assert 0.4 < np.mean(d > 0) < 0.6
  else:  # uniform in [-76, 76]: mean |d| about half the budget
    assert 30 < np.abs(d).mean() < 46 and len(np.unique(d)) > 50
  for c in range(10):
    rows = d[y == c]
    assert np.all(rows == rows[0])
  assert not np.all(d[y == 0][0] == d[y == 1][0])
  # On real images the clip at 0 and 255 keeps them valid uint8.
  np.testing.assert_array_equal(
      adv, attacks.durp_attack(x, y, jax.random.key(0), num_classes=10,
                               eps=0.3, values=values))
  with pytest.raises(ConfigError):
    attacks.durp_attack(x, y, jax.random.key(0), num_classes=10,
                        values="gauss")


@pytest.mark.parametrize("n,p,clean,share", [(59000, 0.6, 23600, 8850),
                                             (59000, 1.0, 0, 14750),
                                             (1000, 0.0, 1000, 0)])
def test_mixed_poisoning_counts(n, p, clean, share):
  ids = attacks.assign_attacks(n, p, 4, jax.random.key(0))
  assert np.sum(ids == -1) == clean
  assert [int(np.sum(ids == a)) for a in range(4)] == [share] * 4
  np.testing.assert_array_equal(
      ids, attacks.assign_attacks(n, p, 4, jax.random.key(0)))
  with pytest.raises(ConfigError):
    attacks.assign_attacks(n, 1.5, 4, jax.random.key(0))


def _poisoned_set(x, y):
  ids = attacks.assign_attacks(len(x), 0.5, 1, jax.random.key(0))
  adv = attacks.durp_attack(x, y, jax.random.key(1), num_classes=10,
                            eps=0.1)
  xp = np.where((ids >= 0)[:, None, None, None], adv, x)
  meta = {"num_classes": 10, "ratio": 0.5, "seed": 0,
          "attacks": [{"name": "durp", "eps": 0.1}]}
  return attacks.PoisonedSet(xp, y, ids, np.arange(len(x)), meta)


def test_poisoned_file_round_trip_and_validation(tmp_path):
  splits = data_lib.split_train_val(data_lib.load_dataset("digits"), seed=0)
  x, y = splits.x_train, splits.y_train
  ps = _poisoned_set(x, y)
  path = tmp_path / "p.npz"
  attacks.save_poisoned(path, ps)
  back = attacks.load_poisoned(path, clean_x=x)
  np.testing.assert_array_equal(back.x, ps.x)
  np.testing.assert_array_equal(back.attack_id, ps.attack_id)
  assert back.meta["format"] == attacks.FORMAT
  assert back.counts() == {"clean": len(x) - len(x) // 2,
                           "durp": len(x) // 2}
  # A budget the file does not respect, a clean row that was changed, bad
  # labels, a missing file, a file that is not ours: all clear DataErrors.
  over = dataclasses.replace(ps, meta={**ps.meta, "attacks": [
      {"name": "durp", "eps": 0.05}]})
  attacks.save_poisoned(tmp_path / "over.npz", over)
  with pytest.raises(DataError, match="budget"):
    attacks.load_poisoned(tmp_path / "over.npz", clean_x=x)
  touched = ps.x.copy()
  touched[np.flatnonzero(ps.attack_id < 0)[0]] ^= 1
  attacks.save_poisoned(tmp_path / "t.npz",
                        dataclasses.replace(ps, x=touched))
  with pytest.raises(DataError, match="clean"):
    attacks.load_poisoned(tmp_path / "t.npz", clean_x=x)
  with pytest.raises(DataError, match="labels"):
    attacks.save_poisoned(tmp_path / "l.npz",
                          dataclasses.replace(ps, y=ps.y + 5))
  with pytest.raises(DataError, match="does not exist"):
    attacks.load_poisoned(tmp_path / "none.npz")
  np.savez(tmp_path / "other.npz", a=np.zeros(3))
  with pytest.raises(DataError, match="missing"):
    attacks.load_poisoned(tmp_path / "other.npz")
  json.loads(json.dumps(back.meta))  # metadata stays JSON


# ------------------------------------------------------------ command line
@pytest.mark.slow
def test_poison_command_resumes_and_train_uses_the_file(tmp_path,
                                                         monkeypatch):
  from hint_jax.pipeline import poisoning  # pylint: disable=g-import-not-at-top
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  out = tmp_path / "p.npz"
  argv = ["poison", "--dataset", "digits", "--attacks", "pgd,dap,durp,dc",
          "--dc-steps", "5",
          "--ratio", "0.6", "--pgd-steps", "5", "--dap-steps", "5",
          "--victim-epochs", "3", "--out", str(out), "--no-progress"]

  class Stop(Exception):
    pass

  def dap_fails(*_a, **_k):
    raise Stop()

  # Interrupted in DAP: the victim and PGD's chunk are kept ...
  monkeypatch.setattr(poisoning.attacks, "dap_attack", dap_fails)
  with pytest.raises(Stop):
    main(argv)
  work = tmp_path / "p.npz.work"
  assert (work / "pgd_00000.npy").exists() and not out.exists()
  monkeypatch.undo()
  # ... and reused: PGD must not run again.
  monkeypatch.setattr(poisoning.attacks, "pgd_attack", dap_fails)
  assert main(argv) == 0
  assert out.exists() and not work.exists()

  splits = data_lib.split_train_val(data_lib.load_dataset("digits"), seed=0)
  ps = attacks.load_poisoned(out, clean_x=splits.x_train)
  n = len(splits.x_train)
  counts = ps.counts()
  assert counts["clean"] == n - round(0.6 * n)
  shares = [counts[a] for a in ("pgd", "dap", "durp", "dc")]
  assert max(shares) - min(shares) <= 1
  assert ps.meta["victim"]["epochs"] == 3

  run = tmp_path / "run"
  assert main(["train", "--dataset", "digits", "--epochs", "2", "--poison",
               str(out), "--out", str(run), "--no-progress"]) == 0
  result = json.loads((run / "result.json").read_text())
  assert result["poison"]["counts"] == counts
  # A file made from another split is refused with a one-line error.
  assert main(["train", "--dataset", "digits", "--split-seed", "1",
               "--epochs", "1", "--poison", str(out), "--out",
               str(tmp_path / "other"), "--no-progress"]) == 2


def test_poison_victim_dir_is_reused_across_runs(tmp_path, monkeypatch):
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  vdir = tmp_path / "victims"
  base = ["poison", "--dataset", "digits", "--ratio", "1", "--pgd-steps",
          "2", "--dap-steps", "2", "--victim-epochs", "2", "--victim-dir",
          str(vdir), "--no-progress"]
  assert main(base + ["--attacks", "pgd", "--out",
                      str(tmp_path / "pgd.npz")]) == 0
  (folder,) = vdir.iterdir()   # one victim, kept after the file is written
  first = attacks.load_poisoned(tmp_path / "pgd.npz").meta["victim"]

  def no_training(*_a, **_k):
    raise AssertionError("the victim was trained again")

  # A second attack reuses it: no training step may run ...
  monkeypatch.setattr("hint_jax.pipeline.training.fit", no_training)
  assert main(base + ["--attacks", "dap", "--out",
                      str(tmp_path / "dap.npz")]) == 0
  second = attacks.load_poisoned(tmp_path / "dap.npz").meta["victim"]
  assert second == first and list(vdir.iterdir()) == [folder]
  # ... while another seed is another victim, in its own folder.
  monkeypatch.undo()
  assert main(base + ["--attacks", "dap", "--seed", "1", "--out",
                      str(tmp_path / "dap1.npz")]) == 0
  assert len(list(vdir.iterdir())) == 2
  # `train --victim-dir` is for transfer-scenario files only.
  assert main(["train", "--dataset", "digits", "--poison",
               str(tmp_path / "pgd.npz"), "--victim-dir", str(vdir),
               "--out", str(tmp_path / "t"), "--no-progress"]) == 2


def test_poison_command_bad_input(tmp_path):
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  base = ["poison", "--dataset", "digits", "--out", str(tmp_path / "x.npz")]
  assert main(base + ["--attacks", "pgd,foo"]) == 2
  assert main(base + ["--attacks", "pgd,pgd"]) == 2
  assert main(base + ["--ratio", "1.5"]) == 2
  assert main(base + ["--eps", "2"]) == 2


@pytest.mark.slow


def test_deepconfuse_generator_learns_its_objective_within_budget():
  from hint_jax.attacks import deepconfuse as dc  # pylint: disable=g-import-not-at-top
  splits = data_lib.split_train_val(data_lib.load_dataset("digits"), seed=0)
  x, y = splits.x_train, splits.y_train
  cfg = dc.DeepConfuseConfig(eps=0.3, steps=200)
  g, f, losses = dc.train_generator(x, y, jax.random.key(0), num_classes=10,
                                    config=cfg)
  assert losses.shape == (200,) and np.all(np.isfinite(losses))
  g0 = dc.Generator(cfg.width).init(jax.random.split(jax.random.key(0), 3)[0],
                                    np.zeros((1, 8, 8, 1), np.float32))
  # At the final classifier, the trained generator's poisons leave a higher
  # clean loss after the unrolled step than an untrained generator's
  # (measured at 300 steps: 1.21 against 1.10).
  trained = dc.unrolled_clean_loss(g, f, x[:500], y[:500], num_classes=10,
                                   config=cfg)
  untrained = dc.unrolled_clean_loss(g0, f, x[:500], y[:500],
                                     num_classes=10, config=cfg)
  assert trained > untrained
  xp = dc.deepconfuse_poison(g, x, config=cfg, chunk_size=500)
  diff = np.abs(xp.astype(int) - x.astype(int))
  assert diff.max() <= 76 and diff.mean() > 5
  g2, _, _ = dc.train_generator(x, y, jax.random.key(0), num_classes=10,
                                config=dataclasses.replace(cfg, steps=5))
  g3, _, _ = dc.train_generator(x, y, jax.random.key(0), num_classes=10,
                                config=dataclasses.replace(cfg, steps=5))
  for a, b in zip(jax.tree.leaves(g2), jax.tree.leaves(g3)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ConfigError):
    dc.DeepConfuseConfig(steps=0).validate()


def _mixed_set(x, y, ratio, num_attacks=4):
  """A poisoned set with ``num_attacks`` DURP-like attacks of different
  budgets (each a distinct marker), at ``ratio``."""
  ids = attacks.assign_attacks(len(x), ratio, num_attacks, jax.random.key(3))
  xp = np.array(x)
  for a in range(num_attacks):
    rows = ids == a
    xp[rows] = attacks.durp_attack(x[rows], y[rows], jax.random.key(10 + a),
                                   num_classes=10, eps=0.1)
  meta = {"num_classes": 10, "ratio": ratio, "seed": 0,
          "attacks": [{"name": f"a{a}", "eps": 0.1}
                      for a in range(num_attacks)]}
  return attacks.PoisonedSet(xp, y, ids, np.arange(len(x)), meta)


def test_lower_ratio_keeps_a_nested_subset_with_the_mixed_shares(
    digits_splits):
  x, y = digits_splits.x_train, digits_splits.y_train
  n = len(x)
  full = _mixed_set(x, y, 1.0)
  key = jax.random.key(7)
  low = attacks.lower_ratio(full, 0.6, x, key)
  # The shares are those assign_attacks gives at 0.6 (round(0.6 n) poisons
  # split equally, the first shares one larger).
  want = attacks.assign_attacks(n, 0.6, 4, jax.random.key(0))
  assert low.counts() == {"clean": int(np.sum(want < 0)),
                          **{f"a{a}": int(np.sum(want == a))
                             for a in range(4)}}
  assert low.meta["ratio"] == 0.6
  assert low.meta["lowered_from"]["ratio"] == 1.0
  kept = low.attack_id >= 0
  # A kept example keeps its attack and its poisoned image; every other
  # example is the clean image again.
  np.testing.assert_array_equal(low.attack_id[kept], full.attack_id[kept])
  np.testing.assert_array_equal(low.x[kept], full.x[kept])
  np.testing.assert_array_equal(low.x[~kept], x[~kept])
  # Same key: the same set, and a lower ratio keeps a subset of it.
  again = attacks.lower_ratio(full, 0.6, x, key)
  np.testing.assert_array_equal(again.attack_id, low.attack_id)
  lower = attacks.lower_ratio(full, 0.3, x, key)
  assert np.all(kept[lower.attack_id >= 0])
  assert attacks.lower_ratio(full, 0.0, x, key).counts()["clean"] == n
  np.testing.assert_array_equal(attacks.lower_ratio(full, 1.0, x, key).x,
                                full.x)


def test_lower_ratio_refuses_bad_input(digits_splits):
  x, y = digits_splits.x_train, digits_splits.y_train
  half = _mixed_set(x, y, 0.5)
  key = jax.random.key(0)
  with pytest.raises(ConfigError, match="lowered"):
    attacks.lower_ratio(half, 0.8, x, key)
  with pytest.raises(ConfigError, match="lowered"):
    attacks.lower_ratio(half, -0.1, x, key)
  other = np.array(x)
  other[0] = 255 - other[0]
  with pytest.raises(DataError):
    attacks.lower_ratio(half, 0.2, other, key)
  with pytest.raises(DataError):
    attacks.lower_ratio(half, 0.2, x[:-1], key)
