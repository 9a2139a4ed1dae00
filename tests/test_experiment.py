"""The experiment runner and report: cells, sharing, resume, tables.

The quick profiles (the embedded digits) run here for real: crafting the
mixed poison once, training every cell, then the report. About two minutes.
"""

import contextlib
import dataclasses
import json
import os
import pathlib

import numpy as np
import pytest

from hint_jax import attacks
from hint_jax import experiment as exp
from hint_jax.cli import experiment_cmd
from hint_jax.cli.main import main
from hint_jax.errors import ConfigError
from hint_jax.experiment import configs as exp_configs
from hint_jax.experiment import report as rep
from hint_jax.experiment import results
from hint_jax.experiment import runner


def test_table2_cpu_grid_and_shared_cells():
  # No defence and HINT at six ratios x 3 seeds; the baselines at p = 0,
  # 0.6, 1 with one seed there and three at p = 1; cells shared with the
  # controls table and Table IV at p = 1.
  t2 = exp.get_profile("table2", "cpu")
  grid = {}
  for c in t2.cells():
    if c.dataset == "mnist":
      grid.setdefault((c.method.label, c.ratio), []).append(c.trial)
  for label in ("none", "HINT"):
    for p in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
      assert grid[(label, p)] == [0, 1, 2]
  for label in ("ATDA", "FRIENDS", "EPIC"):
    assert grid[(label, 0.0)] == grid[(label, 0.6)] == [0]
    assert grid[(label, 1.0)] == [0, 1, 2]
    assert (label, 0.2) not in grid and (label, 0.8) not in grid
  # The reduced CIFAR-10 part: no defence and HINT at p = 0, 0.6, 1, one
  # seed, with its own training and crafting flags; MNIST's cells keep the
  # profile-wide flags (their ids are those of the runs already made).
  cifar = [c for c in t2.cells() if c.dataset == "cifar10"]
  assert sorted((c.method.label, c.ratio, c.trial) for c in cifar) == sorted(
      (m, p, 0) for m in ("none", "HINT") for p in (0.0, 0.6, 1.0))
  for c in cifar:
    flags = c.train_flags()
    assert flags[flags.index("--model") + 1] == "resnet_tiny"
    assert flags[flags.index("--subset") + 1] == "10000"
  assert t2.poison_key("cifar10")["split"] == ["--subset", "10000"]
  assert "--model" in t2.poison_key("cifar10")["flags"]
  assert t2.poison_key("mnist")["flags"] == [] and \
      t2.poison_key("mnist")["split"] == []
  mnist = [c for c in t2.cells() if c.dataset == "mnist"]
  assert all("--model" not in c.train_flags() for c in mnist)
  # A plan outside the profile's ratios is refused, not silently empty.
  with pytest.raises(ConfigError, match="plan"):
    dataclasses.replace(t2, plans=(exp_configs.DatasetPlan(
        "cifar10", (0.5,), ("none",), 1),))
  # The id of the run made before the CIFAR-10 part was added.
  assert mnist[0].cell_id == "mnist_p0_none_t0_f0c8937365"
  assert len(mnist) == 51 and len(t2.cells()) == 57
  ids2 = {c.cell_id for c in t2.cells()}
  controls = exp.get_profile("controls", "cpu")
  shared = [c for c in controls.cells() if c.cell_id in ids2]
  assert {(c.method.label, c.ratio) for c in shared} == {
      (m, p) for m in ("none", "HINT", "ATDA") for p in (1.0, 0.6)}
  t4 = exp.get_profile("table4", "cpu")
  assert t4.ratios == (1.0,)
  assert sum(c.cell_id in ids2 for c in t4.cells()) == 1
  # Its random-sign beta line shares the beta = 16/255 cell with controls
  # (the default HINT cell is shared by all three).
  ids_c = {c.cell_id for c in controls.cells()}
  assert sorted(c.method.label for c in t4.cells() if c.cell_id in ids_c) \
      == ["HINT", "HINT random-sign"]
  assert len(t4.cells()) == 11


