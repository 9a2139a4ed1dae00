#!/usr/bin/env bash
# The robustness experiment's runs in the order of
# experiments/results/robustness_cpu/README.md; resumable (finished cells
# are skipped, an unfinished one resumes from its last epoch).
#
#   WORKTREE=/work/bg OUT=/work/main/runs/robust DATA=../shared/data \
#       nohup bash experiments/robustness_chain.sh >> LOG 2>&1 &
#
# WORKTREE: a checkout of the commit to run (its hint_jax is imported, not
# the installed one), OUT: the experiment folder, DATA: the data folder.
set -euo pipefail
: "${WORKTREE:?}" "${OUT:?}" "${DATA:?}"
export PYTHONPATH="$WORKTREE${PYTHONPATH:+:$PYTHONPATH}"
run() { python -m hint_jax.cli.main experiment robustness --data-dir "$DATA" \
          --out "$OUT" --no-progress "$@"; }
python - <<'PY'
import hint_jax, os, sys
want = os.path.join(os.environ["WORKTREE"], "hint_jax")
if not hint_jax.__file__.startswith(want):
  sys.exit(f"hint_jax comes from {hint_jax.__file__}, not {want}")
PY
# The 15 draw-0 cells shared with table2_cpu and controls_cpu.
python - <<'PY'
import os, pathlib, shutil
from hint_jax.experiment import configs
ids = {c.cell_id for c in configs.get_profile("robustness", "cpu").cells()}
out = pathlib.Path(os.environ["OUT"]) / "cells"
out.mkdir(parents=True, exist_ok=True)
results = pathlib.Path(os.environ["WORKTREE"]) / "experiments" / "results"
for table in ("table2_cpu", "controls_cpu"):
  for src in sorted((results / table / "cells").iterdir()):
    if src.name in ids and not (out / src.name).exists():
      shutil.copytree(src, out / src.name)
print(f"{sum(1 for p in out.iterdir() if p.name in ids)} shared cells in {out}")
PY
date -u +"%F %T chain start"
run --profile cpu-draw1
run --profile cpu-draw2
run --profile cpu --methods 'HINT negative,HINT random s_test,HINT train-loss'
run --profile cpu --ratios 0 --methods 'HINT random-sign'
run --profile cpu --methods 'none momentum,HINT momentum,HINT random-sign momentum'
run --profile cpu --ratios 0.9,0.95
date -u +"%F %T chain done"
