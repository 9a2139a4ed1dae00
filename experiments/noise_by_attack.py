"""What HINT's noise did to each attack's poisons in one trained cell.

For a `hint-jax train --defence hint --poison FILE` run (its
``hint_noise.npz``) and the poisoned set it trained on, per attack of the
set (and for the clean rows): how many rows HINT selected, the mean |delta|
of the float noise and of the stored change in grey levels, the share of
noised pixels at beta, and the cosine of the stored change with the way back
to the clean images (over all that attack's selected pixels together; 1 is
straight back, 0 unrelated, -1 further away).

  python experiments/noise_by_attack.py --cell runs/exp/cells/<id> \
      --poison runs/exp/poison/<set>/p1.npz --data-dir ../shared/data

Prints a JSON object (one entry per attack) and writes it to
``CELL/noise_by_attack.json``.
"""

import argparse
import json
import pathlib

import numpy as np

from hint_jax import attacks
from hint_jax import data as data_lib


def cosine(a, b):
  a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  return float(a @ b / (na * nb)) if na > 0 and nb > 0 else None


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--cell", required=True, help="the HINT cell's folder")
  p.add_argument("--poison", required=True, help="the poisoned set it used")
  p.add_argument("--data-dir", default=None)
  args = p.parse_args()
  cell = pathlib.Path(args.cell)
  result = json.loads((cell / "result.json").read_text())
  ps = attacks.load_poisoned(args.poison)
  dataset = data_lib.load_dataset(result["dataset"], args.data_dir)
  splits = data_lib.split_train_val(dataset, result["num_val"],
                                    result["split_seed"])
  with np.load(cell / "hint_noise.npz") as f:
    sel, x_orig, x_noised, delta = (f["selected"], f["x_orig"],
                                    f["x_noised"], f["delta"])
    beta = float(f["beta"])
  # Row i of the training split is poisoned by attack_id[j] where
  # clean_index[j] == i (-1: clean).
  attack_of = np.full(len(splits.x_train), -1)
  attack_of[ps.clean_index] = ps.attack_id
  names = [a["name"] for a in ps.meta["attacks"]]
  change = x_noised.astype(np.int16) - x_orig.astype(np.int16)
  toward = (splits.x_train[sel].astype(np.int16) - x_orig.astype(np.int16))
  out = {}
  for a, name in [(-1, "clean")] + list(enumerate(names)):
    rows = attack_of[sel] == a
    entry = {"selected": int(rows.sum()),
             "rows": int((attack_of == a).sum())}
    if rows.any():
      entry.update(
          delta_abs_mean_levels=float(255 * np.abs(delta[rows]).mean()),
          stored_change_abs_mean_levels=float(np.abs(change[rows]).mean()),
          at_beta=float(np.mean(np.abs(delta[rows]) >= beta)),
          restore_cosine=(None if a < 0 else
                          cosine(change[rows], toward[rows])),
          restore_cosine_float=(None if a < 0 else
                                cosine(-delta[rows], toward[rows])))
    out[name] = entry
  (cell / "noise_by_attack.json").write_text(json.dumps(out, indent=1) + "\n")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
