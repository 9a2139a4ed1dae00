"""Markdown tables and plots from an experiment directory's results.

`collect` reads every ``experiment_*.json`` manifest of a directory and the
``result.json`` of each finished cell; the ``table*`` functions lay the
results out like the paper's tables (mean ± std over trials, the paper's
number beside); `write_report` writes ``report.md`` and the figures.
Nothing here prints.
"""

import json
import pathlib

import numpy as np

from hint_jax.errors import DataError
from hint_jax.experiment import configs
from hint_jax.pipeline import files


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
    m = _read_json(p, "experiment manifest")
    if not isinstance(m.get("cells"), list) or "table" not in m:
      raise DataError(f"the experiment manifest {p} has no table and cell "
                      "list; restore it or run the experiment again")
    manifests.append(m)
    for rec in m["cells"]:
      if rec["id"] in cells:
        continue
      res = out / rec["dir"] / "result.json"
      cells[rec["id"]] = dict(rec, result=(_read_json(res, "cell result")
                                           if res.exists() else None))
  return manifests, list(cells.values())


def _read_json(path, what):
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


def _accs(cells, **where):
  return [100 * c["result"]["test_accuracy"] for c in cells
          if c["result"] is not None
          and all(c[k] == v for k, v in where.items())]


def mean_std(values):
  """``(mean, sample std)`` over trials (std n-1; 0 for one trial); the
  tables and the error bars both use it."""
  values = np.asarray(values, np.float64)
  return (float(values.mean()),
          float(values.std(ddof=1)) if len(values) > 1 else 0.0)


def fmt(values, digits=2) -> str:
  """"mean ± std" (sample std, n-1) over trials, "mean" for one, "—" for
  none."""
  if not values:
    return "—"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  mean, std = mean_std(values)
  return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"


