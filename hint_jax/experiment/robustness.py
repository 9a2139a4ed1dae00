"""The robustness experiment's analysis (issue 40's plan, committed in
``experiments/results/robustness_cpu/README.md`` before its runs): paired
differences by (draw, seed), their 95% intervals, the decision rule, early
stopping on the validation accuracy, and validation fine-tuning. Nothing
here prints; `report` lays it out.

A cell's *draw* is its poison seed (the crafted set and its split); p = 0
cells have none and count as draw 0.
"""

import json
import math
import pathlib

import numpy as np

from hint_jax.errors import DataError

# Student's t 0.975 quantiles for 1..30 degrees of freedom (two-sided 95%).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
         2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
         2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052,
         2.048, 2.045, 2.042)
FINETUNE_DIR = "finetune"


def t975(df: int) -> float:
  """The 0.975 quantile of Student's t with ``df`` degrees of freedom
  (table to 30, then the Cornish-Fisher expansion z + (z³ + z)/(4 df) +
  (5z⁵ + 16z³ + 3z)/(96 df²), within 1e-4 of the exact value)."""
  if df < 1:
    raise ValueError("a t interval needs at least two values")
  if df <= 30:
    return _T975[df - 1]
  z = 1.959964
  return (z + (z**3 + z) / (4 * df)
          + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2))


def interval(values):
  """``(mean, lower, upper, n)``: the 95% Student t interval of the mean
  of ``values``; (mean, nan, nan, 1) for one value."""
  v = np.asarray(values, np.float64)
  n = len(v)
  if n == 0:
    return (math.nan, math.nan, math.nan, 0)
  mean = float(v.mean())
  if n < 2:
    return (mean, math.nan, math.nan, 1)
  half = t975(n - 1) * float(v.std(ddof=1)) / math.sqrt(n)
  return (mean, mean - half, mean + half, n)


def verdict(lower: float, upper: float) -> str:
  """The plan's rule: "better" if the interval lies above 0, "worse" if
  below, else "not separated" ("—" without an interval)."""
  if math.isnan(lower) or math.isnan(upper):
    return "—"
  if lower > 0:
    return "better"
  if upper < 0:
    return "worse"
  return "not separated"


def draw_of(cell) -> int:
  """The cell's poison seed (0 for clean cells)."""
  poison = (cell.get("key") or {}).get("poison")
  return 0 if not poison else int(poison.get("seed", 0))


def read_metrics(out, cell) -> list:
  """The cell's ``metrics.jsonl`` rows (one per evaluated epoch)."""
  path = pathlib.Path(out) / cell["dir"] / "metrics.jsonl"
  try:
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.strip()]
  except (OSError, ValueError):
    raise DataError(f"cannot read {path}; restore it or run the cell "
                    "again") from None


def early_stopped(rows) -> tuple:
  """``(test accuracy %, epoch)`` at the epoch of the highest validation
  accuracy (the first such epoch): the model a defender holding the
  validation images would keep."""
  rows = [r for r in rows if "val_accuracy" in r and "test_accuracy" in r]
  if not rows:
    raise DataError("no epoch recorded both validation and test accuracy")
  best = max(range(len(rows)), key=lambda i: (rows[i]["val_accuracy"], -i))
  return 100 * rows[best]["test_accuracy"], rows[best]["epoch"]


def finetuned(out, cell) -> dict:
  """``{epochs: test accuracy %}`` of the cell's final model fine-tuned on
  the validation images (``OUT/finetune/<cell id>.json``), {} if not
  done."""
  path = pathlib.Path(out) / FINETUNE_DIR / f"{cell['id']}.json"
  if not path.exists():
    return {}
  rec = json.loads(path.read_text())
  return {int(k): 100 * v for k, v in rec["after"].items()}