def test_cells_are_distinct_and_shared_across_tables():
  t2 = exp.get_profile("table2", "quick")
  t4 = exp.get_profile("table4", "quick")
  t5 = exp.get_profile("table5", "quick")
  for prof in (t2, t4, t5):
    ids = [c.cell_id for c in prof.cells()]
    assert len(ids) == len(set(ids))
  ids2 = {(c.ratio, c.method.label): c.cell_id for c in t2.cells()}
  # Table V's p = 1 cells of the Table II methods are Table II's cells, and
  # Table IV's default HINT variant at p = 0.5 is Table II's HINT cell.
  for c in t5.cells():
    if (c.ratio, c.method.label) in ids2:
      assert c.cell_id == ids2[(c.ratio, c.method.label)]
  assert sum((c.ratio, c.method.label) in ids2 for c in t5.cells()) == 5
  hint4 = [c for c in t4.cells() if c.method.label == "HINT"][0]
  assert hint4.cell_id == ids2[(0.5, "HINT")]
  # Other poisons change only the poisoned cells.
  import dataclasses  # pylint: disable=g-import-not-at-top
  other = dataclasses.replace(t2, poison_flags=("--dc-steps", "10"))
  for a, b in zip(t2.cells(), other.cells()):
    assert (a.cell_id == b.cell_id) == (a.ratio == 0)
  # Trials differ by the training seed (and HINT's own).
  two = dataclasses.replace(t2, trials=2)
  flags = {c.trial: c.train_flags() for c in two.cells()
           if c.method.label == "HINT" and c.ratio == 1.0}
  assert flags[0][flags[0].index("--seed") + 1] == "0"
  assert flags[1][flags[1].index("--seed") + 1] == "1"
  assert flags[1][flags[1].index("--hint-seed") + 1] == "1"
  with pytest.raises(ConfigError):
    exp.get_profile("table6", "quick")


def test_every_profile_is_complete():
  for table in exp.TABLES:
    for name in exp.PROFILE_NAMES:
      prof = exp.get_profile(table, name)
      assert prof.cells() and prof.description
      assert "hint-jax experiment" in prof.description or name == "paper"


def test_robustness_draws_and_shared_cells():
  cpu = exp.get_profile("robustness", "cpu")
  controls = exp.get_profile("controls", "cpu")
  table2 = exp.get_profile("table2", "cpu")
  ids = {c.cell_id: c for c in cpu.cells()}
  shared = ids.keys() & {c.cell_id for c in controls.cells() + table2.cells()}
  # Draw 0 is table2/controls cpu's set: their none/HINT/random-sign cells at
  # p = 1 and none/HINT at p = 0 are reused, 3 seeds each.
  assert sorted((ids[i].ratio, ids[i].method.label) for i in shared) == sorted(
      [(1.0, m) for m in ("none", "HINT", "HINT random-sign")] * 3
      + [(0.0, m) for m in ("none", "HINT")] * 3)
  # The structured controls and momentum arms run at p = 1 only.
  for c in cpu.cells():
    if "momentum" in c.method.label or c.method in exp_configs.STRUCTURED_CONTROLS:
      assert c.ratio == 1.0
  keys = {}
  for d in (1, 2):
    prof = exp.get_profile("robustness", exp_configs.draw_profile("cpu", d))
    cells = prof.cells()
    assert len(cells) == 9 and {c.ratio for c in cells} == {1.0}
    key = prof.poison_key("mnist")
    assert key["seed"] == d and key["split"] == ["--split-seed", str(d)]
    for c in cells:
      flags = c.train_flags()
      assert flags[flags.index("--split-seed") + 1] == str(d)
    keys[d] = key
    assert not {c.cell_id for c in cells} & set(ids)
  assert keys[1] != keys[2] != cpu.poison_key("mnist")
  # The controls name their direction; momentum arms their momentum.
  flags = {c.method.label: c.train_flags() for c in cpu.cells()}
  assert flags["HINT negative"][flags["HINT negative"].index(
      "--hint-direction") + 1] == "negative"
  assert "0.9" in flags["none momentum"]
  with pytest.raises(ConfigError, match="cpu-draw1"):
    exp.get_profile("robustness", "cpu-draw7")


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("exp")
  for table in ("table2", "table4", "table5", "controls"):
    assert main(["experiment", table, "--profile", "quick", "--out",
                 str(out), "--no-progress"]) == 0
  return out


