"""The report's pieces from known inputs: mean ± std, the hit grid of a
fake manifest, and that every figure is drawn (in seconds, no training)."""

import json

import numpy as np
import pytest

from hint_jax.errors import DataError
from hint_jax.experiment import figures as figs
from hint_jax.experiment import report as rep
from hint_jax.experiment import results


def test_mean_std_is_the_sample_std_in_tables_and_error_bars():
  assert results.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)   # n-1: sqrt(2/2)
  assert results.mean_std([4.0]) == (4.0, 0.0)
  assert rep.fmt([1.0, 2.0, 3.0]) == "2.00 ± 1.00 (n=3)"
  mean, std = results.mean_std([90.0, 92.0, 88.0, 94.0])
  assert mean == 91.0 and std == pytest.approx(np.sqrt(20 / 3), rel=1e-12)


def test_versus_none_gives_the_difference_and_its_standard_error():
  def cell(method, ratio, acc):
    return {"dataset": "mnist", "method": method, "ratio": ratio,
            "result": {"test_accuracy": acc / 100}}
  cells = ([cell("none", 1.0, a) for a in (50.0, 60.0, 40.0)]
           + [cell("HINT", 1.0, a) for a in (90.0, 92.0, 88.0)]
           + [cell("EPIC", 1.0, 70.0)]                  # one seed: no SE
           + [cell("none", 0.0, a) for a in (98.0, 99.0)]
           + [cell("HINT", 0.0, 98.5)])
  text = rep.versus_none(cells, "mnist", ["none", "HINT", "EPIC"])
  # 90 - 50 = 40; SE = sqrt(2²/3 + 10²/3) = sqrt(104/3) = 5.888; 6.8 SE.
  assert "| 1 | +40.00 ± 5.89 (+6.8 SE) | — |" in text
  # p = 0 has one HINT seed: no row.
  assert "| 0 |" not in text
  assert rep.versus_none(cells[:3], "mnist", ["none"]) == ""


def test_paired_versus_none_pairs_by_seed():
  def cell(method, trial, acc, ratio=1.0):
    return {"dataset": "mnist", "method": method, "ratio": ratio,
            "trial": trial, "result": {"test_accuracy": acc / 100}}
  cells = ([cell("none", t, a) for t, a in enumerate((50.0, 60.0, 40.0))]
           + [cell("HINT", t, a) for t, a in enumerate((90.0, 92.0, 88.0))]
           + [cell("none", 0, 98.0, 0.6), cell("HINT", 0, 98.1, 0.6)])
  text = rep.paired_versus_none(cells, "mnist", ["none", "HINT"])
  # Differences 40, 32, 48: mean 40, t(2) 4.303 x 8 / sqrt(3) = 19.8747.
  assert "| 1 | +40.00 [+20.13, +59.87] (+40.00, +32.00, +48.00) |" in text
  assert "| 0.6 |" not in text          # one pair only
  assert rep.paired_versus_none(cells[:3], "mnist", ["none", "HINT"]) == ""


def _cell(i, method, attack, trial, hit, acc=0.6):
  result = None if hit is None else {
      "test_accuracy": acc, "train_seconds": 10.0 * (1 + i % 3),
      "defence_seconds": 1.0, "target": {
          "success": hit, "index": 7, "true_class": 1, "intended_class": 2,
          "predicted": 2 if hit else 1,
          "intended_probability": 0.9 if hit else 0.1}}
  return {"id": f"c{i}", "dataset": "cifar10", "method": method,
          "attack": attack, "trial": trial, "dir": f"cells/c{i}",
          "result": result}


def _fake():
  specs = [("none", "bp", 0, True), ("none", "bp", 1, True),
           ("none", "fc", 0, False), ("HINT", "bp", 0, False),
           ("HINT", "bp", 1, None), ("HINT", "fc", 0, True)]
  cells = [_cell(i, *s) for i, s in enumerate(specs)]
  records = [{k: c[k] for k in ("id", "dataset", "method", "attack",
                                "trial", "dir")} for c in cells]
  manifests = [{"table": "table3", "profile": "cpu", "cells": records}]
  return manifests, cells


