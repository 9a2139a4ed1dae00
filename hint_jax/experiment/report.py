"""Markdown tables from an experiment directory's results.

The ``table*`` functions lay the results (`hint_jax.experiment.results`)
out like the paper's tables (mean ± std over trials, the paper's number
beside); `write_report` writes ``report.md`` and, through
`hint_jax.experiment.figures`, the figures. Nothing here prints.
"""

import pathlib

import numpy as np

from hint_jax.errors import DataError
from hint_jax.experiment import configs
from hint_jax.experiment import figures as figures_lib
from hint_jax.experiment import results, robustness
from hint_jax.pipeline import files


def fmt(values, digits=2) -> str:
  """"mean ± std" (sample std, n-1) over trials, "mean" for one, "—" for
  none."""
  if not values:
    return "—"
  if len(values) == 1:
    return f"{values[0]:.{digits}f}"
  mean, std = results.mean_std(values)
  return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"


def _md(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
  return "\n".join(lines)


def table2(manifests, cells) -> str:
  """Table II: test accuracy (%) per dataset, p and method, with the
  paper's figure in brackets, and HINT's recovery at the highest p."""
  cells = results.cells_of(manifests, "table2", cells)
  if not cells:
    return ""
  methods = results.methods_of(manifests, "table2", cells)
  parts = ["## Table II: test accuracy (%) under the mixed untargeted "
           "attack", "",
           "Ours first, the paper's in brackets; mean ± std over "
           "trials where there are several."]
  for dataset in results.ordered({c["dataset"] for c in cells}):
    ratios = sorted({c["ratio"] for c in cells if c["dataset"] == dataset})
    paper = configs.PAPER_TABLE2.get(dataset, {})
    rows = []
    for p in ratios:
      row = [f"{p:g}"]
      for m in methods:
        ours = fmt(results.accs(cells, dataset=dataset, ratio=p, method=m))
        ref = paper.get(p, {}).get(m)
        row.append(ours + (f" [{ref:.2f}]" if ref is not None else ""))
      rows.append(row)
    parts += ["", f"### {dataset}", "", _md(["p"] + methods, rows)]
    diff = "\n\n".join(t for t in (
        versus_none(cells, dataset, methods),
        paired_versus_none(cells, dataset, methods)) if t)
    if diff:
      parts += ["", diff]
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
  verdicts = results.twin_verdicts(manifests, cells, table)
  twins = results.cells_of(manifests, table, cells, twins=True)
  cells = results.cells_of(manifests, table, cells)
  if not cells:
    return ""
  methods = results.methods_of(manifests, table, cells)
  attacks = [a for a in configs.TABLE3_ATTACKS
             if any(c["attack"] == a for c in cells)]
  papers = configs.PAPER_TABLE3 if table == "table3" else {}
  datasets = results.ordered({c["dataset"] for c in cells})
  title = ("Table III: targeted attacks" if table == "table3" else
           "Controls against targeted attacks")
  parts = [f"## {title}, successes / trials (mean clean test accuracy %)",
           "",
           "A success: the victim gives the target test image the intended "
           "class and its clean twin (the same training, flags and seed, "
           "with every poison replaced by its clean image) does not; a hit "
           "the twin shares is listed apart (\"clean twin hits too\": not "
           "the poisons' doing), as is a hit whose twin has not run yet, "
           "and neither counts in successes / trials (such a trial cannot "
           "test the defence)" +
           ("; ours first, the paper's in brackets"
            if any(d in papers for d in datasets) else "") +
           "; \"n/a\": not run for that scenario."]
  for dataset in datasets:
    paper = papers.get(dataset, {})
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
          # A trial whose clean twin hits too (or has not run) cannot
          # test the defence: left out of the count's numerator and
          # denominator alike, and listed beside it.
          tested = len(fin) - kinds.count("clean") - kinds.count("unchecked")
          cell = f"{kinds.count('poisons')}/{tested} ({acc:.2f})"
          extra = [f"+{kinds.count(k)} {what}" for k, what in (
              ("clean", "clean twin hits too"),
              ("unchecked", "twin pending")) if kinds.count(k)]
          if extra:
            cell += " " + ", ".join(extra)
        ref = paper.get(m, {}).get(a)
        row.append(cell + (f" [{ref[0]}/{ref[1]} ({ref[2]:.2f})]" if ref
                           else ""))
      rows.append(row)
    parts += ["", f"### {dataset}", "",
              _md(["method"] + [a.upper() for a in attacks], rows)]
    noise = ("" if table == "table3" else
             _noise_by_attack(cells, dataset, methods, attacks))
    if noise:
      parts += ["", noise]
    pooled = against_paper(cells, dataset, methods, attacks, verdicts,
                           paper)
    if pooled:
      parts += ["", pooled]
    parts += ["", trials_table3(cells, dataset, methods, twins)]
  return "\n".join(parts)


def against_paper(cells, dataset, methods, attacks, verdicts,
                  paper) -> str:
  """Table III's counts as rates: per method, the attacks' successes of
  the poisons' doing pooled over the finished trials (hits whose twin is
  pending left out), their exact 95% interval, the paper's count over the
  same attacks, and the one-sided exact binomial probability of a count
  at least as far from the paper's rate, on our side, were the paper's
  rate true here. "" without the paper's figures."""
  rows = []
  for m in methods:
    ref = {a: paper.get(m, {}).get(a) for a in attacks}
    done = [(a, c["trial"]) for a in attacks if ref[a] for c in cells
            if c["dataset"] == dataset and c["method"] == m
            and c["attack"] == a and c["result"] is not None]
    kinds = [verdicts.get((dataset, a, m, t)) for a, t in done]
    # The convention of the table's cells: trials whose clean twin hits
    # too, or has not run, are left out of both counts.
    n = len(done) - kinds.count("unchecked") - kinds.count("clean")
    if n == 0:
      continue
    k = kinds.count("poisons")
    used = sorted({a for a, _ in done}, key=attacks.index)
    hits, trials = (sum(ref[a][i] for a in used) for i in (0, 1))
    rate = hits / trials
    above = k / n > rate
    prob = results.binomial_tail(k, n, rate, upper=above)
    lo, hi = results.clopper_pearson(k, n)
    rows.append([m, "+".join(a.upper() for a in used), f"{k}/{n}",
                 f"{lo:.2f}-{hi:.2f}", f"{hits}/{trials} ({rate:.2f})",
                 f"{prob:.2g} ({'≥' if above else '≤'} {k})"])
  if not rows:
    return ""
  return "\n".join([
      "Pooled over the attacks (each trial one draw): our successes with "
      "their exact 95% interval (Clopper-Pearson), the paper's over the "
      "same attacks, and the probability of our count or one further from "
      "the paper's rate were that rate true here (exact binomial, one "
      "side). The settings are reduced from the paper's (the profile "
      "says how): a small probability says these settings do not behave "
      "as the paper's, not which is right.", "",
      _md(["method", "attacks", "ours", "95% interval", "paper",
           "P at the paper's rate"], rows)])


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


def _against_none(cells, dataset, methods, entry, intro) -> str:
  """A table of each defence against no defence at every p of
  ``dataset``: ``entry(p, method)`` is the cell's text or None (shown as
  "—"); rows without any entry are left out, and "" without any row."""
  ratios = sorted({c["ratio"] for c in cells if c["dataset"] == dataset
                   and "ratio" in c})
  others = [m for m in methods if m != "none"]
  rows = []
  for p in ratios:
    row = [entry(p, m) for m in others]
    if any(r is not None for r in row):
      rows.append([f"{p:g}"] + [r or "—" for r in row])
  if not rows:
    return ""
  return "\n".join([intro, "", _md(["p"] + others, rows)])


def versus_none(cells, dataset, methods) -> str:
  """Each defence minus no defence at the same p, where both have two or
  more seeds: the difference of the means ± its standard error
  ``sqrt(s1²/n1 + s2²/n2)`` (sample stds) and the difference in standard
  errors; "" where no p has that."""
  def entry(p, m):
    base = results.accs(cells, dataset=dataset, ratio=p, method="none")
    mine = results.accs(cells, dataset=dataset, ratio=p, method=m)
    if len(base) < 2 or len(mine) < 2:
      return None
    (m1, s1), (m0, s0) = results.mean_std(mine), results.mean_std(base)
    se = float(np.sqrt(s1**2 / len(mine) + s0**2 / len(base)))
    d = m1 - m0
    return f"{d:+.2f} ± {se:.2f}" + (f" ({d / se:+.1f} SE)" if se > 0
                                     else "")
  return _against_none(
      cells, dataset, methods, entry,
      "Each defence minus no defence at the same p (points; mean "
      "difference ± its standard error over the seeds, where both have "
      "two or more). With three seeds a side the standard error is itself "
      "rough: a difference under about two of them is not told apart from "
      "seed noise.")


def paired_versus_none(cells, dataset, methods) -> str:
  """Each defence minus no defence paired by training seed (the same
  seed trains both on the same batches): per p, every seed's difference,
  their mean and its 95% t interval; "" without two pairs anywhere."""
  def by_trial(p, m):
    return {c["trial"]: 100 * c["result"]["test_accuracy"] for c in cells
            if c["dataset"] == dataset and c.get("ratio") == p
            and c["method"] == m and c["result"] is not None
            and "trial" in c}

  def entry(p, m):
    base, mine = by_trial(p, "none"), by_trial(p, m)
    diffs = [mine[t] - base[t] for t in sorted(set(mine) & set(base))]
    if len(diffs) < 2:
      return None
    mean, lo, hi, _ = robustness.interval(diffs)
    return (f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}] ("
            + ", ".join(f"{d:+.2f}" for d in diffs) + ")")
  return _against_none(
      cells, dataset, methods, entry,
      "Paired by seed (each seed trains both arms on the same batches): "
      "each defence minus no defence, the mean with its 95% t interval "
      "and every seed's difference (points).")


