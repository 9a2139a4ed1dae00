"""Copies the committed part of an experiment folder's tables into a
results folder: the tables' manifests, every listed cell's small files
(cell.json, result.json, metrics.jsonl, noise_by_attack.json; not the
checkpoints or noise files), the crafted sets' keys and metadata (not the
images), and each table's report with the figures it links.

Run `hint-jax report SRC --tables T` first for every table (the report
needs the checkpoints and noise files only SRC has); this copies
`report_<T>.md` as it is.

  python experiments/snapshot_results.py --src runs/exp \\
      --dst experiments/results/table2_cpu --tables table2:cpu
"""

import argparse
import json
import pathlib
import re
import shutil

from hint_jax import attacks
from hint_jax.experiment import configs

SMALL = ("cell.json", "result.json", "metrics.jsonl", "noise_by_attack.json")


def copy_table(src: pathlib.Path, dst: pathlib.Path, table: str,
               profile: str) -> int:
  """Copies one table's manifest and cells; returns the cells copied."""
  name = f"experiment_{table}_{profile}.json"
  manifest = json.loads((src / name).read_text())
  dst.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(src / name, dst / name)
  copied = 0
  for rec in manifest["cells"]:
    cell = src / rec["dir"]
    if not (cell / "result.json").exists():
      continue
    (dst / rec["dir"]).mkdir(parents=True, exist_ok=True)
    for f in SMALL:
      if (cell / f).exists():
        shutil.copyfile(cell / f, dst / rec["dir"] / f)
    copied += 1
  return copied


def used_poisons(src: pathlib.Path, pairs):
  """The crafted sets the tables' cells train on: untargeted set folders
  and targeted set ids."""
  folders, targeted = set(), set()
  for table, profile in pairs:
    manifest = json.loads(
        (src / f"experiment_{table}_{profile}.json").read_text())
    for rec in manifest["cells"]:
      if "attack" in rec:
        targeted.add(rec["poison"])
      elif rec["key"].get("poison"):
        key = rec["key"]["poison"]
        folders.add(f"{key['dataset']}_{configs.digest(key)}")
  return sorted(folders), sorted(targeted)


def copy_poison_meta(src: pathlib.Path, dst: pathlib.Path, pairs):
  """Each used crafted set's key (poison.json) and file metadata, as JSON."""
  out = dst / "poison"
  folders, targeted = used_poisons(src, pairs)
  for name in folders:
    out.mkdir(parents=True, exist_ok=True)
    if (src / "poison" / name / "poison.json").exists():
      shutil.copyfile(src / "poison" / name / "poison.json",
                      out / f"{name}.json")
    full = src / "poison" / name / "p1.npz"
    if full.exists():
      meta = attacks.load_poisoned(full).meta
      (out / f"{name}_meta.json").write_text(
          json.dumps(meta, indent=1, sort_keys=True))
  for name in targeted:
    f = src / "poison" / "targeted" / f"{name}.npz"
    if f.exists():
      out.mkdir(parents=True, exist_ok=True)
      (out / f"{name}_meta.json").write_text(json.dumps(
          attacks.load_poisoned(f).meta, indent=1, sort_keys=True))


def copy_report(src: pathlib.Path, dst: pathlib.Path, tables):
  name = f"report_{'_'.join(tables)}.md"
  if not (src / name).exists():
    raise SystemExit(f"{src / name} is missing: run `hint-jax report {src} "
                     f"--tables {','.join(tables)}` first")
  text = (src / name).read_text()
  for fig in re.findall(r"\]\((figures/[^)]+)\)", text):
    (dst / fig).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / fig, dst / fig)
  (dst / name).write_text(text)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--src", required=True)
  ap.add_argument("--dst", required=True)
  ap.add_argument("--tables", required=True,
                  help="comma list of TABLE:PROFILE, e.g. table2:cpu")
  args = ap.parse_args(argv)
  src, dst = pathlib.Path(args.src), pathlib.Path(args.dst)
  pairs = [t.split(":") for t in args.tables.split(",")]
  for table, profile in pairs:
    n = copy_table(src, dst, table, profile)
    print(f"{table}/{profile}: {n} finished cells copied")
  copy_poison_meta(src, dst, pairs)
  copy_report(src, dst, [t for t, _ in pairs])
  print(f"wrote {dst}")


if __name__ == "__main__":
  main()
