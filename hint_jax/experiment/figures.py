"""The report's figures, PNG files from an experiment directory's results:
accuracy against p (Table II), the hit grid (Table III), Table IV's two
lines, Table V's bars, per-cell training curves with HINT's update epochs
marked, and the paper's Figs. 1 and 2. matplotlib is imported only when a
figure is drawn. Nothing here prints.
"""

import json
import pathlib

import numpy as np

from hint_jax.errors import DataError
from hint_jax.experiment import configs
from hint_jax.experiment import results
from hint_jax.pipeline import files


def accuracy_vs_p(manifests, cells, path) -> bool:
  """Plots Table II's accuracy against p, one panel per dataset; returns
  False (writing nothing) without two ratios of results."""
  cells = [c for c in results.cells_of(manifests, "table2", cells)
           if c["result"]]
  datasets = [d for d in results.ordered({c["dataset"] for c in cells})
              if len({c["ratio"] for c in cells if c["dataset"] == d}) > 1]
  if not datasets:
    return False
  plt = _pyplot()
  methods = results.methods_of(manifests, "table2", cells)
  fig, axes = plt.subplots(1, len(datasets), squeeze=False,
                           figsize=(4.8 * len(datasets), 3.6))
  for ax, d in zip(axes[0], datasets):
    for m in methods:
      ratios = sorted({c["ratio"] for c in cells
                       if c["dataset"] == d and c["method"] == m})
      if not ratios:
        continue
      means, stds = zip(*[results.mean_std(results.accs(
          cells, dataset=d, ratio=p, method=m)) for p in ratios])
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
  _save(fig, plt, path)
  return True


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, plt, path):
  files.make_out(pathlib.Path(path).parent)
  try:
    files.write_output(path, lambda p: fig.savefig(p, dpi=120),
                       "the same command")
  finally:
    plt.close(fig)


def hit_grid_figure(manifests, cells, path, table="table3") -> bool:
  """Draws `results.hit_grid` (one panel per dataset; red: the attack hit,
  orange: a hit the clean twin shares, green: it missed, grey: listed but
  not finished, blank: in no profile); False (nothing written) without
  finished cells."""
  grids = {d: g for d, g in results.hit_grid(manifests, cells, table).items()
           if any(v not in (None, results.PENDING)
                  for row in g[2] for v in row)}
  if not grids:
    return False
  plt = _pyplot()
  from matplotlib.colors import BoundaryNorm, ListedColormap  # pylint: disable=g-import-not-at-top
  colours = ListedColormap(["#bdbdbd", "#4caf50", "#ffa726", "#e53935"])
  # PENDING (-1), miss (0), the twin's hit too (0.5), hit (1).
  bins = BoundaryNorm([-1.5, -0.5, 0.25, 0.75, 1.5], colours.N)
  fig, axes = plt.subplots(len(grids), 1, squeeze=False, figsize=(
      max(4.0, 0.5 * max(len(g[1]) for g in grids.values()) + 2.5),
      sum(0.45 * len(g[0]) + 1.2 for g in grids.values())))
  for ax, (dataset, (methods, columns, grid)) in zip(axes[:, 0],
                                                     grids.items()):
    values = np.array([[np.nan if v is None else v for v in row]
                       for row in grid], float)
    ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap=colours,
              norm=bins)
    ax.set_facecolor("white")
    # Lines between the cells, so every trial reads as its own box.
    ax.set_xticks(np.arange(len(columns) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(methods) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    ax.set_yticks(range(len(methods)), methods, fontsize=7)
    ax.set_xticks(range(len(columns)),
                  [f"{a.upper()} {t}" for a, t in columns], fontsize=7,
                  rotation=90)
    ax.set_title(f"{dataset}: red = the attack hit, orange = its clean "
                 "twin hits too, green = missed, grey = not finished, "
                 "blank = not in the profile", fontsize=8)
  fig.tight_layout()
  _save(fig, plt, path)
  return True


def table4_figure(manifests, cells, path) -> bool:
  """Table IV as two panels per dataset: accuracy against r (at β = 16/255)
  and against β (at r = 0.5), mean ± std over trials, a line for HINT and
  one for its random-sign control where run, the paper's beside; False
  without results."""
  all_cells = cells
  cells = [c for c in results.cells_of(manifests, "table4", cells)
           if c["result"]]
  if not cells:
    return False
  plt = _pyplot()
  datasets = results.ordered({c["dataset"] for c in cells})
  methods = results.methods_of(manifests, "table4", cells)
  fig, axes = plt.subplots(len(datasets), 2, squeeze=False,
                           figsize=(8.4, 3.2 * len(datasets)))
  for row, d in zip(axes, datasets):
    ratios = sorted({c["ratio"] for c in cells if c["dataset"] == d})
    at = ", ".join(f"{p:g}" for p in ratios)
    # No defence at the same p, from any table's cells (table2's seeds).
    none = results.accs(all_cells, dataset=d, ratio=ratios[0],
                        method="none") if len(ratios) == 1 else []
    for ax, (kind, label) in zip(row, (("r", "r (β = 16/255)"),
                                       ("β", "β × 255 (r = 0.5)"))):
      lines, paper = {}, []
      for m in methods:
        for series, k, x in _axis_points(m):
          if k != kind:
            continue
          accs = results.accs(cells, dataset=d, method=m)
          if accs:
            lines.setdefault(series, []).append(
                (x, *results.mean_std(accs)))
          ref = configs.PAPER_TABLE4.get(d, {}).get(m)
          if ref:
            paper.append((x, ref[0]))
      for series, pts in lines.items():
        xs, means, stds = zip(*sorted(pts))
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3,
                    ls="-" if series == "HINT" else "--",
                    label=f"ours, {series} (p = {at})")
      if paper:
        ax.plot(*zip(*sorted(paper)), "r:", marker="x",
                label="paper, HINT (p = 0.6)")
      if none:
        mean, std = results.mean_std(none)
        ax.axhline(mean, color="grey", lw=1)
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15,
                   label=f"ours, no defence (p = {at}, n = {len(none)})")
      ax.set_xlabel(label)
      ax.set_ylabel("test accuracy (%)")
      ax.set_title(d, fontsize=9)
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
  fig.tight_layout()
  _save(fig, plt, path)
  return True