def recovery(cells, dataset):
  """A sentence on how much of the accuracy the attack removed HINT gets
  back at the highest p (the issue's target: 60%, the paper's share), or
  None without the cells it needs."""
  ratios = sorted({c["ratio"] for c in cells if c["dataset"] == dataset
                   and c["result"] is not None})
  if len(ratios) < 2 or ratios[0] != 0.0:
    return None
  top = ratios[-1]
  clean = results.accs(cells, dataset=dataset, ratio=0.0, method="none")
  none = results.accs(cells, dataset=dataset, ratio=top, method="none")
  hint = results.accs(cells, dataset=dataset, ratio=top, method="HINT")
  clean_hint = results.accs(cells, dataset=dataset, ratio=0.0, method="HINT")
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
  """Table IV: HINT's accuracy (%) against r and beta, and the default
  HINT's seed spread at the same p where another table ran seeds; with
  ``out``, each variant's noise reach (where its noise file is kept) and
  how far the default HINT's noise reaches at the paper's p = 0.6 (whether
  beta can matter there)."""
  all_cells = cells
  cells = results.cells_of(manifests, "table4", cells)
  if not cells:
    return ""
  methods = results.methods_of(manifests, "table4", cells)
  datasets = results.ordered({c["dataset"] for c in cells})
  ratios_of = {d: sorted({c["ratio"] for c in cells if c["dataset"] == d})
               for d in datasets}
  # Each variant's noise reach, from the cells' noise files (a committed
  # snapshot keeps none: no column then).
  reach = {(d, p, m): beta_reach(out, cells, d, p, m)
           for d in datasets for p in ratios_of[d] for m in methods}
  show = any(r is not None for r in reach.values())
  header, rows = ["variant"], []
  for d in datasets:
    header += [d] + ([f"{d}: max \\|δ\\| (levels), values at β"] if show
                     else [])
  for m in methods:
    row = [_variant(m)]
    for d in datasets:
      ours = " / ".join(fmt(results.accs(cells, dataset=d, ratio=p, method=m))
                        for p in ratios_of[d])
      ref = configs.PAPER_TABLE4.get(d, {}).get(m)
      row.append(ours + (f" [{ref[0]:.2f} ± {ref[1]:.2f}]" if ref else ""))
      if show:
        row.append(" / ".join(
            "—" if r is None else f"{r[1]:.1f}, {_span(r[3])} of {r[4]}"
            for r in (reach[d, p, m] for p in ratios_of[d])))
    rows.append(row)
  ratios = sorted({c["ratio"] for c in cells})
  parts = [
      "## Table IV: HINT against r and β", "",
      f"Test accuracy (%) at p = {', '.join(f'{p:g}' for p in ratios)}; "
      "the paper's (p = 0.6, five trials) in brackets. r at β = 16/255, "
      "β at r = 0.5."
      + (" Beside it, from each cell's noise file: the largest |δ| in grey "
         "levels and how many noised pixel values sit at β (a β no value "
         "reaches cannot have changed the run)." if show else ""),
      "", _md(header, rows)]
  for d in datasets:
    for p in ratios_of[d]:
      # The default HINT's spread over seeds at this ratio, from any
      # table's cells (table2 runs three): the yardstick for the variants'
      # single-seed differences.
      seeds = results.accs(all_cells, dataset=d, ratio=p, method="HINT")
      if len(seeds) > 1:
        mean, std = results.mean_std(seeds)
        none = results.accs(all_cells, dataset=d, ratio=p, method="none")
        parts += ["", (
            f"Seed noise ({d}, p = {p:g}): the default HINT over "
            f"{len(seeds)} seeds gives {mean:.2f} ± {std:.2f}%"
            + (f" (no defence: {fmt(none)})" if none else "") +
            "; variants run with one seed, so differences under about "
            f"{2 * std:.1f} points between rows cannot be told from seed "
            "noise.")]
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
  """A Table IV row's name: what the variant sets, comma-separated (the
  defaults spelled out for the default HINT and its random-sign control),
  e.g. "random-sign, β = 0.251"."""
  name = label.replace("HINT", "", 1).strip()
  if name in ("", "random-sign"):
    name = f"{name} r=0.5 beta=0.063".strip()
  return ", ".join(part.replace("=", " = ").replace("beta", "β")
                   for part in name.split())


