"""Attribution ground truth: the metrics against hand-computed values and
scipy, the many-models trainer against a hand-written SGD loop and against
one-at-a-time training, and the resumable job."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from hint_jax.attribution import groundtruth as gt
from hint_jax.attribution import metrics
from hint_jax.errors import ConfigError, DataError
from hint_jax.pipeline import groundtruth as pg

# ---------------------------------------------------------------- metrics


def test_rank_matches_scipy_with_ties():
  a = np.array([[3.0, 1.0, 2.0, 2.0, 5.0, 1.0],
                [0.0, 0.0, 0.0, 0.0, 1.0, -1.0]]).T
  want = np.stack([stats.rankdata(a[:, j]) for j in range(2)], axis=1)
  np.testing.assert_array_equal(metrics.rank(a, axis=0), want)
  np.testing.assert_array_equal(metrics.rank(a.T, axis=1), want.T)


def test_spearman_and_pearson_columns_match_scipy():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(30, 4))
  b = a + rng.normal(size=(30, 4))
  b[:5, 1] = b[0, 1]                       # ties
  for j in range(4):
    # float64 sums of 30 terms: agreement to ~1e-15, asserted at 1e-12.
    assert metrics.spearman_columns(a, b)[j] == pytest.approx(
        stats.spearmanr(a[:, j], b[:, j]).statistic, abs=1e-12)
    assert metrics.pearson_columns(a, b)[j] == pytest.approx(
        stats.pearsonr(a[:, j], b[:, j]).statistic, abs=1e-12)


def test_constant_columns_are_undefined():
  a = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 5.0]])
  b = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 9.0]])
  out = metrics.pearson_columns(a, b)
  assert np.isnan(out[0]) and out[1] == pytest.approx(
      np.corrcoef(a[:, 1], b[:, 1])[0, 1])
  s = metrics.summary(np.array([np.nan, 0.5, 0.7]))
  assert s["defined"] == 2 and s["undefined"] == 1
  assert s["mean"] == pytest.approx(0.6)


def test_lds_by_hand():
  # 3 training examples, 4 subsets, 2 test examples.
  scores = np.array([[1.0, 2.0, 4.0],      # test 0
                     [-1.0, 0.0, 1.0]])    # test 1
  masks = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]], bool)
  # Predicted sums, test 0: 3, 5, 6, 1; test 1: -1, 0, 1, -1.
  # Losses chosen so that -loss ranks test 0 exactly as predicted and test
  # 1 in reverse order of its distinct values.
  loss = np.array([[-3.0, 1.0], [-5.0, 0.0], [-6.0, -1.0], [-1.0, 2.0]])
  out = metrics.lds(scores, masks, loss)
  assert out[0] == pytest.approx(1.0)
  # test 1: predicted ranks (1.5, 3, 4, 1.5), -loss (-1, 0, 1, -2) ranks
  # (2, 3, 4, 1): Pearson of the ranks.
  want = np.corrcoef([1.5, 3, 4, 1.5], [2, 3, 4, 1])[0, 1]
  assert out[1] == pytest.approx(want)
  with pytest.raises(DataError, match="do not fit"):
    metrics.lds(scores, masks[:, :2], loss)
  # The summed test loss: summed scores per training example (0, 2, 5),
  # subset sums 2, 5, 7, 0; -summed loss 2, 5, 7, -1: the same order.
  assert metrics.lds_aggregate(scores, masks, loss) == pytest.approx(1.0)
  # Swap the last two subsets' losses: ranks (2, 3, 4, 1) against
  # (2, 3, 1, 4).
  swapped = loss[[0, 1, 3, 2]]
  want = np.corrcoef([2, 3, 4, 1], [2, 3, 1, 4])[0, 1]
  assert metrics.lds_aggregate(scores, masks, swapped) == pytest.approx(want)


def test_loo_correlation_by_hand_and_shapes():
  scores = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])   # (test, removed)
  change = np.array([[0.1, 0.5], [0.2, 0.4], [0.4, 0.1]])  # (removed, test)
  out = metrics.loo_correlation(scores, change)
  assert out[0] == pytest.approx(np.corrcoef([1, 2, 3], [0.1, 0.2, 0.4])[0, 1])
  assert out[1] == pytest.approx(np.corrcoef([3, 2, 1], [0.5, 0.4, 0.1])[0, 1])
  with pytest.raises(DataError, match="n_removed"):
    metrics.loo_correlation(scores, change[:2])


# ------------------------------------------------------------ the trainer


def test_masks():
  key = jax.random.key(3)
  m = gt.subset_masks(key, 11, 4, 0.5)
  assert m.shape == (4, 11) and (m.sum(1) == 5).all()
  np.testing.assert_array_equal(m, gt.subset_masks(key, 11, 4, 0.5))
  assert len({r.tobytes() for r in m}) > 1
  loo = gt.loo_masks(5, [0, 3])
  np.testing.assert_array_equal(loo.sum(1), [4, 4])
  assert not loo[0, 0] and not loo[1, 3]
  with pytest.raises(ConfigError):
    gt.subset_masks(key, 11, 4, 0.0)
  with pytest.raises(DataError):
    gt.loo_masks(5, [5])


def test_loo_order_is_the_full_order_without_the_example():
  key = jax.random.key(7)
  full, _ = gt._order(key, jnp.ones(9, bool), 9, 3, 3)  # pylint: disable=protected-access
  mask = np.ones(9, bool)
  mask[4] = False
  loo, w = gt._order(key, jnp.asarray(mask), 8, 3, 3)  # pylint: disable=protected-access
  full = np.asarray(full).ravel()
  np.testing.assert_array_equal(np.asarray(loo).ravel()[:8], full[full != 4])
  np.testing.assert_array_equal(np.asarray(w).ravel(), [1] * 8 + [0])


def _linear():
  def init(key):
    k1, k2 = jax.random.split(key)
    return {"w": jax.random.normal(k1, (3, 2)), "b": jax.random.normal(k2, (2,))}

  def loss(p, x, y, key):
    del key
    logits = x @ p["w"] + p["b"]
    return -jax.nn.log_softmax(logits)[jnp.arange(len(y)), y]

  return init, loss


@pytest.mark.parametrize("step_loop", ["scan", "host"])
def test_training_equals_a_hand_written_sgd_loop(step_loop):
  """One model, k = 7 examples in batches of 3 (last batch 1), momentum and
  weight decay, against numpy float64 with PyTorch's SGD rule; the steps
  in one compiled scan or called one by one."""
  x = np.random.default_rng(0).normal(size=(9, 3)).astype(np.float32)
  y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1], np.int32)
  mask = np.ones(9, bool)
  mask[[2, 6]] = False
  spec = gt.TrainSpec(epochs=2, batch_size=3, learning_rate=0.1,
                      momentum=0.9, weight_decay=0.01)
  init, loss = _linear()
  key = jax.random.key(0)
  got = gt.unstack(gt.train_models(init, loss, x, y, mask[None], [5], spec,
                                   key, step_loop=step_loop), 0)

  mk = jax.random.fold_in(key, 5)
  p = {k: np.asarray(v, np.float64)
       for k, v in init(jax.random.fold_in(mk, 0)).items()}
  v = {k: np.zeros_like(a) for k, a in p.items()}
  for e in range(2):
    idx, w = gt._order(jax.random.fold_in(jax.random.fold_in(mk, 1), e),  # pylint: disable=protected-access
                       jnp.asarray(mask), 7, 3, 3)
    for bi, bw in zip(np.asarray(idx), np.asarray(w)):
      bi = bi[bw > 0]
      xb, yb = x[bi].astype(np.float64), y[bi]
      logits = xb @ p["w"] + p["b"]
      prob = np.exp(logits - logits.max(1, keepdims=True))
      prob /= prob.sum(1, keepdims=True)
      d = prob.copy()
      d[np.arange(len(yb)), yb] -= 1
      d /= len(yb)
      g = {"w": xb.T @ d, "b": d.sum(0)}
      for k in p:
        g[k] = g[k] + 0.01 * p[k]
        v[k] = 0.9 * v[k] + g[k]
        p[k] = p[k] - 0.1 * v[k]
  for k in p:
    # float32 training against float64, 6 steps of lr 0.1 on O(1)
    # parameters: differences ~1e-7; asserted at 1e-5.
    np.testing.assert_allclose(np.asarray(got[k]), p[k], atol=1e-5)


@pytest.mark.parametrize("step_loop", ["scan", "host"])
def test_stacked_training_equals_one_at_a_time(step_loop):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(20, 3)).astype(np.float32)
  y = rng.integers(0, 2, 20).astype(np.int32)
  masks = gt.subset_masks(jax.random.key(1), 20, 3, 0.5)
  spec = gt.TrainSpec(epochs=3, batch_size=4, learning_rate=0.05,
                      momentum=0.5)
  init, loss = _linear()
  key = jax.random.key(2)
  stacked = gt.train_models(init, loss, x, y, masks, [0, 1, 2], spec, key,
                            step_loop=step_loop)
  for i in range(3):
    alone = gt.train_models(init, loss, x, y, masks[i:i + 1], [i], spec, key,
                            step_loop="scan")
    for a, b in zip(jax.tree.leaves(gt.unstack(stacked, i)),
                    jax.tree.leaves(gt.unstack(alone, 0))):
      # Same arithmetic, batched: XLA may order the batched products'
      # sums differently, float32 rounding only (measured: equal here).
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                 atol=1e-6)


def _batchnorm_model():
  """Dense - BatchNorm - ReLU - Dense on 3 features, as the stateful
  training contract takes it."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      h = nn.Dense(4)(x)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(h)
      return nn.Dense(2)(nn.relu(h))

  net = Net()

  def init(key):
    v = net.init(key, jnp.zeros((1, 3)))
    return v["params"], {"batch_stats": v["batch_stats"]}

  def loss(params, state, x, y, key):
    del key
    logits, new = net.apply({"params": params, **state}, x, train=True,
                            mutable=["batch_stats"])
    return (optax.softmax_cross_entropy_with_integer_labels(logits, y),
            {"batch_stats": new["batch_stats"]})
  return net, init, loss


