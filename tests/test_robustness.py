"""The robustness analysis (`hint_jax.experiment.robustness`): intervals,
the decision rule, early stopping from metrics, fine-tune records, paired
differences by (draw, seed), from known inputs."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from hint_jax.errors import DataError
from hint_jax.experiment import robustness as rob


def test_t_quantiles_and_intervals_match_scipy():
  for df in (1, 2, 3, 8, 29, 30, 31, 60, 200):
    assert rob.t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3)
  values = [1.0, 4.0, 2.5, 3.0]
  mean, lo, hi, n = rob.interval(values)
  want = stats.t.interval(0.95, 3, loc=np.mean(values),
                          scale=stats.sem(values))
  assert n == 4 and mean == pytest.approx(2.625)
  assert (lo, hi) == pytest.approx(want, abs=1e-3)
  assert math.isnan(rob.interval([2.0])[1])
  with pytest.raises(ValueError):
    rob.t975(0)


def test_decision_rule():
  assert rob.verdict(0.1, 3.0) == "better"
  assert rob.verdict(-3.0, -0.1) == "worse"
  assert rob.verdict(-1.0, 2.0) == "not separated"
  assert rob.verdict(math.nan, math.nan) == "—"
  s = {"pair_lower": -0.5, "pair_upper": 0.7}
  assert rob.random_sign_hypothesis(s) == "rejected"
  assert rob.random_sign_hypothesis({"pair_lower": -9.0,
                                     "pair_upper": -2.0}) == "supported"
  assert rob.random_sign_hypothesis({"pair_lower": -3.0,
                                     "pair_upper": 0.5}) == "undecided"


def test_early_stopping_takes_the_first_best_validation_epoch():
  rows = [{"epoch": 1, "val_accuracy": 0.70, "test_accuracy": 0.69},
          {"epoch": 2, "val_accuracy": 0.61, "test_accuracy": 0.63},
          {"epoch": 3, "val_accuracy": 0.70, "test_accuracy": 0.71},
          {"epoch": 4, "train_loss": 0.1}]
  assert rob.early_stopped(rows) == (69.0, 1)
  with pytest.raises(DataError):
    rob.early_stopped([{"epoch": 1, "train_loss": 1.0}])


def _cell(tmp_path, cid, method, ratio, draw, trial, acc, vals):
  d = tmp_path / "cells" / cid
  d.mkdir(parents=True)
  d.joinpath("metrics.jsonl").write_text("\n".join(json.dumps(
      {"epoch": i + 1, "val_accuracy": v, "test_accuracy": v - 0.01})
      for i, v in enumerate(vals)))
  return {"id": cid, "dir": f"cells/{cid}", "method": method,
          "ratio": ratio, "trial": trial,
          "key": {"poison": {"seed": draw} if ratio > 0 else None},
          "result": {"test_accuracy": acc}}


def test_paired_differences_by_draw_and_seed(tmp_path):
  cells, acc = [], {}
  rng = np.random.default_rng(0)
  for draw in (0, 1, 2):
    for trial in (0, 1, 2):
      base = 0.5 + 0.05 * draw + 0.01 * trial
      for method, gain in (("none", 0.0), ("HINT", 0.4),
                           ("HINT random-sign", -0.08)):
        a = base + gain + 0.001 * rng.normal()
        acc[(method, draw, trial)] = a
        cells.append(_cell(tmp_path, f"{method}{draw}{trial}", method, 1.0,
                           draw, trial, a, [0.7, 0.6, a]))
  # An unfinished cell and another p are ignored.
  cells.append(dict(cells[0], id="x", result=None))
  diffs = rob.paired(rob.arm_values(tmp_path, cells, ratio=1.0,
                                    method="HINT"),
                     rob.arm_values(tmp_path, cells, ratio=1.0,
                                    method="none"))
  assert len(diffs) == 9
  assert diffs[(1, 2)] == pytest.approx(
      100 * (acc[("HINT", 1, 2)] - acc[("none", 1, 2)]))
  s = rob.summarise(diffs)
  assert s["draws"] == 3 and s["pair_count"] == 9
  per = [np.mean([diffs[(d, t)] for t in range(3)]) for d in range(3)]
  want = stats.t.interval(0.95, 2, loc=np.mean(per), scale=stats.sem(per))
  assert (s["draw_lower"], s["draw_upper"]) == pytest.approx(want, abs=1e-2)
  assert s["draw_verdict"] == "better" and s["pair_verdict"] == "better"
  # Early stopping reads each cell's metrics: the first epoch (0.70) wins.
  early = rob.arm_values(tmp_path, cells, ratio=1.0, method="none",
                         measure="early")
  assert early[(0, 0)] == pytest.approx(69.0)
  # Fine-tunes come from OUT/finetune/<id>.json where they exist.
  (tmp_path / "finetune").mkdir()
  (tmp_path / "finetune" / "none00.json").write_text(json.dumps(
      {"after": {"0": 0.5, "2": 0.9}}))
  ft = rob.arm_values(tmp_path, cells, ratio=1.0, method="none",
                      measure="finetune", finetune_epochs=2)
  assert ft == {(0, 0): pytest.approx(90.0)}
  manifests = [{"table": "robustness", "cells": [{"id": c["id"]}
                                                 for c in cells]}]
  text = rob.section(tmp_path, manifests, cells)
  assert "HINT − none (p = 1)" in text and "better" in text
  assert "HINT − none fine-tuned 2 epochs" in text
  assert rob.section(tmp_path, [{"table": "table2", "cells": []}],
                     cells) == ""
