"""The validation fine-tune baseline for every finished cell of an
experiment folder: each cell's final model (its ``checkpoint.msgpack``)
fine-tuned on its own 1000 validation images alone, for each epoch count
(the cell's optimiser and batch size, seed 0), and the test accuracy after
each. Resumable: writes ``OUT/finetune/<cell id>.json`` atomically and
skips cells that have one; cells without a checkpoint (committed copies)
are listed and skipped.

  python experiments/finetune_cells.py --out runs/robust --data-dir DATA \\
      --table robustness --ratios 1 --epochs 1,2,5
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import validation_control  # pylint: disable=g-import-not-at-top,wrong-import-position

from hint_jax.experiment import results  # pylint: disable=wrong-import-position
from hint_jax.experiment.robustness import FINETUNE_DIR  # pylint: disable=wrong-import-position
from hint_jax.pipeline import files  # pylint: disable=wrong-import-position


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True, help="the experiment folder")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--table", default="robustness")
  p.add_argument("--ratios", default="1", help="comma list of p")
  p.add_argument("--epochs", default="1,2,5")
  args = p.parse_args()
  out = pathlib.Path(args.out)
  ratios = {float(r) for r in args.ratios.split(",")}
  counts = [int(e) for e in args.epochs.split(",")]
  manifests, cells = results.collect(out)
  listed = {rec["id"] for m in manifests if m["table"] == args.table
            for rec in m["cells"]}
  todo = [c for c in cells if c["id"] in listed and c["result"] is not None
          and c.get("ratio") in ratios]
  (out / FINETUNE_DIR).mkdir(exist_ok=True)
  for c in todo:
    target = out / FINETUNE_DIR / f"{c['id']}.json"
    cell_dir = out / c["dir"]
    if target.exists():
      continue
    if not (cell_dir / "checkpoint.msgpack").exists():
      print(f"{c['id']}: no checkpoint (a committed copy); skipped",
            flush=True)
      continue
    rec = validation_control.fine_tune(cell_dir, args.data_dir, counts, 0)
    rec["cell"] = c["id"]
    files.write_json_atomic(target, rec)
    print(json.dumps(rec), flush=True)


if __name__ == "__main__":
  main()