def _md(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
  return "\n".join(lines)


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


def table2(manifests, cells) -> str:
  """Table II: test accuracy (%) per dataset, p and method, with the
  paper's figure in brackets, and HINT's recovery at the highest p."""
  cells = cells_of(manifests, "table2", cells)
  if not cells:
    return ""
  methods = methods_of(manifests, "table2", cells)
  parts = ["## Table II: test accuracy (%) under the mixed untargeted "
           "attack", "",
           "Ours first, the paper's in brackets; mean ± std over "
           "trials where there are several."]
  for dataset in ordered({c["dataset"] for c in cells}):
    ratios = sorted({c["ratio"] for c in cells if c["dataset"] == dataset})
    paper = configs.PAPER_TABLE2.get(dataset, {})
    rows = []
    for p in ratios:
      row = [f"{p:g}"]
      for m in methods:
        ours = fmt(_accs(cells, dataset=dataset, ratio=p, method=m))
        ref = paper.get(p, {}).get(m)
        row.append(ours + (f" [{ref:.2f}]" if ref is not None else ""))
      rows.append(row)
    parts += ["", f"### {dataset}", "", _md(["p"] + methods, rows)]
    rec = recovery(cells, dataset)
    if rec is not None:
      parts += ["", rec]
  return "\n".join(parts)


def table3(manifests, cells, table="table3") -> str:
  """Table III (or the targeted controls, ``table="controls_targeted"``):
  per method and targeted attack, the attack's successes out of the
  finished trials and the mean clean test accuracy, the paper's figure in
  brackets (Table III only); for the controls, each HINT variant's noise
  too."""
  verdicts = twin_verdicts(manifests, cells, table)
  twins = cells_of(manifests, table, cells, twins=True)
  cells = cells_of(manifests, table, cells)
  if not cells:
    return ""
  methods = methods_of(manifests, table, cells)
  attacks = [a for a in configs.TABLE3_ATTACKS
             if any(c["attack"] == a for c in cells)]
  paper = configs.PAPER_TABLE3 if table == "table3" else {}
  title = ("Table III: targeted attacks" if table == "table3" else
           "Controls against targeted attacks")
  parts = [f"## {title}, successes / trials (mean clean test accuracy %)",
           "",
           "A success: the victim gives the target test image the intended "
           "class and its clean twin (the same training, flags and seed, "
           "with every poison replaced by its clean image) does not; a hit "
           "the twin shares is listed apart (\"clean twin hits too\": not "
           "the poisons' doing), as is a hit whose twin has not run yet" +
           ("; ours first, the paper's (CIFAR-10) in brackets"
            if paper else "") +
           "; \"n/a\": not run for that scenario."]
  for dataset in ordered({c["dataset"] for c in cells}):
    rows = []
    for m in methods:
      row = [m]
      for a in attacks:
        mine = [c for c in cells if c["dataset"] == dataset
                and c["method"] == m and c["attack"] == a]
        fin = [c["result"] for c in mine if c["result"] is not None]
        if not mine:
          cell = "n/a"
        elif not fin:
          cell = "—"
        else:
          kinds = [verdicts.get((dataset, a, m, c["trial"]))
                   for c in mine if c["result"] is not None]
          acc = np.mean([100 * r["test_accuracy"] for r in fin])
          cell = f"{kinds.count('poisons')}/{len(fin)} ({acc:.2f})"
          extra = [f"+{kinds.count(k)} {what}" for k, what in (
              ("clean", "clean twin hits too"),
              ("unchecked", "twin pending")) if kinds.count(k)]
          if extra:
            cell += " " + ", ".join(extra)
        ref = paper.get(m, {}).get(a)
        row.append(cell + (f" [{ref}]" if ref else ""))
      rows.append(row)
    parts += ["", f"### {dataset}", "",
              _md(["method"] + [a.upper() for a in attacks], rows)]
    noise = ("" if table == "table3" else
             _noise_by_attack(cells, dataset, methods, attacks))
    if noise:
      parts += ["", noise]
    parts += ["", trials_table3(cells, dataset, methods, twins)]
  return "\n".join(parts)


def _noise_by_attack(cells, dataset, methods, attacks) -> str:
  """Each HINT variant's noise per attack, averaged over its finished
  trials: mean |delta| in grey levels / noised pixels at beta (%) / cosine
  toward the poisons' clean images (stored images)."""
  rows = []
  for m in methods:
    row, any_hint = [m], False
    for a in attacks:
      stats = [noise_stats(c["result"]) for c in cells
               if c["dataset"] == dataset and c["method"] == m
               and c["attack"] == a and c["result"]]
      stats = [x for x in stats if x]
      any_hint |= bool(stats)
      row.append(" / ".join(_mean_of([x[k] for x in stats], d) for k, d in (
          ("delta_levels", 2), ("at_beta", 1), ("restore_cosine", 3)))
                 if stats else "—")
    if any_hint:
      rows.append(row)
  if not rows:
    return ""
  return "\n".join([
      "The noise after HINT's last update: mean |δ| (grey levels) / pixels "
      "at β (%) / cosine of the noise with the way back to the poisons' "
      "clean images.", "",
      _md(["method"] + [a.upper() for a in attacks], rows)])


def trials_table3(cells, dataset, methods, twins=()) -> str:
  """Table III trial by trial: the target, the intended class, the clean
  crafting model's verdict (recorded by `target-poison` in the file's
  target metadata; "—" for files written before it was) and each method's
  verdict (and its clean twin's, from ``twins``), with the probability
  each model gives the intended class."""
  twin_of = {(c["attack"], c["method"], c["trial"]): c["result"]
             for c in twins if c["dataset"] == dataset and c["result"]}
  mine = [c for c in cells if c["dataset"] == dataset and c["result"]]
  trials = sorted({(configs.TABLE3_ATTACKS.index(c["attack"]), c["attack"],
                    c["trial"]) for c in mine})
  rows = []
  for _, attack, trial in trials:
    results = {c["method"]: c["result"] for c in mine
               if c["attack"] == attack and c["trial"] == trial}
    t = next(iter(results.values()))["target"]
    clean = t.get("crafting_model")
    row = [attack.upper(), str(trial),
           f"{t['index']} ({t['true_class']}) → {t['intended_class']}",
           "—" if clean is None else
           f"{clean['predicted']} ({clean['intended_probability']:.2g})"]
    for m in methods:
      r = results.get(m)
      v = None if r is None else r["target"]
      text = ("" if v is None else
              f"{'hit' if v['success'] else 'miss'}: {v['predicted']} "
              f"({v['intended_probability']:.2g})")
      noised = None if r is None else (r.get("hint") or {}).get("poisons")
      if noised is not None and noised["selected"]:
        text += (f"; {noised['selected']}/{noised['count']} poisons "
                 f"noised, {noised['levels_changed_mean_poisons']:.2f} "
                 "levels")
      elif noised is not None:
        text += f"; 0/{noised['count']} poisons noised"
      twin = twin_of.get((attack, m, trial))
      if twin is not None:
        tv = twin["target"]
        text += (f"; clean twin {'hit' if tv['success'] else 'miss'}: "
                 f"{tv['predicted']} ({tv['intended_probability']:.2g})")
      row.append(text)
    rows.append(row)
  return "\n".join([
      "Trial by trial: the target test image (its class) → the intended "
      "class; the prediction of the clean crafting model and of each "
      "victim, with the probability it gives the intended class in "
      "brackets (hit: the intended class). For HINT, where recorded: how "
      "many poisons it selected and noised, and their mean absolute change "
      "in grey levels. For a hit, its clean twin's verdict where it has "
      "run.", "",
      _md(["attack", "trial", "target", "clean"] + methods, rows)])


def recovery(cells, dataset):
  """A sentence on how much of the accuracy the attack removed HINT gets
  back at the highest p (the issue's target: 60%, the paper's share), or
  None without the cells it needs."""
  ratios = sorted({c["ratio"] for c in cells if c["dataset"] == dataset
                   and c["result"] is not None})
  if len(ratios) < 2 or ratios[0] != 0.0:
    return None
  top = ratios[-1]
  clean = _accs(cells, dataset=dataset, ratio=0.0, method="none")
  none = _accs(cells, dataset=dataset, ratio=top, method="none")
  hint = _accs(cells, dataset=dataset, ratio=top, method="HINT")
  clean_hint = _accs(cells, dataset=dataset, ratio=0.0, method="HINT")
  if not (clean and none and hint):
    return None
  lost = np.mean(clean) - np.mean(none)
  text = (f"At p = {top:g} the attack removes {lost:.2f} points "
          f"({np.mean(clean):.2f} → {np.mean(none):.2f}); HINT gets to "
          f"{np.mean(hint):.2f}")
  if lost > 0:
    share = (np.mean(hint) - np.mean(none)) / lost
    text += (f", recovering {100 * share:.0f}% of the loss (paper: 60% on "
             f"MNIST, 94% on CIFAR-10)")
  text += "."
  if clean_hint:
    text += (f" At p = 0, HINT − no defence = "
             f"{np.mean(clean_hint) - np.mean(clean):+.2f} points (target: "
             f"within 0.5).")
  return text


def beta_reach(out, cells, dataset, ratio, method="HINT"):
  """How far ``method``'s noise went in its finished cells at ``ratio``
  (any table's), read from each cell's noise file: ``(n cells, max |delta|
  in grey levels, pixels at or above 8/255, pixels at the cell's beta,
  noised pixels per cell)``, the counts as (min, max) over the cells;
  None without such a cell (or without ``out``)."""
  if out is None:
    return None
  found = []
  for c in cells:
    if (c["dataset"], c.get("ratio"), c["method"]) != (dataset, ratio,
                                                       method):
      continue
    noise = ((c["result"] or {}).get("hint") or {}).get("noise_file")
    path = pathlib.Path(out) / c["dir"] / noise if noise else None
    if path is None or not path.exists():
      continue
    with np.load(path) as f:
      levels = np.abs(f["delta"]) * 255.0
      beta = float(f["beta"]) * 255.0
    # 1e-3 levels: delta is float32; a pixel at the bound reads beta to
    # within rounding.
    found.append((float(levels.max()), int(np.sum(levels >= 8.0 - 1e-3)),
                  int(np.sum(levels >= beta - 1e-3)), levels.size))
  if not found:
    return None
  span = lambda i: (min(f[i] for f in found), max(f[i] for f in found))
  return (len(found), span(0)[1], span(1), span(2), found[0][3])


def table4(manifests, cells, out=None) -> str:
  """Table IV: HINT's accuracy (%) against r and beta; with ``out``, how
  far the default HINT's noise reaches at the paper's p = 0.6 (whether beta
  can matter there)."""
  all_cells = cells
  cells = cells_of(manifests, "table4", cells)
  if not cells:
    return ""
  methods = methods_of(manifests, "table4", cells)
  datasets = ordered({c["dataset"] for c in cells})
  header, rows = ["variant"], []
  for d in datasets:
    header.append(d)
    if out is not None:
      header.append(f"{d}: max \\|δ\\| (levels), values at β")
  for m in methods:
    row = [_variant(m)]
    for d in datasets:
      ratios = sorted({c["ratio"] for c in cells if c["dataset"] == d})
      ours = " / ".join(fmt(_accs(cells, dataset=d, ratio=p, method=m))
                        for p in ratios)
      ref = configs.PAPER_TABLE4.get(d, {}).get(m)
      row.append(ours + (f" [{ref[0]:.2f} ± {ref[1]:.2f}]" if ref else ""))
      if out is not None:
        reach = [beta_reach(out, cells, d, p, m) for p in ratios]
        row.append(" / ".join(
            "—" if r is None else f"{r[1]:.1f}, {_span(r[3])} of {r[4]}"
            for r in reach))
    rows.append(row)
  ratios = sorted({c["ratio"] for c in cells})
  parts = [
      "## Table IV: HINT against r and β", "",
      f"Test accuracy (%) at p = {', '.join(f'{p:g}' for p in ratios)}; "
      "the paper's (p = 0.6, five trials) in brackets. r at β = 16/255, "
      "β at r = 0.5."
      + (" Beside it, from each cell's noise file: the largest |δ| in grey "
         "levels and how many noised pixel values sit at β (a β no value "
         "reaches cannot have changed the run)." if out is not None else ""),
      "", _md(header, rows)]
  for d in datasets:
    for p in sorted({c["ratio"] for c in cells if c["dataset"] == d}):
      # The default HINT's spread over seeds at this ratio, from any
      # table's cells (table2 runs three): the yardstick for the variants'
      # single-seed differences.
      seeds = [100 * c["result"]["test_accuracy"] for c in all_cells
               if c["result"] is not None and c["dataset"] == d
               and c.get("ratio") == p and c["method"] == "HINT"]
      if len(seeds) > 1:
        mean, std = mean_std(seeds)
        parts += ["", (
            f"Seed noise ({d}, p = {p:g}): the default HINT over "
            f"{len(seeds)} seeds gives {mean:.2f} ± {std:.2f}%; variants "
            f"run with one seed, so differences under about {2 * std:.1f} "
            "points between rows cannot be told from seed noise.")]
  for d in datasets:
    reach = beta_reach(out, all_cells, d, 0.6)
    if reach is None or 0.6 in ratios:
      continue
    n, top, at8, at_beta, size = reach
    parts += ["", (
        f"Why not the paper's p = 0.6 ({d}): there HINT's noise (r = 0.5, "
        f"β = 16/255; {n} finished cell(s)) reaches at most {top:.1f} grey "
        f"levels; {at8[0]}-{at8[1]} of its {size} noised pixel values reach "
        f"8/255 and {at_beta[0]}-{at_beta[1]} reach β, so β between 8 and "
        f"64/255 can change at most {at8[1] / size:.1e} of them: the β "
        "column would measure seed noise.")]
  return "\n".join(parts)


def _span(lo_hi) -> str:
  lo, hi = lo_hi
  return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _variant(label):
  return "r = 0.5, β = 0.063" if label == "HINT" else label.replace(
      "HINT ", "").replace("=", " = ").replace("beta", "β")


def cell_seconds(c) -> float:
  """A cell's training time plus its defence's own time (the data loading,
  compilation outside the epochs and the final evaluation are left out;
  a transfer cell's training is its top layer's)."""
  r = c["result"]
  train = r["train_seconds"] if "train_seconds" in r else r.get(
      "top_layer_seconds", 0.0)
  return float(train) + float(r.get("defense_seconds") or 0.0)


def compute(manifest, cells) -> str:
  """One paragraph on what a profile's finished cells cost: their summed
  and median time (`cell_seconds`), per method, and the crafting commands'
  recorded wall time."""
  ids = {rec["id"] for rec in manifest["cells"]}
  done = [c for c in cells if c["id"] in ids and c["result"] is not None]
  if not done:
    return ""
  total = sum(cell_seconds(c) for c in done)
  per = []
  for m in methods_of([manifest], manifest["table"], done):
    secs = [cell_seconds(c) for c in done if c["method"] == m]
    per.append(f"{m} {np.median(secs) / 60:.1f} min ({len(secs)})")
  crafts = [s for cmd, s in manifest.get("command_seconds", [])
            if cmd.split()[1:2] in (["poison"], ["target-poison"])]
  text = (f"Compute: {len(done)} finished cells, {total / 3600:.2f} h of "
          f"training and defence in all; median per cell: "
          f"{', '.join(per)}.")
  if crafts:
    text += (f" Crafting recorded here: {sum(crafts) / 3600:.2f} h over "
             f"{len(crafts)} command(s).")
  return text + (" Times are this machine's, with whatever else ran "
                 "beside them (the results README says what).")


def table5(manifests, cells) -> str:
  """Table V: each method's wall time and its ratio to no defence."""
  cells = cells_of(manifests, "table5", cells)
  if not cells:
    return ""
  methods = methods_of(manifests, "table5", cells)
  parts = ["## Table V: wall time", "",
           "Median over trials of the training epochs plus the defence's "
           "own time, in seconds, and the ratio to no defence on the same "
           "machine; the paper's CIFAR-10 seconds on a V100 and their ratio "
           "beside. Cells ran at different times on a possibly shared "
           "machine: `hint-jax bench defenses` measures side by side."]
  p5 = configs.PAPER_TABLE5
  for dataset in ordered({c["dataset"] for c in cells}):
    done = [c for c in cells if c["dataset"] == dataset and c["result"]]
    base = [cell_seconds(c) for c in done if c["method"] == "none"]
    rows = []
    for m in methods:
      secs = [cell_seconds(c) for c in done if c["method"] == m]
      med = float(np.median(secs)) if secs else None
      ratio = (f"{med / np.median(base):.2f}x" if secs and base else "—")
      rows.append([m, "—" if med is None else f"{med:.1f}", ratio,
                   p5.get(m, "—"),
                   f"{p5[m] / p5['none']:.2f}x" if m in p5 else "—"])
    parts += ["", f"### {dataset}", "",
              _md(["method", "seconds", "ratio", "paper s", "paper ratio"],
                  rows)]
  return "\n".join(parts)


def noise_stats(result) -> dict:
  """What a HINT cell's noise was after its last update: mean |delta| in
  grey levels, the share of noised pixels at beta (%), the selected poisons
  and the restoration cosines (see `hint_jax.hint.HintUpdate`); {} for a
  cell without HINT updates."""
  updates = (result.get("hint") or {}).get("updates") or []
  if not updates:
    return {}
  u = updates[-1]
  return {"delta_levels": 255 * u["delta_abs_mean"],
          "at_beta": 100 * u["at_bound_fraction"],
          "poisons_selected": u.get("poisons_selected"),
          "num_selected": u["num_selected"],
          "restore_cosine": u.get("restore_cosine"),
          "restore_cosine_float": u.get("restore_cosine_float")}


def _mean_of(values, digits):
  values = [v for v in values if v is not None and np.isfinite(v)]
  return f"{np.mean(values):.{digits}f}" if values else "—"


def controls(manifests, cells) -> str:
  """The controls table: test accuracy of HINT and of each control, with
  what each one's noise was; and HINT against its random-sign twin."""
  cells = cells_of(manifests, "controls", cells)
  if not cells:
    return ""
  methods = methods_of(manifests, "controls", cells)
  parts = ["## Controls: HINT against noise of the same size", "",
           "Test accuracy (%, mean ± std over training seeds where there "
           "are several); after HINT's last update: mean |δ| in grey "
           "levels, the noised pixels at β (%), the selected examples that "
           "are poisons, and the cosine of the noise with the way back to "
           "the poisons' clean images (stored uint8 images / float δ; 1 "
           "straight back, 0 unrelated). 'random-sign': HINT's examples "
           "and per-pixel step sizes, random signs; 'random-subset': a "
           "random subset of the same size, HINT's noise."]
  for dataset in ordered({c["dataset"] for c in cells}):
    for p in sorted({c["ratio"] for c in cells if c["dataset"] == dataset},
                    reverse=True):
      rows = []
      for m in methods:
        done = [c["result"] for c in cells if c["dataset"] == dataset
                and c["ratio"] == p and c["method"] == m and c["result"]]
        stats = [noise_stats(r) for r in done]
        stats = [x for x in stats if x]
        col = lambda k, d=2: _mean_of([x[k] for x in stats], d)
        rows.append([m, fmt(_accs(cells, dataset=dataset, ratio=p,
                                  method=m)),
                     col("delta_levels"), col("at_beta", 1),
                     (f"{_mean_of([x['poisons_selected'] for x in stats], 0)}"
                      f" / {_mean_of([x['num_selected'] for x in stats], 0)}"
                      if stats else "—"),
                     col("restore_cosine", 3),
                     col("restore_cosine_float", 3)])
      parts += ["", f"### {dataset}, p = {p:g}", "",
                _md(["method", "test accuracy", "mean |δ| (levels)",
                     "at β (%)", "poisons / selected", "cos (stored)",
                     "cos (float)"], rows)]
      a = _accs(cells, dataset=dataset, ratio=p, method="HINT")
      b = _accs(cells, dataset=dataset, ratio=p, method="HINT random-sign")
      if a and b:
        parts += ["", f"HINT − random-sign = {np.mean(a) - np.mean(b):+.2f} "
                  f"points (HINT {fmt(a)}, random-sign {fmt(b)})."]
  return "\n".join(parts)


def ordered(datasets):
  order = {"mnist": 0, "cifar10": 1, "digits": 2}
  return sorted(datasets, key=lambda d: (order.get(d, 9), d))


def accuracy_vs_p(manifests, cells, path) -> bool:
  """Plots Table II's accuracy against p, one panel per dataset; returns
  False (writing nothing) without two ratios of results."""
  cells = [c for c in cells_of(manifests, "table2", cells) if c["result"]]
  datasets = [d for d in ordered({c["dataset"] for c in cells})
              if len({c["ratio"] for c in cells if c["dataset"] == d}) > 1]
  if not datasets:
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  methods = methods_of(manifests, "table2", cells)
  fig, axes = plt.subplots(1, len(datasets), squeeze=False,
                           figsize=(4.8 * len(datasets), 3.6))
  for ax, d in zip(axes[0], datasets):
    for m in methods:
      ratios = sorted({c["ratio"] for c in cells
                       if c["dataset"] == d and c["method"] == m})
      if not ratios:
        continue
      means, stds = zip(*[mean_std(_accs(cells, dataset=d, ratio=p,
                                         method=m)) for p in ratios])
      ax.errorbar(ratios, means, yerr=stds, marker="o", capsize=3, label=m)
    paper = configs.PAPER_TABLE2.get(d, {})
    for m, style in (("none", "k:"), ("HINT", "r:")):
      pts = sorted((p, v[m]) for p, v in paper.items() if m in v)
      if pts:
        ax.plot(*zip(*pts), style, alpha=0.6, label=f"paper {m}")
    ax.set_title(d)
    ax.set_xlabel("poison ratio p")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.tight_layout()
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, plt, path):
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def hit_grid(manifests, cells, table="table3") -> dict:
  """Per dataset, the targeted attacks' outcome for every method (rows)
  and (attack, trial) (columns): ``{dataset: (methods, columns, grid)}``,
  ``grid[i][j]`` 1 for a hit (its clean twin missing or not yet run), 0.5
  for a hit its clean twin shares, 0 for a miss, None where the cell has
  not finished or does not exist."""
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
               for c in mine if c["result"] is not None}
    grid = [[outcome.get((m, a, t)) for a, t in columns] for m in methods]
    out[dataset] = (methods, columns, grid)
  return out


