"""``hint-jax report DIR``: the paper's tables and figures from the results
of ``hint-jax experiment`` runs in DIR (`hint_jax.experiment.report`
writes them: ``DIR/report.md`` and ``DIR/figures/``)."""

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
  p.add_argument("--tables", default=None,
                 help="only these tables (comma list, e.g. table4), "
                 "written to DIR/report_<tables>.md")
  p.set_defaults(func=run)


def run(args):
  tables = (None if args.tables is None else
            [t.strip() for t in args.tables.split(",") if t.strip()])
  path, figures, finished, total = rep.write_report(
      args.dir, args.data_dir, args.num_images, tables)
  info(f"report: {finished} of {total} cells finished")
  print(f"wrote {path}" + "".join(f", {f}" for f in figures))
  return 0