def test_hit_grid_from_a_fake_manifest():
  manifests, cells = _fake()
  (dataset, (methods, columns, grid)), = results.hit_grid(manifests,
                                                      cells).items()
  assert dataset == "cifar10" and methods == ["none", "HINT"]
  assert columns == [("bp", 0), ("bp", 1), ("fc", 0)]
  # 1 hit, 0 miss, PENDING listed but unfinished.
  assert grid == [[1, 1, 0], [0, results.PENDING, 1]]
  # A trial only one method runs: the other's box is None (no profile
  # lists it), not PENDING.
  extra = _cell(9, "none", "fc", 1, False)
  listed = manifests[0]["cells"] + [{k: extra[k] for k in (
      "id", "dataset", "method", "attack", "trial", "dir")}]
  (_, (_, columns, grid)), = results.hit_grid(
      [{**manifests[0], "cells": listed}], cells + [extra]).items()
  assert columns[-1] == ("fc", 1) and [row[-1] for row in grid] == [0, None]
  # Another table's manifest contributes nothing.
  assert results.hit_grid([{**manifests[0], "table": "table2"}], cells) == {}


def _with_twins():
  """The fake plus clean twins: none/bp/0's twin misses (the poisons' hit),
  none/bp/1's twin hits too (not the poisons' doing), HINT/fc/0's has not
  run."""
  manifests, cells = _fake()
  twins = []
  for i, (of, hit) in enumerate([("c0", False), ("c1", True),
                                 ("c5", None)]):
    base = next(c for c in cells if c["id"] == of)
    twins.append(dict(_cell(10 + i, base["method"], base["attack"],
                            base["trial"], hit), clean_twin=True))
  records = manifests[0]["cells"] + [
      {k: c[k] for k in ("id", "dataset", "method", "attack", "trial",
                         "dir", "clean_twin")} for c in twins]
  return [{**manifests[0], "cells": records}], cells + twins


def test_clean_twins_decide_which_hits_count():
  manifests, cells = _with_twins()
  assert results.twin_verdicts(manifests, cells) == {
      ("cifar10", "bp", "none", 0): "poisons",
      ("cifar10", "bp", "none", 1): "clean",
      ("cifar10", "fc", "HINT", 0): "unchecked"}
  # Twins are not rows of their own; a hit the twin shares is drawn 0.5.
  (_, (methods, columns, grid)), = results.hit_grid(manifests, cells).items()
  assert methods == ["none", "HINT"]
  assert grid == [[1, 0.5, 0], [0, results.PENDING, 1]]
  text = rep.table3(manifests, cells)
  summary = next(ln for ln in text.splitlines() if ln.startswith("| none |"))
  # bp: one hit of the poisons' doing; the other trial's hit is shared
  # by its twin, so that trial cannot test anything: 1/1, listed apart.
  assert "| 1/1 (60.00) +1 clean twin hits too" in summary
  # The paper's figure (successes, clean accuracy) beside ours.
  assert "+1 clean twin hits too [5/5 (91.41)]" in summary
  hint = next(ln for ln in text.splitlines() if ln.startswith("| HINT |"))
  assert "0/0 (60.00) +1 twin pending" in hint
  # Trial by trial, each hit shows its twin's verdict where it has run.
  row = next(ln for ln in text.splitlines() if ln.startswith("| BP | 1 |"))
  assert "hit: 2 (0.9); clean twin hit: 2 (0.9)" in row
  row = next(ln for ln in text.splitlines() if ln.startswith("| BP | 0 |"))
  assert "hit: 2 (0.9); clean twin miss: 1 (0.1)" in row


def test_pooled_counts_against_the_papers_rate():
  manifests, cells = _with_twins()
  text = rep.table3(manifests, cells)
  # none: bp t0 the poisons' hit, bp t1 a hit its twin shares (left out
  # of both counts: that trial cannot test the defence), fc t0 a miss: 1 of
  # 2; the paper's 5/5 + 5/5 give rate 1, at which 1 or fewer of 2 has
  # probability 0.
  row = next(ln for ln in text.splitlines() if ln.startswith("| none | BP"))
  assert row.startswith("| none | BP+FC | 1/2 | 0.01-0.99 | 10/10 (1.00) | "
                        "0 (≤ 1) |")
  # HINT: bp t1 unfinished and fc t0's twin pending are left out, leaving
  # bp t0's miss: 0 of 1 against the paper's 2/10; P(X <= 0) = 0.8.
  row = next(ln for ln in text.splitlines() if ln.startswith("| HINT | BP"))
  assert row.startswith("| HINT | BP+FC | 0/1 | 0.00-0.97 | 2/10 (0.20) | "
                        "0.8 (≤ 0) |")
  # The paper's Table III is CIFAR-10 only: another dataset gets neither
  # brackets nor pooled rows.
  other = [{**c, "dataset": "digits"} for c in cells]
  olist = [{**manifests[0], "cells": [{**r, "dataset": "digits"}
                                      for r in manifests[0]["cells"]]}]
  text = rep.table3(olist, other)
  assert "### digits" in text and "Pooled" not in text
  assert "[5/5" not in text and "the paper's in brackets" not in text
  # The controls table has no paper figures, so no pooled rows.
  ctrl = [{**manifests[0], "table": "controls_targeted"}]
  assert "Pooled" not in rep.table3(ctrl, cells, "controls_targeted")


