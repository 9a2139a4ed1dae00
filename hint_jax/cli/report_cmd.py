"""``hint-jax report DIR``: the paper's tables and figures from the results
of ``hint-jax experiment`` runs in DIR.

Writes ``DIR/report.md`` (Tables II, IV and V as far as their cells have
finished, with the paper's numbers beside, the profiles' descriptions, the
commands that ran and the machine) and, under ``DIR/figures/``, the
accuracy-versus-p plot, Fig. 1 (HINT's healthy noise) and Fig. 2 (each
defence's prediction and confidence on the same test images).
"""

import argparse
import pathlib

import numpy as np

from hint_jax.cli import checkpoint
from hint_jax.cli.common import info, positive_int
from hint_jax.experiment import report as rep


def register(sub):
  p = sub.add_parser("report", help="tables (markdown) and figures from an "
                     "experiment directory")
  p.add_argument("dir", help="the --out directory of `hint-jax experiment`")
  p.add_argument("--data-dir", default=None,
                 help="dataset files for Fig. 2's test images (default: the "
                 "one the experiment recorded, then $HINT_JAX_DATA_DIR)")
  p.add_argument("--num-images", type=positive_int, default=5,
                 help="test images in Fig. 2")
  p.set_defaults(func=run)


def figure2(out, manifests, cells, data_dir, num, fig_dir):
  """Fig. 2 per dataset at its highest p: the trial-0 model of each Table II
  method on the same test images. Returns the written paths."""
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.cli.figure_cmd import predict  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  table2 = rep.cells_of(manifests, "table2", cells)
  methods = rep.methods_of(manifests, "table2", table2)
  written = []
  for dataset in rep.ordered({c["dataset"] for c in table2}):
    done = [c for c in table2 if c["dataset"] == dataset and c["result"]
            and c["trial"] == 0]
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
    idx = rep.pick_test_images(probs["none"].argmax(1), ds.y_test, num)
    path = fig_dir / f"fig2_predictions_{dataset}.png"
    rep.predictions_figure(
        ds.x_test[idx], ds.y_test[idx],
        [(m, p[idx]) for m, p in probs.items()], path,
        f"{dataset}, p = {top:g}: prediction (probability) of each "
        f"defence; first test images the undefended model gets wrong; "
        f"green = right")
    written.append(path)
  return written


def figure1(out, manifests, cells, fig_dir):
  """Fig. 1 per dataset from the trial-0 HINT cell at the highest p."""
  from hint_jax.cli import figure_cmd  # pylint: disable=g-import-not-at-top
  written = []
  table2 = rep.cells_of(manifests, "table2", cells)
  for dataset in rep.ordered({c["dataset"] for c in table2}):
    hint = [c for c in table2 if c["dataset"] == dataset and c["result"]
            and c["method"] == "HINT" and c["trial"] == 0
            and c["result"].get("num_selected")]
    if not hint:
      continue
    cell = max(hint, key=lambda c: c["ratio"])
    path = fig_dir / f"fig1_noise_{dataset}.png"
    figure_cmd.run_noise(argparse.Namespace(
        run=str(out / cell["dir"]), num=4, pick="changed", seed=0,
        out=str(path)))
    written.append(path)
  return written


def run(args):
  out = pathlib.Path(args.dir)
  manifests, cells = rep.collect(out)
  fig_dir = out / "figures"
  data_dir = args.data_dir
  if data_dir is None:
    data_dir = next((m.get("data_dir") for m in manifests
                     if m.get("data_dir")), None)
  finished = sum(c["result"] is not None for c in cells)
  parts = [f"# HINT experiments: {out.name}", "",
           f"{finished} of {len(cells)} cells finished."]
  for text in (rep.table2(manifests, cells), rep.table3(manifests, cells),
               rep.table4(manifests, cells),
               rep.table5(manifests, cells), rep.controls(manifests, cells),
               rep.table3(manifests, cells, "controls_targeted")):
    if text:
      parts += ["", text]
  figures = []
  if rep.accuracy_vs_p(manifests, cells, fig_dir / "accuracy_vs_p.png"):
    figures.append(fig_dir / "accuracy_vs_p.png")
  figures += figure1(out, manifests, cells, fig_dir)
  figures += figure2(out, manifests, cells, data_dir, args.num_images,
                     fig_dir)
  if figures:
    parts += ["", "## Figures", ""]
    parts += [f"![{f.stem}]({f.relative_to(out)})" for f in figures]
  parts += ["", "## Profiles, commands and machine"]
  for m in manifests:
    parts += ["", f"### {m['table']} / {m['profile']}", "",
              m.get("description", ""), "", "Commands run:", "", "```"]
    parts += [inv_line(i) for i in m.get("invocations", [])]
    parts += m.get("commands", []) + ["```"]
    mach = m.get("machine", {})
    parts += ["", f"Machine: {mach.get('platform')}, {mach.get('cpus')} "
              f"CPUs, backend {mach.get('backend')}, JAX "
              f"{mach.get('jax_version')}."]
  path = out / "report.md"
  path.write_text("\n".join(parts) + "\n")
  info(f"report: {finished} of {len(cells)} cells finished")
  print(f"wrote {path}" + "".join(f", {f}" for f in figures))
  return 0


def inv_line(inv):
  return (f"# {' '.join(inv.get('argv') or [])}: started "
          f"{inv.get('started')}, finished {inv.get('finished')}, "
          f"{inv.get('cells_run')} cells run, {inv.get('cells_skipped')} "
          f"skipped")