def _axis_points(label):
  """Where a Table IV method sits: ``[(series, "r" or "β", x)]``, β in
  grey levels, series "HINT" or "random signs"; the default HINT sits on
  both panels (r = 0.5, β = 16), its random-sign control (no β in its
  label) at β = 16; [] for any other label."""
  series, rest = "HINT", label
  if label.startswith("HINT random-sign"):
    series, rest = "random signs", "HINT" + label[len("HINT random-sign"):]
  if rest == "HINT":
    return ([(series, "r", 0.5)] if series == "HINT" else []) + [
        (series, "β", 16.0)]
  if rest.startswith("HINT r=") and series == "HINT":
    return [(series, "r", float(rest.split("=")[1]))]
  if rest.startswith("HINT beta="):
    return [(series, "β", float(round(float(rest.split("=")[1]) * 255)))]
  return []


def table5_figure(manifests, cells, path) -> bool:
  """Table V as bars: each method's time over no defence's (median over
  trials), the paper's ratio beside; False without results."""
  cells = [c for c in results.cells_of(manifests, "table5", cells)
           if c["result"]]
  base = [results.cell_seconds(c) for c in cells if c["method"] == "none"]
  if not cells or not base:
    return False
  methods = [m for m in results.methods_of(manifests, "table5", cells)
             if any(c["method"] == m for c in cells)]
  runs = {m: np.array([results.cell_seconds(c) for c in cells
                       if c["method"] == m]) / np.median(base)
          for m in methods}
  p5 = configs.PAPER_TABLE5
  _ratio_bars(runs, {m: p5[m] / p5["none"] for m in methods if m in p5},
              path, "ours (this machine; dots: each trial)",
              "paper (V100)")
  return True


def _ratio_bars(runs, paper, path, ours_label, paper_label, title=None):
  """Bars of each method's median of ``runs[m]`` (ratios to no defence,
  each run a dot on its bar) and ``paper[m]`` beside (none where missing),
  in ``runs``' order; returns ``{method: median}``."""
  methods = list(runs)
  ours = [float(np.median(runs[m])) for m in methods]
  plt = _pyplot()
  x = np.arange(len(methods))
  fig, ax = plt.subplots(figsize=(1.1 * len(methods) + 2.0, 3.2))
  ax.bar(x - 0.2, ours, 0.4, label=ours_label)
  for i, m in enumerate(methods):
    ax.plot(np.full(len(runs[m]), x[i] - 0.2), runs[m], "k.", ms=4)
  ax.bar(x + 0.2, [paper.get(m, np.nan) for m in methods], 0.4,
         label=paper_label)
  ax.set_xticks(x, methods, fontsize=8)
  ax.set_ylabel("time / no defence")
  if title:
    ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=7)
  fig.tight_layout()
  _save(fig, plt, path)
  return dict(zip(methods, ours))