def test_binomial_interval_and_tail_match_scipy():
  stats = pytest.importorskip("scipy.stats")
  for k, n in [(0, 5), (1, 5), (3, 3), (7, 9), (2, 15), (14, 15)]:
    lo, hi = results.clopper_pearson(k, n)
    # Clopper-Pearson as beta quantiles; bisection stops at 1e-12.
    ref_lo = stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
    ref_hi = stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
    assert lo == pytest.approx(ref_lo, abs=1e-9)
    assert hi == pytest.approx(ref_hi, abs=1e-9)
    for p in (0.0, 2 / 15, 0.5, 1.0):
      # Sums of n + 1 float terms: agreement to rounding.
      assert results.binomial_tail(k, n, p) == pytest.approx(
          stats.binom.sf(k - 1, n, p), abs=1e-12)
      assert results.binomial_tail(k, n, p, upper=False) == pytest.approx(
          stats.binom.cdf(k, n, p), abs=1e-12)
  with pytest.raises(ValueError):
    results.clopper_pearson(4, 3)


def test_compute_sums_the_cells_and_recorded_crafting():
  manifests, cells = _fake()
  m = dict(manifests[0], command_seconds=[
      ["hint-jax target-poison --attack bp", 1800.0],
      ["hint-jax train --defence none", 99.0]])
  text = rep.compute(m, cells)
  # 5 finished cells of 10/20/30 s training + 1 s defence each (_cell):
  # i = 0, 1, 2, 3, 5 -> 11 + 21 + 31 + 11 + 31 = 105 s.
  assert "5 finished cells, 0.03 h" in text
  # Medians per attack and method: BP none of 11 and 21 s, BP HINT 11 s;
  # FC none 31 s, FC HINT 31 s (seconds under a minute, as seconds).
  assert "BP: none 16 s (2), HINT 11 s (1); FC: none 31 s (1), HINT 31 s (1)" \
      in text
  # Only the crafting command counts as crafting.
  assert "Crafting recorded here: 0.50 h over 1 command(s)" in text
  assert rep.compute(dict(m, cells=[]), cells) == ""
  # An untargeted table's cells (no attack): per method only, none of 11,
  # 21, 31 s and HINT of 11, 31 s: both 21 s.
  plain = [{k: v for k, v in c.items() if k != "attack"} for c in cells]
  assert "median per cell: none 21 s (3), HINT 21 s (2)." in rep.compute(
      m, plain)


def test_table4_says_how_far_the_noise_reaches_at_p_06(tmp_path):
  # Two HINT cells at p = 0.6 with known noise files (beta = 16/255): one
  # value at 9 levels and one at the bound in the first, none above 8 in
  # the second.
  cells = []
  for i, top in enumerate([[9.0, 16.0], [3.0, 7.0]]):
    d = tmp_path / f"cells/h{i}"
    d.mkdir(parents=True)
    delta = np.zeros((2, 4, 4, 1), np.float32)
    delta.flat[:2] = np.array(top) / 255.0
    np.savez(d / "noise.npz", delta=delta, beta=np.float32(16 / 255))
    cells.append({"id": f"h{i}", "dataset": "mnist", "ratio": 0.6,
                  "method": "HINT", "trial": i, "dir": f"cells/h{i}",
                  "result": {"test_accuracy": 0.97,
                             "hint": {"noise_file": "noise.npz"}}})
  assert rep.beta_reach(tmp_path, cells, "mnist", 0.6) == (
      2, pytest.approx(16.0, abs=1e-3), (0, 2), (0, 1), 32)
  assert rep.beta_reach(None, cells, "mnist", 0.6) is None
  assert rep.beta_reach(tmp_path, cells, "mnist", 1.0) is None
  t4 = [{"id": "t", "dataset": "mnist", "ratio": 1.0, "method": "HINT",
         "trial": 0, "dir": "cells/t", "result": {"test_accuracy": 0.9}}]
  manifests = [{"table": "table4", "cells": t4}]
  text = rep.table4(manifests, t4 + cells, tmp_path)
  assert "at most 16.0 grey levels; 0-2 of its 32" in text
  assert "0-1 reach β" in text
  assert "Why not" not in rep.table4(manifests, t4 + cells)
  # No table4 cell keeps a noise file (as in a committed snapshot): no
  # reach column; one seed, no seed spread.
  row, = [l for l in text.splitlines() if l.startswith("| r = 0.5")]
  assert row.startswith("| r = 0.5, β = 0.063 | 90.00 [") and row.endswith(
      "] |")
  assert "values at β" not in text and "Seed noise" not in text