@pytest.mark.parametrize("step_loop", ["scan", "host"])
def test_stateful_training_carries_the_statistics_step_by_step(step_loop):
  """A BatchNorm model: the stacked result equals one model at a time and
  a plain Python loop over the same batches (the module's own training
  step, its statistics carried along), and batches must be full."""
  net, init, loss = _batchnorm_model()
  rng = np.random.default_rng(3)
  x = rng.normal(2.0, 1.5, size=(16, 3)).astype(np.float32)
  y = rng.integers(0, 2, 16).astype(np.int32)
  masks = gt.subset_masks(jax.random.key(4), 16, 2, 0.5)   # k = 8
  spec = gt.TrainSpec(epochs=2, batch_size=4, learning_rate=0.1)
  key = jax.random.key(5)
  params, state = gt.train_models(init, loss, x, y, masks, [0, 1], spec, key,
                                  stateful=True, step_loop=step_loop)
  for i in range(2):
    mk = jax.random.fold_in(key, i)
    p, s = init(jax.random.fold_in(mk, 0))
    for e in range(2):
      idx, _ = gt._order(jax.random.fold_in(jax.random.fold_in(mk, 1), e),  # pylint: disable=protected-access
                         jnp.asarray(masks[i]), 8, 2, 4)
      for bi in np.asarray(idx):
        def objective(q, s=s, bi=bi):
          losses, new = loss(q, s, x[bi], y[bi], None)
          return jnp.mean(losses), new
        g, s = jax.grad(objective, has_aux=True)(p)
        p = jax.tree.map(lambda a, b: a - 0.1 * b, p, g)
    got = gt.unstack((params, state), i)
    # Same float32 arithmetic, batched under vmap: rounding only.
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves((p, s))):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                 atol=1e-6)
    # The statistics moved from their initial (0, 1).
    assert not np.allclose(np.asarray(got[1]["batch_stats"]["BatchNorm_0"]
                                      ["mean"]), 0.0)
  with pytest.raises(ConfigError, match="full batches"):
    gt.train_models(init, loss, x, y, masks, [0, 1],
                    gt.TrainSpec(1, 3, 0.1), key, stateful=True)