def defence_bench_figure(record, path):
  """Table V as measured side by side: the record `hint_jax.bench.defences.
  defence_ratios` returns (or its JSON file, as `hint-jax bench defences
  --json` writes it) drawn as bars of each defence's median time over no
  defence's, every repeat's own ratio (its seconds over no defence's
  median) a dot on its bar, the paper's ratio beside. Returns the ratios
  drawn, ``{defence: median ratio}``.

  Raises:
    DataError: if the record (or file) is not such a record.
  """
  path = files.check_figure(path)
  if not isinstance(record, dict):
    record = results.read_json(pathlib.Path(record), "defence benchmark")
  d = record.get("defences", record.get("defenses"))   # or the old spelling
  if (not isinstance(d, dict) or "none" not in d or not all(
      isinstance(v, dict) and isinstance(v.get("seconds"), list)
      and v["seconds"] for v in d.values())):
    raise DataError("not a `hint-jax bench defences` record: it needs "
                    "'defences' with 'none' and each defence's 'seconds'")
  try:
    base = float(np.median(np.asarray(d["none"]["seconds"], float)))
    runs = {m: np.asarray(v["seconds"], float) / base for m, v in d.items()}
  except (TypeError, ValueError) as e:
    raise DataError(f"a defence benchmark's seconds are not numbers: {e}"
                    ) from e
  order = ("none", "hint", "friends", "atda", "epic")  # the paper's Table V
  runs = dict(sorted(runs.items(), key=lambda kv: (
      order.index(kv[0]) if kv[0] in order else len(order), kv[0])))
  paper = {"none": 1.0, **(record.get("paper_table_v") or {})}
  title = record.get("dataset") and (
      f"{record['dataset']}" + (f", {record['subset']} images"
                                if record.get("subset") else ""))
  return _ratio_bars(runs, paper, path,
                     f"ours ({record.get('backend', '?')}, median of "
                     f"{len(d['none']['seconds'])}; dots: each run)",
                     "paper (CIFAR-10, V100)", title)


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
  result = results.read_json(result_dir / "result.json", "result") if (
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
  plt = _pyplot()
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
  _save(fig, plt, path)


def figure2(out, manifests, cells, data_dir, num, fig_dir):
  """Fig. 2 per dataset at its highest p: the trial-0 model of each Table II
  method on the same test images. Returns the written paths."""
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline.figures import predict  # pylint: disable=g-import-not-at-top
  table2 = results.cells_of(manifests, "table2", cells)
  methods = results.methods_of(manifests, "table2", table2)
  written = []
  for dataset in results.ordered({c["dataset"] for c in table2}):
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
    path = fig_dir / f"fig2_predictions_{configs.dataset_slug(dataset)}.png"
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
  table2 = [c for c in results.cells_of(manifests, "table2", cells)
            if c["result"] and c["trial"] == 0]
  for dataset in results.ordered({c["dataset"] for c in table2}):
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
  table2 = results.cells_of(manifests, "table2", cells)
  for dataset in results.ordered({c["dataset"] for c in table2}):
    hint = [c for c in table2 if c["dataset"] == dataset and c["result"]
            and c["method"] == "HINT" and c["trial"] == 0
            and c["result"].get("num_selected") and _has_model(out, c)]
    if not hint:
      continue
    cell = max(hint, key=lambda c: c["ratio"])
    path = fig_dir / f"fig1_noise_{configs.dataset_slug(dataset)}.png"
    noise_figure(out / cell["dir"], path, num=4, pick="changed", seed=0)
    written.append(path)
  return written


def write_figures(out, manifests, cells, data_dir, num_images) -> list:
  """Every figure the results allow, under ``out/figures/``: accuracy
  against p, the hit grids, Tables IV and V, the training curves and
  Figs. 1 and 2 (``num_images`` test images read from ``data_dir``).
  Returns the written paths, in the report's order."""
  out = pathlib.Path(out)
  fig_dir = out / "figures"
  written = []
  for name, draw in (
      ("accuracy_vs_p.png", lambda p: accuracy_vs_p(manifests, cells, p)),
      ("table3_hits.png", lambda p: hit_grid_figure(manifests, cells, p)),
      ("controls_targeted_hits.png", lambda p: hit_grid_figure(
          manifests, cells, p, "controls_targeted")),
      ("table4.png", lambda p: table4_figure(manifests, cells, p)),
      ("table5.png", lambda p: table5_figure(manifests, cells, p))):
    if draw(fig_dir / name):
      written.append(fig_dir / name)
  written += curves(out, manifests, cells, fig_dir)
  written += figure1(out, manifests, cells, fig_dir)
  written += figure2(out, manifests, cells, data_dir, num_images, fig_dir)
  return written