def arm_values(out, cells, *, ratio, method, measure="last",
               finetune_epochs=None) -> dict:
  """``{(draw, trial): accuracy %}`` of the finished cells of ``method``
  at ``ratio``, measured at the last epoch ("last"), early-stopped
  ("early") or fine-tuned for ``finetune_epochs`` ("finetune"; cells not
  fine-tuned are left out)."""
  values = {}
  for c in cells:
    if (c.get("ratio") != ratio or c.get("method") != method
        or c.get("result") is None):
      continue
    key = (draw_of(c), c["trial"])
    if measure == "last":
      values[key] = 100 * c["result"]["test_accuracy"]
    elif measure == "early":
      values[key] = early_stopped(read_metrics(out, c))[0]
    elif measure == "finetune":
      got = finetuned(out, c).get(int(finetune_epochs))
      if got is not None:
        values[key] = got
    else:
      raise ValueError(f"unknown measure {measure!r}")
  return values


def paired(a: dict, b: dict) -> dict:
  """``{(draw, trial): a − b}`` over the keys both have."""
  return {k: a[k] - b[k] for k in sorted(set(a) & set(b))}


def summarise(diffs: dict) -> dict:
  """The plan's estimate of a paired difference: per draw the mean over
  seeds; the mean over draws with the t interval over the draw means
  (``draw_*``, the primary when there are two or more draws); the mean of
  all pairs with its t interval (``pair_*``); and each verdict."""
  draws = sorted({d for d, _ in diffs})
  per_draw = {d: float(np.mean([v for (dd, _), v in diffs.items()
                                if dd == d])) for d in draws}
  dm, dlo, dhi, dn = interval(list(per_draw.values()))
  pm, plo, phi, pn = interval(list(diffs.values()))
  return {"pairs": {f"{d}/{t}": v for (d, t), v in diffs.items()},
          "per_draw": per_draw, "draws": dn, "draw_mean": dm,
          "draw_lower": dlo, "draw_upper": dhi,
          "draw_verdict": verdict(dlo, dhi), "pair_count": pn,
          "pair_mean": pm, "pair_lower": plo, "pair_upper": phi,
          "pair_verdict": verdict(plo, phi)}


# ------------------------------------------------------------ the report
def _fmt_interval(mean, lower, upper):
  if math.isnan(mean):
    return "—"
  if math.isnan(lower):
    return f"{mean:+.2f}"
  return f"{mean:+.2f} [{lower:+.2f}, {upper:+.2f}]"


def _arm(out, cells, ratio, method, measure="last", epochs=None):
  return arm_values(out, cells, ratio=ratio, method=method, measure=measure,
                    finetune_epochs=epochs)


# (row label, arm a, arm b): each arm (ratio, method, measure, fine-tune
# epochs); the difference is a − b, paired by (draw, seed).
COMPARISONS = (
    ("HINT − none (p = 1)", (1.0, "HINT", "last", None),
     (1.0, "none", "last", None)),
    ("HINT − random signs (p = 1)", (1.0, "HINT", "last", None),
     (1.0, "HINT random-sign", "last", None)),
    ("HINT − HINT negative (−I_pert)", (1.0, "HINT", "last", None),
     (1.0, "HINT negative", "last", None)),
    ("HINT − HINT random s_test", (1.0, "HINT", "last", None),
     (1.0, "HINT random s_test", "last", None)),
    ("HINT − HINT train-loss", (1.0, "HINT", "last", None),
     (1.0, "HINT train-loss", "last", None)),
    ("momentum 0.9: HINT − none", (1.0, "HINT momentum", "last", None),
     (1.0, "none momentum", "last", None)),
    ("momentum 0.9: HINT − random signs", (1.0, "HINT momentum", "last",
                                           None),
     (1.0, "HINT random-sign momentum", "last", None)),
    ("p = 0.95: HINT − none", (0.95, "HINT", "last", None),
     (0.95, "none", "last", None)),
    ("p = 0.9: HINT − none", (0.9, "HINT", "last", None),
     (0.9, "none", "last", None)),
    ("HINT − none early-stopped", (1.0, "HINT", "last", None),
     (1.0, "none", "early", None)),
    ("HINT early-stopped − none early-stopped", (1.0, "HINT", "early", None),
     (1.0, "none", "early", None)),
    ("HINT − none fine-tuned 1 epoch", (1.0, "HINT", "last", None),
     (1.0, "none", "finetune", 1)),
    ("HINT − none fine-tuned 2 epochs", (1.0, "HINT", "last", None),
     (1.0, "none", "finetune", 2)),
    ("HINT − none fine-tuned 5 epochs", (1.0, "HINT", "last", None),
     (1.0, "none", "finetune", 5)),
    ("HINT fine-tuned 2 − none fine-tuned 2", (1.0, "HINT", "finetune", 2),
     (1.0, "none", "finetune", 2)),
    ("random signs − none (p = 0)", (0.0, "HINT random-sign", "last", None),
     (0.0, "none", "last", None)),
)