def test_quick_profiles_run_every_cell(quick_dir):
  manifests, cells = results.collect(quick_dir)
  assert {m["table"] for m in manifests} == {"table2", "table4", "table5",
                                             "controls"}
  # 15 table2 cells; table4 adds 2 (r = 0.25 and beta = 8/255 at p = 0.5),
  # table5 adds 3 (r = 0.25, 0.75, 1 at p = 1) and controls 5 (its none,
  # HINT and ATDA cells at p = 1 are table2's).
  assert len(cells) == 25
  for c in cells:
    r = c["result"]
    assert r is not None, c["id"]
    assert r["defence"] == c["defence"] and r["seed"] == c["trial"]
    assert 0.0 <= r["test_accuracy"] <= 1.0
    if c["ratio"] > 0:
      assert r["poison"]["ratio"] == c["ratio"]
    else:
      assert r["poison"] is None
  # One crafting for every table: one poison folder with p = 1 and the
  # lowered p = 0.5.
  (folder,) = (quick_dir / "poison").iterdir()
  assert sorted(f.name for f in folder.glob("*.npz")) == ["p0.5.npz",
                                                          "p1.npz"]
  full = attacks.load_poisoned(folder / "p1.npz")
  half = attacks.load_poisoned(folder / "p0.5.npz")
  assert full.counts()["clean"] == 0
  n = len(full.x)
  assert half.counts()["clean"] == n - round(0.5 * n)
  kept = half.attack_id >= 0
  np.testing.assert_array_equal(half.x[kept], full.x[kept])
  # A HINT cell records how many poisons it selected: the same count as its
  # noise file's selected rows that the poison file marks as poisoned.
  hinted = [c for c in cells if c["method"] == "HINT" and c["ratio"] == 0.5]
  assert hinted
  poisoned = half.clean_index[half.attack_id >= 0]
  for c in hinted:
    rec = c["result"]["hint"]["poisons"]
    with np.load(quick_dir / c["dir"] / "hint_noise.npz") as f:
      assert rec["num_selected"] == len(f["selected"])
      assert rec["selected"] == int(np.isin(f["selected"], poisoned).sum())
    assert rec["count"] == len(poisoned)


def test_rerun_skips_finished_cells_and_resumes_unfinished(quick_dir,
                                                           monkeypatch):
  calls = []

  def fake_train(job, out, **kwargs):
    calls.append(str(out))
    # The real job resumes from the cell's checkpoint (its last epoch) and
    # writes result.json again.
    return real_train(job, out, **kwargs)

  real_train = runner.pipeline.run_train
  monkeypatch.setattr(runner.pipeline, "run_train", fake_train)
  monkeypatch.setattr(runner.pipeline, "run_poison", lambda *a: pytest.fail(
      "the poisoned set was crafted again"))
  assert main(["experiment", "table2", "--profile", "quick", "--out",
               str(quick_dir), "--no-progress"]) == 0
  assert calls == []
  manifest = json.loads((quick_dir / "experiment_table2_quick.json")
                        .read_text())
  last = manifest["invocations"][-1]
  assert last["cells_run"] == 0 and last["cells_skipped"] == 15
  # A cell killed after its last epoch but before result.json: only it
  # runs again, from its checkpoint.
  cell = next(c for c in exp.get_profile("table2", "quick").cells()
              if c.method.label == "EPIC" and c.ratio == 1.0)
  result = runner.cell_dir(quick_dir, cell) / "result.json"
  before = json.loads(result.read_text())
  result.unlink()
  assert main(["experiment", "table2", "--profile", "quick", "--out",
               str(quick_dir), "--no-progress"]) == 0
  assert calls == [str(runner.cell_dir(quick_dir, cell))]
  after = json.loads(result.read_text())
  assert after["test_accuracy"] == before["test_accuracy"]
  assert after["num_train_kept"] == before["num_train_kept"]


