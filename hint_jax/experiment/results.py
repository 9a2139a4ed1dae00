"""An experiment directory's results, read and selected: the manifests and
cell results (`collect`), the cells of one table or method, mean ± std over
trials, and the targeted attacks' hits judged against their clean twins.
`report` lays these out as tables and `figures` draws them. Nothing here
prints.
"""

import json
import math
import pathlib

import numpy as np

from hint_jax.errors import DataError
from hint_jax.experiment import configs


def collect(out) -> tuple:
  """Returns ``(manifests, cells)``: the manifests (dicts) of ``out`` and
  one dict per distinct cell (the manifest's record plus ``result``, the
  parsed ``result.json`` or None while unfinished).

  Raises:
    DataError: if ``out`` holds no manifest.
  """
  out = pathlib.Path(out)
  paths = sorted(out.glob("experiment_*.json"))
  if not paths:
    raise DataError(f"{out} holds no experiment_*.json: run `hint-jax "
                    f"experiment TABLE --profile P --out {out}` first")
  manifests, cells = [], {}
  for p in paths:
    m = read_json(p, "experiment manifest")
    if not isinstance(m.get("cells"), list) or "table" not in m:
      raise DataError(f"the experiment manifest {p} has no table and cell "
                      "list; restore it or run the experiment again")
    manifests.append(m)
    for rec in m["cells"]:
      if rec["id"] in cells:
        continue
      res = out / rec["dir"] / "result.json"
      cells[rec["id"]] = dict(rec, result=(read_json(res, "cell result")
                                           if res.exists() else None))
  return manifests, list(cells.values())


def read_json(path, what):
  """A JSON file's content, or a DataError naming the file."""
  try:
    data = json.loads(path.read_text())
  except (OSError, UnicodeDecodeError, ValueError) as e:
    raise DataError(f"cannot read the {what} {path} "
                    f"({type(e).__name__}); restore it or run the "
                    "experiment again") from None
  if not isinstance(data, dict):
    raise DataError(f"the {what} {path} is not a JSON object")
  return data


def accs(cells, **where):
  """Test accuracies (%) of the finished cells whose fields equal
  ``where`` (a cell without such a field, e.g. a targeted cell's ratio,
  does not match)."""
  return [100 * c["result"]["test_accuracy"] for c in cells
          if c["result"] is not None
          and all(k in c and c[k] == v for k, v in where.items())]


def mean_std(values):
  """``(mean, sample std)`` over trials (std n-1; 0 for one trial); the
  tables and the error bars both use it."""
  values = np.asarray(values, np.float64)
  return (float(values.mean()),
          float(values.std(ddof=1)) if len(values) > 1 else 0.0)


def binomial_tail(k, n, p, upper=True) -> float:
  """Exact ``P(X >= k)`` (``upper``) or ``P(X <= k)`` for ``X ~
  Binomial(n, p)``."""
  ks = range(k, n + 1) if upper else range(0, k + 1)
  return float(min(1.0, sum(math.comb(n, i) * p**i * (1 - p)**(n - i)
                            for i in ks)))


def clopper_pearson(k, n, level=0.95) -> tuple:
  """The exact (Clopper-Pearson) two-sided ``level`` interval ``(lo, hi)``
  for a success rate seen as ``k`` of ``n``: ``lo`` is the rate at which
  ``k`` or more has probability ``(1 - level) / 2`` (0 for ``k = 0``),
  ``hi`` the rate at which ``k`` or fewer has (1 for ``k = n``). Found by
  bisection (both tails are monotone in the rate) to 1e-12."""
  if not 0 <= k <= n or n < 1:
    raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
  alpha = (1 - level) / 2

  def rate_where(tail, target):  # ``tail`` rises with the rate
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-12:
      mid = (lo + hi) / 2
      lo, hi = (mid, hi) if tail(mid) < target else (lo, mid)
    return (lo + hi) / 2

  lower = 0.0 if k == 0 else rate_where(
      lambda p: binomial_tail(k, n, p), alpha)
  # P(X <= k) = alpha  <=>  P(X >= k + 1) = 1 - alpha.
  upper = 1.0 if k == n else rate_where(
      lambda p: binomial_tail(k + 1, n, p), 1 - alpha)
  return lower, upper