def test_table4_gives_each_variants_reach_and_the_seed_spread(tmp_path):
  # A β = 8/255 variant whose noise file has one value at the bound (8
  # levels) of 32, and three default-HINT seeds at p = 1 (two from another
  # table): 88, 90, 92 -> 90.00 ± 2.00 (sample std).
  d = tmp_path / "cells/b"
  d.mkdir(parents=True)
  delta = np.zeros((2, 4, 4, 1), np.float32)
  delta.flat[:2] = np.array([8.0, 5.0]) / 255.0
  np.savez(d / "noise.npz", delta=delta, beta=np.float32(8 / 255))
  hint = {"test_accuracy": 0.9, "hint": {"noise_file": "noise.npz"}}
  t4 = [{"id": "b", "dataset": "mnist", "ratio": 1.0,
         "method": "HINT beta=0.031", "trial": 0, "dir": "cells/b",
         "result": hint},
        {"id": "h0", "dataset": "mnist", "ratio": 1.0, "method": "HINT",
         "trial": 0, "dir": "cells/h0", "result": {"test_accuracy": 0.88}}]
  seeds = [{"id": f"h{i}", "dataset": "mnist", "ratio": 1.0,
            "method": "HINT", "trial": i, "dir": f"cells/h{i}",
            "result": {"test_accuracy": a}}
           for i, a in ((1, 0.90), (2, 0.92))]
  none = [{"id": f"n{i}", "dataset": "mnist", "ratio": 1.0,
           "method": "none", "trial": i, "dir": f"cells/n{i}",
           "result": {"test_accuracy": a}} for i, a in ((0, 0.4), (1, 0.6))]
  targeted = {"id": "g", "dataset": "cifar10", "method": "HINT",
              "attack": "gm", "trial": 0, "dir": "cells/g",
              "result": {"test_accuracy": 0.6}}   # no ratio: left out
  manifests = [{"table": "table4", "cells": t4}]
  text = rep.table4(manifests, t4 + seeds + [targeted], tmp_path)
  row, = [l for l in text.splitlines() if l.startswith("| β = 0.031")]
  assert row.startswith("| β = 0.031 | 90.00 [") and row.endswith(
      "| 8.0, 1 of 32 |")
  assert "over 3 seeds gives 90.00 ± 2.00%;" in text
  assert "differences under about 4.0 points" in text
  # Without the run folder: no reach column, the spread still given.
  # With no defence's seeds beside (40, 60 -> 50.00 ± 14.14).
  text_none = rep.table4(manifests, t4 + seeds + none + [targeted], tmp_path)
  assert ("gives 90.00 ± 2.00% (no defence: 50.00 ± 14.14 (n=2));"
          in text_none)
  # The default cell keeps no noise file: a dash in its reach column.
  row, = [l for l in text.splitlines() if l.startswith("| r = 0.5")]
  assert row.endswith("] | — |")
  bare = rep.table4(manifests, t4 + seeds + [targeted])
  assert "values at β" not in bare and "90.00 ± 2.00%" in bare