def hit_grid_figure(manifests, cells, path, table="table3") -> bool:
  """Draws `hit_grid` (one panel per dataset; red: the attack hit, orange:
  a hit the clean twin shares, green: it missed, grey: not run); False
  (nothing written) without results."""
  grids = {d: g for d, g in hit_grid(manifests, cells, table).items()
           if any(v is not None for row in g[2] for v in row)}
  if not grids:
    return False
  plt = _pyplot()
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(len(grids), 1, squeeze=False, figsize=(
      max(4.0, 0.5 * max(len(g[1]) for g in grids.values()) + 2.5),
      sum(0.45 * len(g[0]) + 1.2 for g in grids.values())))
  for ax, (dataset, (methods, columns, grid)) in zip(axes[:, 0],
                                                     grids.items()):
    values = np.array([[np.nan if v is None else v for v in row]
                       for row in grid], float)
    ax.imshow(np.ma.masked_invalid(values), vmin=0, vmax=1, aspect="auto",
              cmap=ListedColormap(["#4caf50", "#ffa726", "#e53935"]))
    ax.set_facecolor("#dddddd")
    ax.set_yticks(range(len(methods)), methods, fontsize=7)
    ax.set_xticks(range(len(columns)),
                  [f"{a.upper()} {t}" for a, t in columns], fontsize=7,
                  rotation=90)
    ax.set_title(f"{dataset}: red = the attack hit, orange = its clean "
                 "twin hits too, green = missed, grey = not run", fontsize=8)
  fig.tight_layout()
  _save(fig, plt, path)
  return True