def methods_of(manifests, table, cells):
  """Method labels in the order of the table's profiles, restricted to
  those with cells."""
  seen = []
  for m in manifests:
    if m["table"] != table:
      continue
    for rec in m["cells"]:
      if rec["method"] not in seen:
        seen.append(rec["method"])
  present = {c["method"] for c in cells}
  return [x for x in seen if x in present]


def cells_of(manifests, table, cells, twins=False):
  """The cells of ``table`` (its clean twins instead, with ``twins``)."""
  ids = {rec["id"] for m in manifests if m["table"] == table
         for rec in m["cells"]}
  return [c for c in cells
          if c["id"] in ids and bool(c.get("clean_twin")) == twins]


def twin_verdicts(manifests, cells, table="table3") -> dict:
  """``{(dataset, attack, method, trial): verdict}`` for every finished
  hit of ``table``: "poisons" where its clean twin (same flags and seed,
  the poisons replaced by their clean images) missed, "clean" where the
  twin hit too (the hit is not the poisons' doing), "unchecked" where the
  twin has not finished."""
  twins = {(c["dataset"], c["attack"], c["method"], c["trial"]): c
           for c in cells_of(manifests, table, cells, twins=True)}
  out = {}
  for c in cells_of(manifests, table, cells):
    if c["result"] is None or not c["result"]["target"]["success"]:
      continue
    where = (c["dataset"], c["attack"], c["method"], c["trial"])
    twin = twins.get(where)
    if twin is None or twin["result"] is None:
      out[where] = "unchecked"
    else:
      out[where] = ("clean" if twin["result"]["target"]["success"]
                    else "poisons")
  return out


def cell_seconds(c) -> float:
  """A cell's training time plus its defence's own time (the data loading,
  compilation outside the epochs and the final evaluation are left out;
  a transfer cell's training is its top layer's)."""
  r = c["result"]
  train = r["train_seconds"] if "train_seconds" in r else r.get(
      "top_layer_seconds", 0.0)
  own = r.get("defence_seconds", r.get("defense_seconds"))  # old spelling
  return float(train) + float(own or 0.0)


def ordered(datasets):
  order = {"mnist": 0, "cifar10": 1, "digits": 2}
  return sorted(datasets, key=lambda d: (order.get(d, 9), d))


PENDING = -1  # `hit_grid`: a listed cell that has not finished


def hit_grid(manifests, cells, table="table3") -> dict:
  """Per dataset, the targeted attacks' outcome for every method (rows)
  and (attack, trial) (columns): ``{dataset: (methods, columns, grid)}``,
  ``grid[i][j]`` 1 for a hit (its clean twin missing or not yet run), 0.5
  for a hit its clean twin shares, 0 for a miss, `PENDING` where the cell
  is listed but has not finished, None where no profile lists it (e.g.
  the baselines' later trials)."""
  verdicts = twin_verdicts(manifests, cells, table)
  cells = cells_of(manifests, table, cells)
  out = {}
  for dataset in ordered({c["dataset"] for c in cells}):
    mine = [c for c in cells if c["dataset"] == dataset]
    methods = methods_of(manifests, table, mine)
    attacks = [a for a in configs.TABLE3_ATTACKS
               if any(c["attack"] == a for c in mine)]
    columns = [(a, t) for a in attacks
               for t in sorted({c["trial"] for c in mine
                                if c["attack"] == a})]
    outcome = {(c["method"], c["attack"], c["trial"]):
               (0 if not c["result"]["target"]["success"] else
                0.5 if verdicts.get((dataset, c["attack"], c["method"],
                                     c["trial"])) == "clean" else 1)
               if c["result"] is not None else PENDING for c in mine}
    grid = [[outcome.get((m, a, t)) for a, t in columns] for m in methods]
    out[dataset] = (methods, columns, grid)
  return out