def test_report_tables_and_figures(quick_dir):
  assert main(["report", str(quick_dir)]) == 0
  text = (quick_dir / "report.md").read_text()
  _, cells = results.collect(quick_dir)
  by = {(c["ratio"], c["method"]): c["result"]["test_accuracy"]
        for c in cells}
  assert "## Table II" in text and "## Table IV" in text
  assert "## Table V" in text and "## Controls" in text
  # The controls' HINT row shows HINT's p = 1 accuracy and its noise.
  section = text[text.index("## Controls"):]
  row = next(line for line in section.splitlines()
             if line.startswith("| HINT random-sign |"))
  assert f"{100 * by[(1.0, 'HINT random-sign')]:.2f}" in row
  assert "HINT − random-sign =" in section
  # Table II's p = 1 row carries each method's accuracy as measured.
  row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
  for method in ("none", "HINT", "ATDA", "FRIENDS", "EPIC"):
    assert f"{100 * by[(1.0, method)]:.2f}" in row
  # Table V: no defence is 1.00x by construction.
  assert "| none |" in text and "1.00x" in text
  assert "hint-jax train --dataset digits --defence hint" in text
  for name in ("accuracy_vs_p.png", "fig1_noise_digits.png",
               "fig2_predictions_digits.png"):
    data = (quick_dir / "figures" / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", name
    assert f"figures/{name}" in text
  # One table's report: its own file, only that table's sections.
  assert main(["report", str(quick_dir), "--tables", "table4"]) == 0
  only = (quick_dir / "report_table4.md").read_text()
  assert "## Table IV" in only and "## Table II:" not in only
  assert "### table4 / quick" in only and "### table2 / quick" not in only
  assert main(["report", str(quick_dir), "--tables", "table9"]) == 2


def test_mean_std_format_and_recovery():
  assert rep.fmt([]) == "—"
  assert rep.fmt([97.0]) == "97.00"
  # Sample standard deviation over trials: [96, 98] -> 1.41.
  assert rep.fmt([96.0, 98.0]) == "97.00 ± 1.41 (n=2)"
  cells = [{"dataset": "mnist", "ratio": p, "method": m, "trial": 0,
            "result": {"test_accuracy": a}}
           for p, m, a in ((0.0, "none", 0.98), (1.0, "none", 0.78),
                           (1.0, "HINT", 0.90), (0.0, "HINT", 0.979))]
  text = rep.recovery(cells, "mnist")
  # (90 - 78) / (98 - 78) = 60%; 97.9 - 98 = -0.10.
  assert "recovering 60%" in text and "-0.10 points" in text


def test_report_into_a_read_only_folder_is_one_line(quick_dir, capsys,
                                                    monkeypatch):
  """A read-only experiment folder (as seen by os.access; this suite may
  run as root, for whom permissions do not bite) is refused before the
  report is drawn: one line, nothing written."""
  before = sorted((p, p.stat().st_mtime_ns) for p in quick_dir.rglob("*"))
  real = os.access
  monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if
                      pathlib.Path(p) == quick_dir else real(p, mode, **kw))
  capsys.readouterr()
  assert main(["report", str(quick_dir), "--tables", "table5"]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "not writable" in err, err
  assert sorted((p, p.stat().st_mtime_ns)
                for p in quick_dir.rglob("*")) == before


def test_report_without_experiments_is_a_clear_error(tmp_path, capsys):
  assert main(["report", str(tmp_path)]) == 2
  assert "hint-jax experiment" in capsys.readouterr().err


def test_given_poison_file_and_filters(quick_dir, tmp_path):
  """--poison-file uses an existing p = 1 set (its cells keyed by the file's
  hash), --ratios/--methods run part of the table."""
  (folder,) = (quick_dir / "poison").iterdir()
  given = folder / "p1.npz"
  out = tmp_path / "given"
  assert main(["experiment", "table2", "--profile", "quick", "--out",
               str(out), "--poison-file", str(given), "--ratios", "1",
               "--methods", "none", "--no-progress"]) == 0
  manifest = json.loads((out / "experiment_table2_quick.json").read_text())
  assert manifest["poison_files"] == {"digits": str(given.resolve())}
  _, cells = results.collect(out)
  finished = [c for c in cells if c["result"] is not None]
  assert [(c["ratio"], c["method"]) for c in finished] == [(1.0, "none")]
  (copied,) = (out / "poison").glob("*/p1.npz")
  assert copied.read_bytes() == given.read_bytes()
  # Same poisons and seed as the crafted run's cell: the same training, to
  # the bit (CPU XLA is deterministic); a different cell id all the same.
  _, crafted = results.collect(quick_dir)
  twin = next(c for c in crafted if c["ratio"] == 1.0
              and c["method"] == "none")
  assert twin["id"] != finished[0]["id"]
  assert (twin["result"]["test_accuracy"]
          == finished[0]["result"]["test_accuracy"])
  # Bad requests are one-line errors.
  for argv in (["--ratios", "0.3"], ["--methods", "HINT,nope"],
               ["--poison-file", str(folder / "p0.5.npz")],
               ["--poison-file", str(given), "--poison-file", str(given)]):
    assert main(["experiment", "table2", "--profile", "quick", "--out",
                 str(out), "--dry-run"] + argv) == 2, argv
  assert main(["experiment", "table2", "--profile", "quick", "--out",
               str(out), "--dry-run", "--attacks", "gm"]) == 2


def test_table3_selects_attacks_and_trials(tmp_path, capsys):
  """--attacks and --trials pick the cells that run (a dry run here: the
  cpu profile's 4 attacks x (3 trials of none and HINT + the first trial
  of ATDA, FRIENDS and EPIC))."""
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  base = ["experiment", "table3", "--profile", "cpu", "--out",
          str(tmp_path / "t3"), "--dry-run"]
  assert main(base + ["--attacks", "bp,fc", "--trials", "2"]) == 0
  lines = capsys.readouterr().out.splitlines()
  pending = [ln.split()[1] for ln in lines if ln.startswith("pending")]
  assert len(lines) == 1 + 4 * (3 + 3 + 1 + 1 + 1)
  assert len(pending) == 2 * (2 + 2 + 1 + 1 + 1)
  assert all(("_bp_" in c or "_fc_" in c) and ("_t0_" in c or "_t1_" in c)
             for c in pending)
  assert not any(f"_{m}_t1_" in c for c in pending
                 for m in ("atda", "friends", "epic"))
  assert main(base + ["--attacks", "bp,xx"]) == 2
  with pytest.raises(SystemExit):   # argparse: not a positive whole number
    main(base + ["--trials", "0"])


def test_method_trials_are_checked():
  """A method's own trial count must name a method of the profile and lie
  in 1..trials; the profile's cells follow it."""
  cpu = exp.get_profile("table3", "cpu")
  with pytest.raises(ConfigError):
    dataclasses.replace(cpu, method_trials=(("nope", 1),))
  with pytest.raises(ConfigError):
    dataclasses.replace(cpu, method_trials=(("ATDA", cpu.trials + 1),))
  with pytest.raises(ConfigError):
    dataclasses.replace(cpu, method_trials=(("ATDA", 0),))
  one = dataclasses.replace(cpu, attacks=("bp",), method_trials=())
  assert len(one.cells()) == len(cpu.methods) * cpu.trials


@pytest.mark.slow


def test_table3_quick_crafts_trains_and_reports(tmp_path):
  """The targeted table: one set per (attack, trial) shared by its
  methods, every cell's verdict on its target, the report's Table III;
  a re-run skips everything."""
  out = tmp_path / "t3"
  argv = ["experiment", "table3", "--profile", "quick", "--out", str(out),
          "--methods", "none", "--no-progress"]
  assert main(argv) == 0
  manifests, cells = results.collect(out)
  prof = exp.get_profile("table3", "quick")
  none_cells = [c for c in prof.cells() if c.method.label == "none"]
  twins = [c for c in cells if c.get("clean_twin")]
  cells = [c for c in cells if not c.get("clean_twin")]
  assert {c["id"] for c in cells} == {c.cell_id for c in prof.cells()}
  finished = [c for c in cells if c["result"] is not None]
  assert {c["id"] for c in finished} == {c.cell_id for c in none_cells}
  # Every hit has its clean twin, trained after the cells: same flags and
  # seed, on the set with its poisons replaced by their clean images. The
  # digits rarely give a hit, so one is made by rewriting fc's verdict
  # (a fake hit: what is tested is the twin machinery, not the attack).
  hits = [c for c in none_cells if runner.is_hit(out, c)]
  assert {c["id"] for c in twins} == {c.twin().cell_id for c in hits}
  fc = next(c for c in none_cells if c.attack == "fc")
  if fc not in hits:
    res_path = runner.cell_dir(out, fc) / "result.json"
    res = json.loads(res_path.read_text())
    res["target"].update(success=True,
                         predicted=res["target"]["intended_class"])
    res_path.write_text(json.dumps(res))
    assert main(argv) == 0
    hits.append(fc)
  manifests, cells = results.collect(out)
  twins = [c for c in cells if c.get("clean_twin")]
  cells = [c for c in cells if not c.get("clean_twin")]
  finished = [c for c in cells if c["result"] is not None]
  assert {c["id"] for c in twins} == {c.twin().cell_id for c in hits}
  assert all(c["result"] is not None for c in twins)
  fc_twin = next(c for c in twins if c["attack"] == "fc")
  assert fc_twin["result"]["poison"]["counts"] == {
      "clean": fc_twin["result"]["poison"]["counts"]["clean"], "fc": 0}
  assert "clean twin" in rep.table3(manifests, cells + twins)
  for c in hits:
    assert c.twin().train_flags() == c.train_flags()
    twin_set = attacks.load_poisoned(runner.targeted_poison_file(
        out, c.twin()))
    crafted = attacks.load_poisoned(runner.targeted_poison_file(out, c))
    assert np.all(twin_set.attack_id == -1)
    assert twin_set.target == crafted.target
    np.testing.assert_array_equal(twin_set.clean_index, crafted.clean_index)
  for c in finished:
    t = c["result"]["target"]
    assert t["success"] == (t["predicted"] == t["intended_class"])
    # Each file carries its clean crafting model's verdict on the target.
    assert t["crafting_model"]["predicted"] in range(10)
  files = sorted(f for f in (out / "poison" / "targeted").glob("*.npz")
                 if not f.stem.endswith("_clean"))
  assert len(files) == len(exp.configs.TABLE3_ATTACKS)
  # Clean models are trained once and shared through OUT/victims: the
  # full-split victim of seed 0 (gm, and mp's first member), mp's second
  # member, and the extractor that bp and fc share (same trial, same
  # pre-training split); the transfer cells reload it.
  assert len(list((out / "victims").iterdir())) == 3
  for c in finished:
    if c["attack"] in ("bp", "fc"):
      assert c["result"]["pretrain_test_accuracy"] == pytest.approx(
          c["result"]["crafting_extractor_test_accuracy"], abs=1e-9)
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  splits = data_lib.split_train_val(data_lib.load_dataset("digits"), seed=0)
  for c in hits:   # every row of a twin is the clean image (validated)
    attacks.load_poisoned(runner.targeted_poison_file(out, c.twin()),
                          clean_x=splits.x_train)
  for f in files:
    ps = attacks.load_poisoned(f, clean_x=splits.x_train)
    t = ps.target
    poisoned = ps.clean_index[ps.attack_id == 0]
    # Poisons are images of the intended class; the target is the test
    # image its metadata names, of another class.
    assert len(poisoned) == round(0.005 * len(splits.x_train))
    assert np.all(splits.y_train[poisoned] == t["intended_class"])
    np.testing.assert_array_equal(ps.target_x, splits.x_test[t["index"]])
    assert t["true_class"] == splits.y_test[t["index"]] != t[
        "intended_class"]
    assert t["scenario"] == ("transfer" if ps.meta["attacks"][0]["name"]
                             in ("bp", "fc") else "scratch")
  # HINT shares each (attack, trial)'s set with no defence.
  hint = [c for c in prof.cells() if c.method.label == "HINT"]
  assert sorted(c.attack for c in hint) == ["bp", "fc", "gm", "mp"]
  assert {c.poison_id for c in hint} == {c.poison_id for c in none_cells}
  # Every defence against every attack in the paper profile, ATDA at the
  # targeted budget.
  paper = exp.get_profile("table3", "paper")
  assert sorted(c.attack for c in paper.cells()
                if c.method.label == "EPIC" and c.trial == 0) == [
                    "bp", "fc", "gm", "mp"]
  (atda,) = [c for c in paper.cells() if c.method.label == "ATDA"
             and c.attack == "fc" and c.trial == 0]
  assert atda.train_flags()[atda.train_flags().index("--atda-eps") + 1] \
      == "0.062"

  text = rep.table3(manifests, cells)
  assert "Table III" in text and "| none |" in text
  # One trial-by-trial row per (attack, trial), with the clean verdict.
  rows = [ln for ln in text.splitlines()
          if ln.startswith(("| GM |", "| MP |", "| BP |", "| FC |"))]
  assert len(rows) == len(finished)
  for c in finished:
    t = c["result"]["target"]
    row = next(r for r in rows if r.startswith(f"| {c['attack'].upper()} |"))
    clean = t["crafting_model"]
    assert (f"| {clean['predicted']} "
            f"({clean['intended_probability']:.2g}) |") in row
  assert main(argv) == 0
  m = json.loads((out / "experiment_table3_quick.json").read_text())
  assert m["invocations"][-1]["cells_run"] == 0
  assert main(["experiment", "table3", "--profile", "quick", "--out",
               str(out), "--ratios", "1"]) == 2

  # The targeted controls share table3's sets: no crafting, and their
  # none cells are table3's.
  assert main(["experiment", "controls_targeted", "--profile", "quick",
               "--out", str(out), "--methods", "none,HINT random-sign",
               "--no-progress"]) == 0
  assert sorted(f for f in (out / "poison" / "targeted").glob("*.npz")
                if not f.stem.endswith("_clean")) == files
  manifests, cells = results.collect(out)
  text = rep.table3(manifests, cells, "controls_targeted")
  assert "## Controls against targeted attacks" in text
  noise = text[text.index("The noise after"):]
  sign_row = next(ln for ln in noise.splitlines()
                  if ln.startswith("| HINT random-sign |"))
  assert "—" not in sign_row        # both attacks' noise is reported
  assert "[" not in text.split("The noise after")[0]   # no paper figures


def test_table3_trial_rows_show_the_clean_verdict_and_hint_poisons():
  """The trial-by-trial rows: clean verdict from the file's target record
  ("—" when the file predates it), each method's verdict, HINT's noised
  poisons."""
  target = {"index": 7, "true_class": 2, "intended_class": 5}

  def cell(method, trial, predicted, p, clean=None, poisons=None):
    t = dict(target, predicted=predicted, success=predicted == 5,
             intended_probability=p)
    if clean is not None:
      t["crafting_model"] = clean
    r = {"target": t, "test_accuracy": 0.6}
    if poisons is not None:
      r["hint"] = {"poisons": poisons}
    return {"dataset": "cifar10", "attack": "gm", "trial": trial,
            "method": method, "result": r}

  clean = {"predicted": 2, "intended_probability": 0.0123}
  cells = [cell("none", 0, 5, 0.91, clean),
           cell("HINT", 0, 2, 0.2, clean,
                {"count": 100, "selected": 37,
                 "levels_changed_mean_poisons": 0.456}),
           cell("none", 1, 5, 0.5)]
  rows = [ln for ln in rep.trials_table3(cells, "cifar10", ["none", "HINT"])
          .splitlines() if ln.startswith("| GM |")]
  assert rows == [
      "| GM | 0 | 7 (2) → 5 | 2 (0.012) | hit: 5 (0.91) | miss: 2 (0.2); "
      "37/100 poisons noised, 0.46 levels |",
      "| GM | 1 | 7 (2) → 5 | — | hit: 5 (0.5) |  |"]


def test_attack_revision_renames_only_the_revised_attacks_sets():
  """A revised attack (exp_configs.ATTACK_REVISIONS) gets new set and cell ids,
  so sets crafted by its old version are not reused; the others keep
  theirs, so their finished results (experiments/results) still count."""
  cpu = exp.get_profile("table3", "cpu")
  # The committed cells were trained before the scaled epoch schedule: the
  # profile without it.
  absolute = lambda flags: tuple(  # pylint: disable=g-long-lambda
      f for i, f in enumerate(flags) if "--epoch-schedule" not in (
          f, flags[i - 1] if i else None))
  before = dataclasses.replace(cpu, craft_flags=absolute(cpu.craft_flags),
                               train_flags=absolute(cpu.train_flags))
  cells = {(c.attack, c.method.label, c.trial): c for c in before.cells()}
  # The scaled schedule renames every set and cell.
  for c in cpu.cells():
    old = cells[(c.attack, c.method.label, c.trial)]
    assert c.poison_id != old.poison_id and c.cell_id != old.cell_id
    assert "--epoch-schedule" in c.craft_flags()
    assert "--epoch-schedule" in c.train_flags()
  # Ids of sets crafted before the MetaPoison revision (committed in
  # experiments/results/table3_cifar10_cpu).
  assert cells[("gm", "none", 0)].poison_id == "cifar10_gm_t0_43f2b4c8eb"
  assert cells[("bp", "none", 0)].poison_id == "cifar10_bp_t0_ce3b71b009"
  assert cells[("fc", "none", 2)].poison_id == "cifar10_fc_t2_5658eca85b"
  assert cells[("gm", "none", 1)].cell_id == "cifar10_gm_none_t1_f1014446f3"
  mp = cells[("mp", "none", 0)]
  assert mp.poison_key()["revision"] == exp_configs.ATTACK_REVISIONS["mp"]
  assert mp.poison_id != "cifar10_mp_t0_1d57bfbf3b"   # the old version's
  assert mp.cell_id != "cifar10_mp_none_t0_e31c97873c"
  # MetaPoison's victims and crafting models train without augmentation
  # (the paper's setting), which also renames its revision-2 sets (crafted
  # on augmented models); the other attacks keep the preset's.
  assert mp.poison_id != "cifar10_mp_t0_692d6b1c92"
  for c in cells.values():
    no_aug = c.attack in exp_configs.NO_AUGMENT_ATTACKS
    assert ("--no-augment" in c.train_flags()) == no_aug
    assert ("--no-augment" in c.craft_flags()) == no_aug
  assert exp_configs.NO_AUGMENT_ATTACKS == ("mp",)
  # Revision 3 (members continue their clean training, --member-steps
  # only in MetaPoison's crafting flags) renames the revision-2 sets
  # crafted without augmentation, and no other attack's.
  assert mp.poison_id != "cifar10_mp_t0_23b7b66c56"
  for c in cells.values():
    assert ("--member-steps" in c.craft_flags()) == (c.attack == "mp")
    assert "--member-steps" not in c.train_flags()


def test_invocations_at_once_keep_each_others_records_and_cells(
    tmp_path, monkeypatch):
  """Two invocations on one folder: every manifest write re-reads the file
  under the lock, so neither drops the other's commands or records (the
  old in-memory manifest lost the first invocation's); a cell another
  invocation is training (its lock held) or has finished is skipped."""
  profile = exp.get_profile("table3", "quick")
  out = tmp_path / "exp"
  opts = runner.RunOptions("table3", "quick", str(out))
  first = runner.Runner(opts, experiment_cmd.flags())
  second = runner.Runner(opts, experiment_cmd.flags())
  first._open_manifest(profile, [], 0)  # pylint: disable=protected-access
  second._open_manifest(profile, [], 0)  # pylint: disable=protected-access
  first.manifest.log(["train", "--a"])
  second.manifest.log(["train", "--b"])
  first.manifest.record(cells_run=1)
  second.manifest.record(finished="later")
  manifest = json.loads(runner.manifest_path(out, profile)
                        .read_text())
  assert manifest["commands"] == ["hint-jax train --a", "hint-jax train --b"]
  first_rec, second_rec = manifest["invocations"]
  assert first_rec["cells_run"] == 1 and first_rec["finished"] is None
  assert second_rec["cells_run"] == 0 and second_rec["finished"] == "later"

  busy, done, free = profile.cells()[:3]
  ran = []
  monkeypatch.setattr(runner.pipeline, "run_train",
                      lambda job, o, **k: ran.append(str(o)))
  (runner.cell_dir(out, done) / "result.json").parent.mkdir(
      parents=True)
  (runner.cell_dir(out, done) / "result.json").write_text("{}")
  with runner.lock(out, busy.cell_id) as held:
    assert held
    # flock locks belong to the open file: a second open of the same lock,
    # even in this process, cannot take it.
    with runner.lock(out, busy.cell_id, wait=False) as again:
      assert not again
    trained = first.train_cells([busy, done, free], lambda c: c.attack)
    first._close(runner.Outcome("table3", "quick", []),  # pylint: disable=protected-access
                 [busy, done, free], trained)
  assert ran == [str(runner.cell_dir(out, free))]
  manifest = json.loads(runner.manifest_path(out, profile)
                        .read_text())
  assert manifest["invocations"][0]["cells_run"] == 1
  assert manifest["invocations"][0]["finished"] is not None
  assert manifest["commands"][-1].endswith(str(
      runner.cell_dir(out, free)))


def test_sets_another_invocation_is_crafting_are_passed_over_first(
    tmp_path, monkeypatch):
  """table3 crafting: a set whose lock another invocation holds is not
  waited for at once; this invocation crafts the free sets and trains
  their cells first, then waits for the busy set and, as its file now
  exists, trains its cells without crafting it."""
  profile = exp.get_profile("table3", "quick")
  out = tmp_path / "exp"
  opts = runner.RunOptions("table3", "quick", str(out), methods=("none",))
  events = []

  def fake_craft(_data, _spec, o, *_a, who="this"):
    events.append((who, "crafted", pathlib.Path(o).name))
    pathlib.Path(o).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(o).write_text("set")

  def fake_train(_job, o, **_k):
    events.append(("this", "trained", pathlib.Path(o).name))
    pathlib.Path(o).mkdir(parents=True, exist_ok=True)
    # A miss: no clean twin to train.
    (pathlib.Path(o) / "result.json").write_text(
        '{"target": {"success": false}}')

  monkeypatch.setattr(runner.pipeline, "run_target_poison", fake_craft)
  monkeypatch.setattr(runner.pipeline, "run_train", fake_train)
  cells = [c for c in profile.cells() if c.method.label == "none"]
  busy = cells[0]
  real_lock = runner.lock

  @contextlib.contextmanager
  def lock(o, name, wait=True):
    if name == busy.poison_id:
      if not wait:   # held elsewhere: the first pass must not block on it
        yield False
        return
      # The wait ends when the other invocation has written the set.
      fake_craft(None, None, runner.targeted_poison_file(o, busy),
                 who="other")
    with real_lock(o, name, wait) as mine:
      yield mine

  monkeypatch.setattr(runner, "lock", lock)
  runner.run(opts, experiment_cmd.flags())
  sets = [runner.targeted_poison_file(out, c).name for c in cells]
  runs = [runner.cell_dir(out, c).name for c in cells]
  assert events == ([("this", "crafted", f) for f in sets[1:]]
                    + [("this", "trained", r) for r in runs[1:]]
                    + [("other", "crafted", sets[0]),
                       ("this", "trained", runs[0])])
  manifest = json.loads(runner.manifest_path(out, profile)
                        .read_text())
  assert manifest["invocations"][0]["cells_run"] == len(cells)
  assert manifest["invocations"][0]["finished"] is not None