def compute(manifest, cells) -> str:
  """One paragraph on what a profile's finished cells cost: their summed
  and median time (`results.cell_seconds`), per method (per attack and
  method for a targeted table, whose attacks' cells differ a hundredfold),
  and the crafting commands' recorded wall time."""
  ids = {rec["id"] for rec in manifest["cells"]}
  done = [c for c in cells if c["id"] in ids and c["result"] is not None]
  if not done:
    return ""
  total = sum(results.cell_seconds(c) for c in done)
  attacks = [a for a in configs.TABLE3_ATTACKS
             if any(c.get("attack") == a for c in done)] or [None]
  per = []
  for a in attacks:
    mine = [c for c in done if c.get("attack") == a]
    items = []
    for m in results.methods_of([manifest], manifest["table"], mine):
      secs = [results.cell_seconds(c) for c in mine if c["method"] == m]
      items.append(f"{m} {_duration(np.median(secs))} ({len(secs)})")
    per.append((f"{a.upper()}: " if a else "") + ", ".join(items))
  crafts = [s for cmd, s in manifest.get("command_seconds", [])
            if cmd.split()[1:2] in (["poison"], ["target-poison"])]
  text = (f"Compute: {len(done)} finished cells, {total / 3600:.2f} h of "
          f"training and defence in all; median per cell: "
          f"{'; '.join(per)}.")
  if crafts:
    text += (f" Crafting recorded here: {sum(crafts) / 3600:.2f} h over "
             f"{len(crafts)} command(s).")
  return text + (" Times are this machine's, with whatever else ran "
                 "beside them (the results README says what).")