def table4_figure(manifests, cells, path) -> bool:
  """Table IV as two lines per dataset: accuracy against r (at β = 16/255)
  and against β (at r = 0.5), mean ± std over trials, the paper's beside;
  False without results."""
  cells = [c for c in cells_of(manifests, "table4", cells) if c["result"]]
  if not cells:
    return False
  plt = _pyplot()
  datasets = ordered({c["dataset"] for c in cells})
  fig, axes = plt.subplots(len(datasets), 2, squeeze=False,
                           figsize=(8.4, 3.2 * len(datasets)))
  for row, d in zip(axes, datasets):
    for ax, (kind, label) in zip(row, (("r", "r (β = 16/255)"),
                                       ("β", "β × 255 (r = 0.5)"))):
      pts, paper = [], []
      for m in methods_of(manifests, "table4", cells):
        x = _axis_value(m, kind)
        if x is None:
          continue
        accs = _accs(cells, dataset=d, method=m)
        if accs:
          pts.append((x, *mean_std(accs)))
        ref = configs.PAPER_TABLE4.get(d, {}).get(m)
        if ref:
          paper.append((x, ref[0]))
      if pts:
        xs, means, stds = zip(*sorted(pts))
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3,
                    label="ours")
      if paper:
        ax.plot(*zip(*sorted(paper)), "r:", marker="x", label="paper")
      ax.set_xlabel(label)
      ax.set_ylabel("test accuracy (%)")
      ax.set_title(d, fontsize=9)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
  fig.tight_layout()
  _save(fig, plt, path)
  return True