def test_every_figure_is_drawn(tmp_path):
  manifests, cells = _fake()
  assert figs.hit_grid_figure(manifests, cells, tmp_path / "grid.png")
  assert figs.hit_grid_figure(*_with_twins(), tmp_path / "twins.png")
  assert not figs.hit_grid_figure(manifests, [], tmp_path / "none.png")
  # Table IV: the default HINT and one r and one β variant, two trials;
  # the random-sign control at two β.
  t4 = []
  for i, (m, acc) in enumerate([("HINT", 0.97), ("HINT", 0.96),
                                ("HINT r=0.25", 0.971),
                                ("HINT beta=0.031", 0.965),
                                ("HINT random-sign", 0.5),
                                ("HINT random-sign beta=0.251", 0.6)]):
    t4.append({"id": f"t{i}", "dataset": "mnist", "method": m, "ratio": 0.6,
               "trial": i % 2, "dir": f"cells/t{i}",
               "result": {"test_accuracy": acc}})
  m4 = [{"table": "table4", "profile": "cpu",
         "cells": [{k: c[k] for k in ("id", "method")} for c in t4]}]
  assert figs.table4_figure(m4, t4, tmp_path / "t4.png")
  # No defence at the same p from another table (a band), and a targeted
  # cell without a ratio among the cells.
  others = [{"id": "n", "dataset": "mnist", "method": "none", "ratio": 0.6,
             "trial": 0, "dir": "cells/n", "result": {"test_accuracy": 0.5}},
            {"id": "g", "dataset": "cifar10", "method": "none",
             "attack": "gm", "trial": 0, "dir": "cells/g",
             "result": {"test_accuracy": 0.6}}]
  assert figs.table4_figure(m4, t4 + others, tmp_path / "t4_none.png")
  m5 = [{"table": "table5", "profile": "cpu",
         "cells": [{k: c[k] for k in ("id", "method")} for c in cells]}]
  assert figs.table5_figure(m5, cells, tmp_path / "t5.png")
  run = tmp_path / "cell"
  run.mkdir()
  (run / "metrics.jsonl").write_text("".join(
      json.dumps({"epoch": e, "test_accuracy": 0.5 + 0.04 * e}) + "\n"
      for e in range(1, 11)))
  (run / "result.json").write_text(json.dumps(
      {"hint": {"config": {"schedule": [9]}}}))
  assert figs.training_curves(run, tmp_path / "curve.png")
  for name in ("grid", "t4", "t5", "curve"):
    assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_table4_points_place_each_variant_on_its_panel():
  points = figs._axis_points  # pylint: disable=protected-access
  assert points("HINT") == [("HINT", "r", 0.5), ("HINT", "β", 16.0)]
  assert points("HINT r=0.25") == [("HINT", "r", 0.25)]
  assert points("HINT beta=0.031") == [("HINT", "β", 8.0)]
  # The random-sign control: on the β panel only, its own series; the
  # plain label is its β = 16/255 cell.
  assert points("HINT random-sign") == [("random signs", "β", 16.0)]
  assert points("HINT random-sign beta=0.251") == [
      ("random signs", "β", 64.0)]
  assert points("HINT random-sign gamma x100") == []
  assert points("none") == []
  # The table's row names: what each variant sets.
  name = rep._variant  # pylint: disable=protected-access
  assert name("HINT") == "r = 0.5, β = 0.063"
  assert name("HINT random-sign") == "random-sign, r = 0.5, β = 0.063"
  assert name("HINT r=0.25") == "r = 0.25"
  assert name("HINT random-sign beta=0.251") == "random-sign, β = 0.251"


def _bench_record():
  # The shape `hint_jax.bench.defences.defence_ratios` returns.
  secs = {"none": [10.0, 14.0, 12.0], "hint": [13.0, 12.0, 12.6],
          "atda": [80.0, 70.0, 90.0]}
  return {"dataset": "mnist", "subset": 2000, "repeats": 3,
          "backend": "cpu", "paper_table_v": {"hint": 1.52, "atda": 3.6},
          "defences": {m: {"seconds": s, "test_accuracy": [0.9] * 3,
                           "median_seconds": float(np.median(s))}
                       for m, s in secs.items()}}


def test_defence_bench_figure_draws_median_ratios(tmp_path):
  path = tmp_path / "bench.json"
  path.write_text(json.dumps(_bench_record()))
  ratios = figs.defence_bench_figure(str(path), tmp_path / "b.png")
  # The paper's order, none first; medians over no defence's median (12 s).
  assert list(ratios) == ["none", "hint", "atda"]
  assert ratios == pytest.approx({"none": 1.0, "hint": 12.6 / 12.0,
                                  "atda": 80.0 / 12.0}, rel=1e-12)
  assert (tmp_path / "b.png").stat().st_size > 1000


@pytest.mark.parametrize("bad", [
    {"defences": {}},                                       # no none
    {"defences": {"none": {"seconds": []}}},                # no runs
    {"defences": {"none": {"seconds": ["x"]}}},             # not numbers
    [1, 2]])                                                # not an object
def test_defence_bench_figure_refuses_other_records(tmp_path, bad):
  path = tmp_path / "bench.json"
  path.write_text(json.dumps(bad))
  with pytest.raises(DataError):
    figs.defence_bench_figure(path, tmp_path / "b.png")
  assert not (tmp_path / "b.png").exists()
