"""How well attribution scores predict retraining: the field's two metrics.

Conventions (those of `core`): ``scores`` is (n_test, n_train) and a
positive score means the training example helps the test example, i.e. it
lowers the test loss.

* **LOO correlation** (Koh & Liang 2017; dattri's ``loo_corr``): for each
  test example, the Pearson correlation, over the removed training
  examples, between their scores and the actual change of the test loss
  when each is left out (``loss without z_i − loss with all``). Helpful
  examples raise the loss when removed, so a good estimator correlates
  positively.
* **LDS** (Park et al. 2023, TRAK; dattri's ``lds``): for each test example
  z, the Spearman correlation over m training subsets S_j between the
  prediction g_j = Σ_{i∈S_j} score(z, z_i) and the measured f_j = − test
  loss of the model(s) trained on S_j (higher when helpful examples are
  in the subset).

Both return one value per test example, NaN where it is undefined (a
constant column); `summary` reduces them. Ranks are average ranks for ties
(as ``scipy.stats.rankdata``). Plain numpy, float64.
"""

from typing import Dict

import numpy as np

from hint_jax.errors import DataError


def rank(a: np.ndarray, axis: int = 0) -> np.ndarray:
  """Average ranks (1 .. n, ties share the mean of their ranks) along
  ``axis``, float64."""
  a = np.moveaxis(np.asarray(a, np.float64), axis, -1)
  order = np.argsort(a, axis=-1, kind="stable")
  sorted_a = np.take_along_axis(a, order, axis=-1)
  n = a.shape[-1]
  out_sorted = np.empty(a.shape, np.float64)
  flat_sorted = sorted_a.reshape(-1, n)
  flat_out = out_sorted.reshape(-1, n)
  for row, values in zip(flat_out, flat_sorted):
    # Boundaries of runs of equal values; each run gets its mean rank.
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], n]
    row[:] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  ranks = np.empty_like(out_sorted)
  np.put_along_axis(ranks, order, out_sorted, axis=-1)
  return np.moveaxis(ranks, -1, axis)


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pearson correlation of each column of ``a`` with the same column of
  ``b`` (both (n, k)); NaN where a column is constant."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 2:
    raise DataError(f"pearson_columns: shapes {a.shape} and {b.shape} "
                    "must be equal and 2-D")
  a = a - a.mean(axis=0)
  b = b - b.mean(axis=0)
  den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, (a * b).sum(axis=0) / np.where(den > 0, den, 1),
                    np.nan)


def spearman_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Spearman correlation (Pearson of average ranks) column by column."""
  return pearson_columns(rank(a, 0), rank(b, 0))


def loo_correlation(scores: np.ndarray, loo_change: np.ndarray) -> np.ndarray:
  """Per test example, Pearson(scores[t, :], loo_change[:, t]).

  Args:
    scores: (n_test, n_removed): the scores of the removed training
      examples only (columns in the order of ``loo_change``'s rows).
    loo_change: (n_removed, n_test): test loss of the model trained without
      that example minus the test loss of the model trained on all.
  """
  scores = np.asarray(scores)
  loo_change = np.asarray(loo_change)
  if scores.ndim != 2 or scores.shape != loo_change.T.shape:
    raise DataError(f"loo_correlation: scores {scores.shape} must be "
                    f"(n_test, n_removed) and loo_change {loo_change.shape} "
                    "(n_removed, n_test)")
  return pearson_columns(scores.T, loo_change)


def lds(scores: np.ndarray, masks: np.ndarray,
        test_loss: np.ndarray) -> np.ndarray:
  """Linear datamodeling score per test example.

  Args:
    scores: (n_test, n_train).
    masks: (m, n_train) booleans: which training examples each subset holds.
    test_loss: (m, n_test): the test loss of the model trained on each
      subset (the mean over its seeds if several).
  """
  scores = np.asarray(scores, np.float64)
  masks = np.asarray(masks)
  test_loss = np.asarray(test_loss, np.float64)
  if (scores.ndim != 2 or masks.ndim != 2 or test_loss.ndim != 2
      or masks.shape[1] != scores.shape[1]
      or test_loss.shape != (masks.shape[0], scores.shape[0])):
    raise DataError(f"lds: scores {scores.shape} (n_test, n_train), masks "
                    f"{masks.shape} (m, n_train) and test_loss "
                    f"{test_loss.shape} (m, n_test) do not fit together")
  predicted = masks.astype(np.float64) @ scores.T       # (m, n_test)
  return spearman_columns(predicted, -test_loss)


def lds_aggregate(scores: np.ndarray, masks: np.ndarray,
                  test_loss: np.ndarray) -> float:
  """LDS of the *summed* test loss (one test function over every test
  example, as HINT scores its whole validation set): the Spearman
  correlation over subsets of each subset's summed scores (over its
  training examples and every test example) with minus its summed test
  loss. Arguments as `lds`; NaN when either side is constant."""
  scores = np.asarray(scores, np.float64)
  test_loss = np.asarray(test_loss, np.float64)
  return float(lds(scores.sum(0, keepdims=True), masks,
                   test_loss.sum(1, keepdims=True))[0])


def summary(values: np.ndarray) -> Dict[str, float]:
  """Mean, standard deviation, quartiles over the defined values, and how
  many were undefined (NaN)."""
  values = np.asarray(values, np.float64)
  ok = values[np.isfinite(values)]
  if ok.size == 0:
    return {"mean": float("nan"), "std": float("nan"), "q25": float("nan"),
            "median": float("nan"), "q75": float("nan"), "defined": 0,
            "undefined": int(values.size)}
  q25, med, q75 = np.percentile(ok, [25, 50, 75])
  return {"mean": float(ok.mean()), "std": float(ok.std(ddof=1))
          if ok.size > 1 else 0.0, "q25": float(q25), "median": float(med),
          "q75": float(q75), "defined": int(ok.size),
          "undefined": int(values.size - ok.size)}