def _axis_value(label, kind):
  """The r or β (in grey levels) a Table IV method varies, or None: the
  default HINT variant sits on both lines (r = 0.5, β = 16)."""
  if label == "HINT":
    return 0.5 if kind == "r" else 16.0
  if kind == "r" and label.startswith("HINT r="):
    return float(label.split("=")[1])
  if kind == "β" and label.startswith("HINT beta="):
    return float(round(float(label.split("=")[1]) * 255))
  return None


def table5_figure(manifests, cells, path) -> bool:
  """Table V as bars: each method's time over no defence's (median over
  trials), the paper's ratio beside; False without results."""
  cells = [c for c in cells_of(manifests, "table5", cells) if c["result"]]
  base = [cell_seconds(c) for c in cells if c["method"] == "none"]
  if not cells or not base:
    return False
  plt = _pyplot()
  methods = [m for m in methods_of(manifests, "table5", cells)
             if any(c["method"] == m for c in cells)]
  ours = [float(np.median([cell_seconds(c) for c in cells
                           if c["method"] == m]) / np.median(base))
          for m in methods]
  p5 = configs.PAPER_TABLE5
  paper = [p5[m] / p5["none"] if m in p5 else np.nan for m in methods]
  x = np.arange(len(methods))
  fig, ax = plt.subplots(figsize=(1.1 * len(methods) + 2.0, 3.2))
  ax.bar(x - 0.2, ours, 0.4, label="ours (this machine)")
  ax.bar(x + 0.2, paper, 0.4, label="paper (V100)")
  ax.set_xticks(x, methods, fontsize=8)
  ax.set_ylabel("time / no defence")
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=7)
  fig.tight_layout()
  _save(fig, plt, path)
  return True


