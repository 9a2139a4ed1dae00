"""Correlations and scatter plots of predicted vs actual effects.

Pearson and Spearman are computed here with NumPy (ties get their average
rank, as `scipy.stats.spearmanr`), so the library needs no SciPy. Plots are
made from the JSON-serialisable result (never by re-running), with
matplotlib's Agg canvas directly: no pyplot, no global backend state.
"""

import math
import pathlib

import numpy as np

_MARKERS = {"top": "o", "ipert": "o", "random": "x"}
_TITLES = {"loo": "leave-one-out", "pert": "input perturbation"}


def rankdata(a) -> np.ndarray:
  """Ranks 1..n of a 1-D array, ties sharing their average rank."""
  _, inverse, counts = np.unique(np.asarray(a), return_inverse=True,
                                 return_counts=True)
  ends = np.cumsum(counts)
  return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def pearson(a, b) -> float:
  """Pearson correlation; NaN for fewer than 2 points or no variance."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size < 2:
    return float("nan")
  a, b = a - a.mean(), b - b.mean()
  denom = math.sqrt(float(a @ a) * float(b @ b))
  return float(a @ b) / denom if denom > 0 else float("nan")


def spearman(a, b) -> float:
  """Spearman rank correlation: Pearson of the average ranks."""
  return pearson(rankdata(a), rankdata(b))


def summary(predicted, actual) -> dict:
  """Pearson, Spearman, count, least-squares slope of actual on predicted
  (through 0; 1 when the scale is right) and the fraction of equal signs."""
  pred = np.asarray(predicted, np.float64)
  act = np.asarray(actual, np.float64)
  slope = float(pred @ act / (pred @ pred)) if np.any(pred) else math.nan
  signs = (float(np.mean(np.sign(pred) == np.sign(act))) if pred.size
           else math.nan)
  return {"pearson": pearson(pred, act), "spearman": spearman(pred, act),
          "count": int(pred.size), "slope_actual_on_predicted": slope,
          "sign_agreement": signs}


def scatter(result: dict, study: str, path) -> pathlib.Path:
  """Writes predicted (x) vs actual (y) change of the test loss as a PNG.

  One colour per test point, one marker per kind of removal / direction,
  the line y = x, and the pooled Pearson and Spearman correlations in the
  title.

  Args:
    result: the dict returned by `influence_accuracy.run_study` (or read
      back from its JSON).
    study: "loo" or "pert".
    path: the PNG to write.

  Returns:
    The path written.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(6.0, 5.5), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  kind_key = "kind" if study == "loo" else "direction"
  lo, hi = np.inf, -np.inf
  for t, point in enumerate(result["test_points"]):
    data = point[study]
    pred, act = np.asarray(data["predicted"]), np.asarray(data["actual"])
    if not pred.size:
      continue
    lo = min(lo, pred.min(), act.min())
    hi = max(hi, pred.max(), act.max())
    kinds = np.asarray(data[kind_key])
    for kind in dict.fromkeys(kinds.tolist()):
      sel = kinds == kind
      ax.scatter(pred[sel], act[sel], s=18, color=f"C{t % 10}",
                 marker=_MARKERS.get(kind, "s"), alpha=0.8,
                 label=f"test {point['test_index']} ({kind})")
  if np.isfinite(lo):
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8,
            label="y = x")
  pooled = result[study]
  settings = result["settings"]
  ax.set_title(f"{settings['model']}, {_TITLES[study]} (n={pooled['count']})"
               f"\nPearson {pooled['pearson']:.5f}, Spearman "
               f"{pooled['spearman']:.5f}", fontsize=10)
  ax.set_xlabel("predicted change in test loss")
  ax.set_ylabel("actual change in test loss (retrained)")
  ax.ticklabel_format(style="sci", scilimits=(-3, 3))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=6, loc="upper left", ncol=2)
  fig.tight_layout()
  path = pathlib.Path(path)
  fig.savefig(path)
  return path
