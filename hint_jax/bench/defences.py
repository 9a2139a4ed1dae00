"""Each defence's wall time as a ratio to undefended training (the paper's
Table V), measured in one process.

Every run is a whole training job (`hint_jax.pipeline.run_train`: same
data, model, seed and epochs; data loading excluded, compilation included,
as a user meets it) into a temporary folder. Runs are repeated in
alternating order (forward, then backward) so that a load change on a
shared machine hits all variants alike, and medians are reported.
"""

import pathlib
import platform
import statistics
import tempfile

import jax

from hint_jax.bench.timing import quiet
from hint_jax.errors import ConfigError
from hint_jax.pipeline import defence_name, run_train

DEFENCES = ("none", "hint", "friends", "atda", "epic")
PAPER_TABLE_V = {"friends": 1.52, "atda": 3.6, "epic": 1.97, "hint": 1.52}


def defence_ratios(jobs, *, repeats=1, reporter=None, note=quiet,
                   describe=None) -> dict:
  """Runs every `TrainJob` of ``jobs`` (the undefended one first, the
  reference) ``repeats`` times, alternating the order, and returns each
  defence's median training-plus-defence seconds, its ratio to the
  reference and its test accuracies, beside the paper's Table V.
  ``describe``: extra JSON-ready entries for the record (the settings the
  jobs share)."""
  names = [defence_name(j.defence) for j in jobs]
  if not names or names[0] != "none" or len(set(names)) != len(names):
    raise ConfigError("the jobs must start with the undefended one and "
                      "name each defence once")
  times = {d: [] for d in names}
  accs = {d: [] for d in names}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(repeats):
      order = list(zip(names, jobs))
      order = order if r % 2 == 0 else order[::-1]
      for d, job in order:
        note(f"bench defences: {d} (repeat {r + 1}/{repeats})")
        res = run_train(job, pathlib.Path(tmp) / f"{d}_{r}",
                        reporter=reporter)
        # Training plus the defence's own work; data loading is left out.
        times[d].append(res["train_seconds"] + res["defence_seconds"])
        accs[d].append(res["test_accuracy"])
  base = statistics.median(times["none"])
  return {**(describe or {}), "repeats": repeats,
          "backend": jax.default_backend(), "machine": platform.machine(),
          "paper_table_v": dict(PAPER_TABLE_V),
          "defences": {d: {"median_seconds": statistics.median(times[d]),
                           "seconds": times[d], "test_accuracy": accs[d],
                           "ratio": statistics.median(times[d]) / base}
                       for d in names}}