def training_curves(result_dir, path) -> bool:
  """A cell's test accuracy per epoch, HINT's update epochs marked (the
  update runs before the marked epoch); False without per-epoch test
  accuracy."""
  result_dir = pathlib.Path(result_dir)
  metrics = result_dir / "metrics.jsonl"
  if not metrics.exists():
    return False
  history = [json.loads(line) for line in metrics.read_text().splitlines()
             if line.strip()]
  pts = [(r["epoch"], 100 * r["test_accuracy"]) for r in history
         if r.get("test_accuracy") is not None]
  if not pts:
    return False
  result = _read_json(result_dir / "result.json", "result") if (
      result_dir / "result.json").exists() else {}
  schedule = ((result.get("hint") or {}).get("config") or {}).get(
      "schedule", [])
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(4.8, 3.2))
  ax.plot(*zip(*pts), marker="o")
  for e in schedule:
    ax.axvline(e + 1, color="r", ls=":", alpha=0.7)
  ax.set_xlabel("epoch (dotted: a HINT update before it)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(result_dir.name, fontsize=7)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  _save(fig, plt, path)
  return True


def pick_test_images(pred_none, y, num):
  """Test indices for Fig. 2: the first ``num`` (by index) that the
  undefended model gets wrong, then the first it gets right if too few."""
  wrong = np.flatnonzero(pred_none != y)
  right = np.flatnonzero(pred_none == y)
  return np.concatenate([wrong, right])[:num]


def predictions_figure(images, labels, rows, path, title):
  """Fig. 2: ``rows`` is a list of ``(method, probs)`` with probs
  (len(images), K); each method's predicted class and its probability under
  each image, green where the prediction is right."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = len(images)
  fig, axes = plt.subplots(1, n, figsize=(1.9 * n, 1.9 + 0.32 * len(rows)),
                           squeeze=False)
  for j in range(n):
    ax = axes[0, j]
    img = images[j]
    if img.shape[-1] == 1:
      ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
      ax.imshow(img)
    ax.set_title(f"Actual: {labels[j]}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    for i, (method, probs) in enumerate(rows):
      pred = int(np.argmax(probs[j]))
      ax.text(0.5, -0.12 - 0.16 * i, f"{pred} ({probs[j, pred]:.2f})",
              transform=ax.transAxes, ha="center", va="top", fontsize=8,
              color="green" if pred == labels[j] else "black")
      if j == 0:
        ax.text(-0.08, -0.12 - 0.16 * i, method, transform=ax.transAxes,
                ha="right", va="top", fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.subplots_adjust(left=0.14, right=0.98, top=0.8,
                      bottom=0.05 + 0.6 * len(rows) / (len(rows) + 6))
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ---------------------------------------------------------------- report
def figure2(out, manifests, cells, data_dir, num, fig_dir):
  """Fig. 2 per dataset at its highest p: the trial-0 model of each Table II
  method on the same test images. Returns the written paths."""
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline.figures import predict  # pylint: disable=g-import-not-at-top
  table2 = cells_of(manifests, "table2", cells)
  methods = methods_of(manifests, "table2", table2)
  written = []
  for dataset in ordered({c["dataset"] for c in table2}):
    done = [c for c in table2 if c["dataset"] == dataset and c["result"]
            and c["trial"] == 0 and _has_model(out, c)]
    if not done:
      continue
    top = max(c["ratio"] for c in done)
    by_method = {c["method"]: c for c in done if c["ratio"] == top}
    if "none" not in by_method or len(by_method) < 2:
      continue
    ds = data_lib.load_dataset(dataset, data_dir)
    probs = {}
    for m in methods:
      if m not in by_method:
        continue
      settings, params, model_state = checkpoint.read_final(
          out / by_method[m]["dir"])
      k = int(np.asarray(params["head"]["bias"]).shape[0])
      model = get_model(settings["model"], k, ds.x_test.shape[1:])
      probs[m] = predict(model, params, model_state, ds.x_test)
    idx = pick_test_images(probs["none"].argmax(1), ds.y_test, num)
    path = fig_dir / f"fig2_predictions_{dataset}.png"
    predictions_figure(
        ds.x_test[idx], ds.y_test[idx],
        [(m, p[idx]) for m, p in probs.items()], path,
        f"{dataset}, p = {top:g}: prediction (probability) of each "
        f"defence; first test images the undefended model gets wrong; "
        f"green = right")
    written.append(path)
  return written


def _has_model(out, cell) -> bool:
  """Whether a cell's folder still holds its trained model (committed
  results keep only their records; the figures that need a model skip
  those)."""
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  return (out / cell["dir"] / checkpoint.STATE_FILE).exists()


def curves(out, manifests, cells, fig_dir):
  """Training curves of Table II's trial-0 cells at the highest p, one per
  method (HINT's update epochs marked). Returns the written paths."""
  written = []
  table2 = [c for c in cells_of(manifests, "table2", cells) if c["result"]
            and c["trial"] == 0]
  for dataset in ordered({c["dataset"] for c in table2}):
    done = [c for c in table2 if c["dataset"] == dataset]
    top = max(c["ratio"] for c in done)
    for c in done:
      if c["ratio"] != top:
        continue
      path = fig_dir / f"curve_{c['id']}.png"
      if training_curves(out / c["dir"], path):
        written.append(path)
  return written


def figure1(out, manifests, cells, fig_dir):
  """Fig. 1 per dataset from the trial-0 HINT cell at the highest p."""
  from hint_jax.pipeline.figures import noise_figure  # pylint: disable=g-import-not-at-top
  written = []
  table2 = cells_of(manifests, "table2", cells)
  for dataset in ordered({c["dataset"] for c in table2}):
    hint = [c for c in table2 if c["dataset"] == dataset and c["result"]
            and c["method"] == "HINT" and c["trial"] == 0
            and c["result"].get("num_selected") and _has_model(out, c)]
    if not hint:
      continue
    cell = max(hint, key=lambda c: c["ratio"])
    path = fig_dir / f"fig1_noise_{dataset}.png"
    noise_figure(out / cell["dir"], path, num=4, pick="changed", seed=0)
    written.append(path)
  return written


def write_report(out, data_dir=None, num_images=5, tables=None):
  """Writes ``out/report.md`` (every table as far as its cells have
  finished, the paper's numbers beside, the profiles' descriptions, the
  commands that ran and the machine) and, under ``out/figures/``, the
  accuracy-versus-p plot, Fig. 1 (HINT's healthy noise) and Fig. 2 (each
  defence's prediction and confidence on the same ``num_images`` test
  images, read from ``data_dir``, default: the one the experiment
  recorded). With ``tables`` (names, e.g. ``["table4"]``), only those
  tables' profiles, written to ``out/report_<tables>.md`` (the other
  tables' cells are still read where a table refers to them). Returns
  ``(report path, figure paths, finished cells, cells)``."""
  out = pathlib.Path(out)
  manifests, cells = collect(out)
  if tables:
    have = sorted({m["table"] for m in manifests})
    unknown = sorted(set(tables) - set(have))
    if unknown:
      raise DataError(f"{out} has no {', '.join(unknown)} results (it has "
                      f"{', '.join(have)})")
    manifests = [m for m in manifests if m["table"] in tables]
  fig_dir = out / "figures"
  if data_dir is None:
    data_dir = next((m.get("data_dir") for m in manifests
                     if m.get("data_dir")), None)
  listed = {rec["id"] for m in manifests for rec in m["cells"]}
  finished = sum(c["result"] is not None for c in cells if c["id"] in listed)
  parts = [f"# HINT experiments: {out.name}"
           + (f" ({', '.join(tables)})" if tables else ""), "",
           f"{finished} of {len(listed)} cells finished."]
  for text in (table2(manifests, cells), table3(manifests, cells),
               table4(manifests, cells, out),
               table5(manifests, cells), controls(manifests, cells),
               table3(manifests, cells, "controls_targeted")):
    if text:
      parts += ["", text]
  figures = []
  if accuracy_vs_p(manifests, cells, fig_dir / "accuracy_vs_p.png"):
    figures.append(fig_dir / "accuracy_vs_p.png")
  for name, draw in (
      ("table3_hits.png", lambda p: hit_grid_figure(manifests, cells, p)),
      ("controls_targeted_hits.png", lambda p: hit_grid_figure(
          manifests, cells, p, "controls_targeted")),
      ("table4.png", lambda p: table4_figure(manifests, cells, p)),
      ("table5.png", lambda p: table5_figure(manifests, cells, p))):
    if draw(fig_dir / name):
      figures.append(fig_dir / name)
  figures += curves(out, manifests, cells, fig_dir)
  figures += figure1(out, manifests, cells, fig_dir)
  figures += figure2(out, manifests, cells, data_dir, num_images, fig_dir)
  if figures:
    parts += ["", "## Figures", ""]
    parts += [f"![{f.stem}]({f.relative_to(out)})" for f in figures]
  parts += ["", "## Profiles, commands and machine"]
  for m in manifests:
    parts += ["", f"### {m['table']} / {m['profile']}", "",
              m.get("description", ""), "", "Commands run:", "", "```"]
    parts += [inv_line(i) for i in m.get("invocations", [])]
    parts += m.get("commands", []) + ["```"]
    spent = compute(m, cells)
    if spent:
      parts += ["", spent]
    mach = m.get("machine", {})
    parts += ["", f"Machine: {mach.get('platform')}, {mach.get('cpus')} "
              f"CPUs, backend {mach.get('backend')}, JAX "
              f"{mach.get('jax_version')}."]
  path = out / ("report.md" if not tables else
                f"report_{'_'.join(tables)}.md")
  files.write_bytes_atomic(path, ("\n".join(parts) + "\n").encode())
  return path, figures, finished, len(listed)


def inv_line(inv):
  return (f"# {' '.join(inv.get('argv') or [])}: started "
          f"{inv.get('started')}, finished {inv.get('finished')}, "
          f"{inv.get('cells_run')} cells run, {inv.get('cells_skipped')} "
          f"skipped")