def comparisons(out, cells) -> list:
  """Every comparison of `COMPARISONS` that has pairs: dicts with the
  label and `summarise`'s fields."""
  rows = []
  for label, a, b in COMPARISONS:
    diffs = paired(_arm(out, cells, *a), _arm(out, cells, *b))
    if diffs:
      rows.append(dict(summarise(diffs), label=label))
  return rows


def random_sign_hypothesis(summary: dict) -> str:
  """The plan's test of H (the harm of random signs is generic) on the
  p = 0 difference random signs − none: "supported" if its interval lies
  below 0, "rejected" if it contains 0 with a lower end above −1 point,
  else "undecided"."""
  lo, hi = summary["pair_lower"], summary["pair_upper"]
  if math.isnan(lo):
    return "undecided (fewer than two seeds)"
  if hi < 0:
    return "supported"
  if lo <= 0 <= hi and lo > -1.0:
    return "rejected"
  return "undecided"


def section(out, manifests, cells) -> str:
  """The robustness table's markdown ("" without its manifests)."""
  mine = [m for m in manifests if m["table"] == "robustness"]
  if not mine:
    return ""
  listed = {rec["id"] for m in mine for rec in m["cells"]}
  cells = [c for c in cells if c["id"] in listed]
  lines = ["## Robustness (issue 40)", "",
           "Test accuracy (%) after the 10th epoch, and early-stopped (the "
           "epoch of the best validation accuracy), by poison draw and "
           "training seed, p = 1:", ""]
  methods = ("none", "HINT", "HINT random-sign")
  last = {m: _arm(out, cells, 1.0, m) for m in methods}
  early = {}
  for m in methods:
    try:
      early[m] = _arm(out, cells, 1.0, m, "early")
    except DataError:
      early[m] = {}
  keys = sorted(set().union(*[set(v) for v in last.values()]))
  head = ["draw / seed"] + [f"{m}" for m in methods] + [
      f"{m} early" for m in methods]
  rows = [[f"{d} / {t}"] + [f"{last[m][(d, t)]:.2f}" if (d, t) in last[m]
                            else "" for m in methods]
          + [f"{early[m][(d, t)]:.2f}" if (d, t) in early[m] else ""
             for m in methods] for d, t in keys]
  lines += [_table(head, rows), ""]
  summaries = comparisons(out, cells)
  lines += ["Paired differences (points): per draw the mean over seeds; the "
            "mean over draws with its 95% t interval over the draw means "
            "(the plan's primary where there are two or more draws), and "
            "the mean of all pairs with its t interval; verdicts by the "
            "plan's rule (better / worse if the interval excludes 0).", ""]
  rows = []
  for s in summaries:
    per = ", ".join(f"{d}: {v:+.2f}" for d, v in s["per_draw"].items())
    rows.append([s["label"], str(s["pair_count"]), per,
                 _fmt_interval(s["draw_mean"], s["draw_lower"],
                               s["draw_upper"]), s["draw_verdict"],
                 _fmt_interval(s["pair_mean"], s["pair_lower"],
                               s["pair_upper"]), s["pair_verdict"]])
  lines += [_table(["comparison", "pairs", "per draw", "over draws",
                    "verdict", "over pairs", "verdict"], rows)]
  zero = next((s for s in summaries if s["label"].endswith("(p = 0)")),
              None)
  if zero is not None:
    lines += ["", "Why random signs hurt, hypothesis H (the harm is "
              "generic, not the poisons'): "
              f"{random_sign_hypothesis(zero)} by the plan's rule."]
  return "\n".join(lines)


def _table(header, rows):
  out = ["| " + " | ".join(header) + " |",
         "|" + "---|" * len(header)]
  out += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(out)