def test_trainer_refuses_unequal_masks():
  init, loss = _linear()
  x = np.zeros((4, 3), np.float32)
  y = np.zeros(4, np.int32)
  masks = np.array([[1, 1, 0, 0], [1, 1, 1, 0]], bool)
  with pytest.raises(DataError, match="same, positive number"):
    gt.train_models(init, loss, x, y, masks, [0, 1],
                    gt.TrainSpec(1, 2, 0.1), jax.random.key(0))
  with pytest.raises(ConfigError):
    gt.TrainSpec(0, 2, 0.1)
  with pytest.raises(ConfigError, match="step_loop must be"):
    gt.train_models(init, loss, x, y, masks[:1], [0],
                    gt.TrainSpec(1, 2, 0.1), jax.random.key(0),
                    step_loop="python")


# ------------------------------------------------------------------ the job


def test_job_resumes_to_the_same_arrays(tmp_path, monkeypatch):
  job = pg.GroundTruthJob(protocol="digits_lr", kind="lds", num_subsets=4,
                          seeds_per_subset=1, chunk=2)
  whole = pg.run_groundtruth(job, tmp_path / "whole")
  assert whole["models"] == 4

  real = gt.train_models
  calls = []

  def stop_second(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise KeyboardInterrupt
    return real(*args, **kwargs)

  monkeypatch.setattr(gt, "train_models", stop_second)
  with pytest.raises(KeyboardInterrupt):
    pg.run_groundtruth(job, tmp_path / "resumed")
  assert not (tmp_path / "resumed" / pg.LOSS_FILE).exists()
  assert len(list((tmp_path / "resumed" / "chunks").iterdir())) == 1
  monkeypatch.setattr(gt, "train_models", real)
  pg.run_groundtruth(job, tmp_path / "resumed")
  np.testing.assert_array_equal(
      np.load(tmp_path / "whole" / pg.LOSS_FILE),
      np.load(tmp_path / "resumed" / pg.LOSS_FILE))

  g = pg.load_groundtruth(tmp_path / "whole")
  assert g["masks"].shape == (4, 500) and g["test_loss"].shape == (4, 100)
  with pytest.raises(ConfigError, match="other settings"):
    pg.run_groundtruth(pg.GroundTruthJob(protocol="digits_lr",
                                         num_subsets=5), tmp_path / "whole")


def test_resume_with_a_fixed_normalisation(tmp_path, monkeypatch):
  # A protocol whose description holds tuples (MNIST's mean and std)
  # resumes: its settings are compared as JSON reads them back.
  import dataclasses  # pylint: disable=import-outside-toplevel
  fixed = dataclasses.replace(pg.PROTOCOLS["digits_lr"],
                              mean_std=(0.5, 0.25))
  monkeypatch.setitem(pg.PROTOCOLS, "digits_lr", fixed)
  job = pg.GroundTruthJob(protocol="digits_lr", kind="lds", num_subsets=2,
                          chunk=2)
  first = pg.run_groundtruth(job, tmp_path / "gt")
  again = pg.run_groundtruth(job, tmp_path / "gt")
  assert again["seconds_this_call"] == 0.0
  assert again["mean_test_accuracy"] == first["mean_test_accuracy"]


def test_loo_job_rows_and_change(tmp_path):
  job = pg.GroundTruthJob(protocol="digits_lr", kind="loo", num_removed=3,
                          chunk=8)
  rec = pg.run_groundtruth(job, tmp_path / "loo")
  assert rec["models"] == 4
  g = pg.load_groundtruth(tmp_path / "loo")
  assert g["removed"].shape == (3,) and g["loo_change"].shape == (3, 100)
  settings = json.loads((tmp_path / "loo" / "settings.json").read_text())
  assert settings["job"]["kind"] == "loo"
  assert "num_subsets" not in settings["job"]
  # One example of 500 moves a test loss by a small amount, not zero.
  assert 0 < np.abs(g["loo_change"]).max() < 0.5


def test_job_bad_settings_are_one_line(tmp_path):
  with pytest.raises(ConfigError, match="unknown protocol"):
    pg.run_groundtruth(pg.GroundTruthJob(protocol="nope"), tmp_path / "a")
  with pytest.raises(ConfigError, match="kind must be"):
    pg.run_groundtruth(pg.GroundTruthJob(protocol="digits_lr", kind="x"),
                       tmp_path / "a")
  # A BatchNorm protocol trains on full batches: 499 LOO examples or a
  # 0.41 subset (205) do not split into batches of 25; nothing is written.
  for kind, fraction in (("loo", 0.5), ("lds", 0.41)):
    with pytest.raises(ConfigError, match="full batches"):
      pg.run_groundtruth(pg.GroundTruthJob(protocol="digits_convnet",
                                           kind=kind, fraction=fraction),
                         tmp_path / "b")
    assert not (tmp_path / "b").exists()
  with pytest.raises(DataError, match="no finished ground truth"):
    pg.load_groundtruth(tmp_path)