def _duration(seconds) -> str:
  return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def table5(manifests, cells) -> str:
  """Table V: each method's wall time and its ratio to no defence."""
  cells = results.cells_of(manifests, "table5", cells)
  if not cells:
    return ""
  methods = results.methods_of(manifests, "table5", cells)
  parts = ["## Table V: wall time", "",
           "Median over trials of the training epochs plus the defence's "
           "own time, in seconds, and the ratio to no defence on the same "
           "machine; the paper's CIFAR-10 seconds on a V100 and their ratio "
           "beside. Cells ran at different times on a possibly shared "
           "machine: `hint-jax bench defences` measures side by side."]
  p5 = configs.PAPER_TABLE5
  for dataset in results.ordered({c["dataset"] for c in cells}):
    done = [c for c in cells if c["dataset"] == dataset and c["result"]]
    base = [results.cell_seconds(c) for c in done if c["method"] == "none"]
    rows = []
    for m in methods:
      secs = [results.cell_seconds(c) for c in done if c["method"] == m]
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
  cells = results.cells_of(manifests, "controls", cells)
  if not cells:
    return ""
  methods = results.methods_of(manifests, "controls", cells)
  parts = ["## Controls: HINT against noise of the same size", "",
           "Test accuracy (%, mean ± std over training seeds where there "
           "are several); after HINT's last update: mean |δ| in grey "
           "levels, the noised pixels at β (%), the selected examples that "
           "are poisons, and the cosine of the noise with the way back to "
           "the poisons' clean images (stored uint8 images / float δ; 1 "
           "straight back, 0 unrelated). 'random-sign': HINT's examples "
           "and per-pixel step sizes, random signs; 'random-subset': a "
           "random subset of the same size, HINT's noise."]
  for dataset in results.ordered({c["dataset"] for c in cells}):
    for p in sorted({c["ratio"] for c in cells if c["dataset"] == dataset},
                    reverse=True):
      rows = []
      for m in methods:
        done = [c["result"] for c in cells if c["dataset"] == dataset
                and c["ratio"] == p and c["method"] == m and c["result"]]
        stats = [noise_stats(r) for r in done]
        stats = [x for x in stats if x]
        col = lambda k, d=2: _mean_of([x[k] for x in stats], d)
        rows.append([m, fmt(results.accs(cells, dataset=dataset, ratio=p,
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
      a = results.accs(cells, dataset=dataset, ratio=p, method="HINT")
      b = results.accs(cells, dataset=dataset, ratio=p,
                       method="HINT random-sign")
      if a and b:
        parts += ["", f"HINT − random-sign = {np.mean(a) - np.mean(b):+.2f} "
                  f"points (HINT {fmt(a)}, random-sign {fmt(b)})."]
  return "\n".join(parts)


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
  manifests, cells = results.collect(out)
  files.check_out(out, "the experiment folder")   # written to below
  if tables:
    have = sorted({m["table"] for m in manifests})
    unknown = sorted(set(tables) - set(have))
    if unknown:
      raise DataError(f"{out} has no {', '.join(unknown)} results (it has "
                      f"{', '.join(have)})")
    manifests = [m for m in manifests if m["table"] in tables]
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
               table3(manifests, cells, "controls_targeted"),
               robustness.section(out, manifests, cells)):
    if text:
      parts += ["", text]
  figures = figures_lib.write_figures(out, manifests, cells, data_dir,
                                     num_images)
  if figures:
    parts += ["", "## Figures", ""]
    parts += [f"![{f.stem}]({f.relative_to(out)})" for f in figures]
  parts += ["", "## Profiles, commands and machine"]
  for m in manifests:
    parts += ["", f"### {m['table']} / {m['profile']}", "",
              m.get("description", "")]
    settings = m.get("settings") or {}
    if settings.get("data_sha256"):
      own = settings.get("datasets") or [settings.get("dataset")]
      parts += ["", f"Run on {', '.join(map(str, own))} (`--dataset`) "
                "instead of the dataset named above; its contents' sha256 "
                f"{settings['data_sha256']}."]
    parts += ["", "Commands run:", "", "```"]
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
  files.write_output(path, lambda p: files.write_bytes_atomic(
      p, ("\n".join(parts) + "\n").encode()), "the same report")
  return path, figures, finished, len(listed)


def inv_line(inv):
  return (f"# {' '.join(inv.get('argv') or [])}: started "
          f"{inv.get('started')}, finished {inv.get('finished')}, "
          f"{inv.get('cells_run')} cells run, {inv.get('cells_skipped')} "
          f"skipped")
