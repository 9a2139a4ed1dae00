"""The command line of the HINT defence: train --defence hint (result
fields, noise file, resume), bad settings, figure noise, bench hint, demo."""

import json

import numpy as np
import pytest

from hint_jax.pipeline import checkpoint
from hint_jax.pipeline.figures import pick_examples
from hint_jax.cli.main import main
from hint_jax.pipeline import hint_poison_record

from test_cli import _assert_one_line_error, _run_cli


def test_train_with_hint_records_phases_and_writes_noise(tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["train", "--dataset", "digits", "--epochs", "4", "--defence",
          "hint", "--schedule", "1,3", "--ratio", "0.25", "--out", str(out),
          "--no-progress"]
  assert main(argv) == 0
  result = json.loads((out / "result.json").read_text())
  n = result["num_train"]
  assert result["defence"] == "hint"
  assert result["num_selected"] == int(np.ceil(0.25 * n))
  for key in ("hint_selection_seconds", "hint_pert_seconds",
              "hint_write_seconds", "hint_s_test_seconds", "train_seconds",
              "defence_seconds"):
    assert result[key] >= 0
  assert result["hint_selection_seconds"] > 0
  assert [u["epoch"] for u in result["hint"]["updates"]] == [1, 3]
  assert result["hint"]["config"]["schedule"] == [1, 3]
  with np.load(out / "hint_noise.npz") as f:
    sel, delta = f["selected"], f["delta"]
    assert len(sel) == result["num_selected"]
    assert np.abs(delta).max() <= 16 / 255
    assert f["x_noised"].dtype == np.uint8
    assert f["scores"].shape == (n,)
    assert len(f["dataset_index"]) == len(sel)
  metrics = [json.loads(l) for l in
             (out / "metrics.jsonl").read_text().splitlines()]
  assert [m["hook_seconds"] > 0 for m in metrics] == [False, True, False,
                                                      True]
  assert "with HINT" in capsys.readouterr().out

  # Re-running the finished run retrains nothing and keeps the result.
  assert main(argv) == 0
  again = json.loads((out / "result.json").read_text())
  assert again["test_accuracy"] == result["test_accuracy"]
  assert again["hint"]["updates"] == result["hint"]["updates"]


def test_resume_mid_run_rebuilds_the_noised_images(tmp_path, monkeypatch):
  base = ["train", "--dataset", "digits", "--epochs", "4", "--defence",
          "hint", "--schedule", "1,3", "--ratio", "0.3", "--no-progress"]
  assert main(base + ["--out", str(tmp_path / "full")]) == 0
  # The same run, killed right after epoch 3 (after the first noise
  # update, before the second) is checkpointed, then resumed.
  class Stop(Exception):
    pass

  real_save = checkpoint.save

  def save_then_stop(out, state, epoch, *a, **k):
    real_save(out, state, epoch, *a, **k)
    if epoch == 2:
      raise Stop()

  monkeypatch.setattr(checkpoint, "save", save_then_stop)
  with pytest.raises(Stop):
    main(base + ["--out", str(tmp_path / "cut")])
  monkeypatch.setattr(checkpoint, "save", real_save)
  assert main(base + ["--out", str(tmp_path / "cut")]) == 0
  a = json.loads((tmp_path / "full" / "result.json").read_text())
  b = json.loads((tmp_path / "cut" / "result.json").read_text())
  assert a["test_accuracy"] == b["test_accuracy"]
  assert a["test_loss"] == b["test_loss"]
  with np.load(tmp_path / "full" / "hint_noise.npz") as f, \
      np.load(tmp_path / "cut" / "hint_noise.npz") as g:
    for key in ("selected", "delta", "x_noised"):
      np.testing.assert_array_equal(f[key], g[key])


def test_bad_hint_settings_are_one_line_errors(tmp_path):
  for extra, word in ((["--ratio", "0"], "ratio"),
                      (["--ratio", "2"], "ratio"),
                      (["--schedule", "3,1"], "schedule"),
                      (["--schedule", "a,b"], "schedule"),
                      (["--schedule", "40"], "schedule"),
                      (["--beta", "-1"], "beta")):
    line = _assert_one_line_error(_run_cli(
        ["train", "--dataset", "digits", "--epochs", "8", "--defence", "hint",
         "--out", str(tmp_path / "o")] + extra))
    assert word in line, line


def test_default_schedule_is_scaled_or_trimmed_to_the_epochs(tmp_path,
                                                             capsys):
  # digits' default schedule is 5,15 of 30 epochs. Scaled (the default)
  # to 7 epochs: floor(5 * 7/30 + 1/2) = 1, floor(15 * 7/30 + 1/2) = 4.
  out = tmp_path / "s"
  assert main(["train", "--dataset", "digits", "--epochs", "7", "--defence",
               "hint", "--out", str(out), "--no-progress"]) == 0
  assert "scaled to [1, 4]" in capsys.readouterr().err
  result = json.loads((out / "result.json").read_text())
  assert result["hint"]["config"]["schedule"] == [1, 4]
  # gamma/10 from the authors' epoch 40 of 30 scales past the run's end.
  assert result["hint"]["config"]["gamma_decay_epoch"] == 9
  assert result["epoch_schedule"] == "scaled"
  # Absolute epochs: trimmed, only 5 is left.
  out = tmp_path / "t"
  assert main(["train", "--dataset", "digits", "--epochs", "7", "--defence",
               "hint", "--epoch-schedule", "absolute", "--out", str(out),
               "--no-progress"]) == 0
  assert "trimmed to [5]" in capsys.readouterr().err
  result = json.loads((out / "result.json").read_text())
  assert result["hint"]["config"]["schedule"] == [5]
  assert result["hint"]["config"]["gamma_decay_epoch"] == 40
  # None of it left: an error, not a HINT run that does nothing.
  line = _assert_one_line_error(_run_cli(
      ["train", "--dataset", "digits", "--epochs", "3", "--defence", "hint",
       "--epoch-schedule", "absolute", "--out", str(tmp_path / "none")]))
  assert "--schedule" in line


def test_cifar_schedule_in_the_papers_shape():
  """SPEC §7's example: 15 of CIFAR-10's 80 epochs."""
  from hint_jax.cli.main import build_parser  # pylint: disable=g-import-not-at-top
  from hint_jax.cli.train_cmd import defence_spec  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import resolve_hint  # pylint: disable=g-import-not-at-top
  args = build_parser().parse_args(
      ["train", "--dataset", "cifar10", "--defence", "hint", "--out", "x"])
  spec = defence_spec(args)
  hint_config = lambda epochs, schedule="scaled": resolve_hint(
      spec, "cifar10", epochs, schedule)
  cfg = hint_config(15)
  assert cfg.schedule == (1, 3, 8) and cfg.gamma_decay_epoch == 8
  assert hint_config(80).schedule == (5, 15, 40)
  assert hint_config(80).gamma_decay_epoch == 40
  assert hint_config(15, "absolute").schedule == (5,)
  assert hint_config(15, "absolute").gamma_decay_epoch == 40


def test_pick_examples_prefers_wrong_to_right():
  p_orig = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3]])
  p_new = np.array([[0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.45, 0.55]])
  y = np.array([1, 1, 1, 1])
  # Rows 1 and 3 go wrong -> right (gains 0.3 and 0.25), then row 0 (0.1),
  # then row 2 (0.1, later index).
  np.testing.assert_array_equal(
      pick_examples(p_orig, p_new, y, None, 4, "changed"), [1, 3, 0, 2])
  np.testing.assert_array_equal(
      pick_examples(p_orig, p_new, y, np.array([0.1, -5, 2, 0]), 2, "top"),
      [1, 2])


@pytest.mark.slow


def test_demo_trains_both_and_draws_the_figure(tmp_path, capsys):
  assert main(["demo", "--out", str(tmp_path / "demo"),
               "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert "no defence: test accuracy" in out and "HINT:" in out
  assert (tmp_path / "demo" / "hint" / "fig_noise.png").stat().st_size > 1000
  plain = json.loads((tmp_path / "demo" / "plain" / "result.json")
                     .read_text())
  hinted = json.loads((tmp_path / "demo" / "hint" / "result.json")
                      .read_text())
  assert plain["defence"] == "none" and hinted["defence"] == "hint"
  assert hinted["num_selected"] > 0
  assert main(["figure", "noise", "--run", str(tmp_path / "demo" / "plain")
               ]) == 2  # no noise file: a clear error


def test_bench_hint_quick_writes_json(tmp_path):
  path = tmp_path / "b.json"
  assert main(["bench", "hint", "--settings", "quick", "--no-progress",
               "--json", str(path)]) == 0
  fig = json.loads(path.read_text())["settings"]["quick"]
  assert fig["time_ratio"] > 0 and fig["num_selected"] > 0
  assert fig["hint_defence_seconds"] > 0
  assert len(fig["plain_epoch_seconds"]) == fig["epochs"]


def test_hint_poison_record_counts_selected_poisons_and_their_change():
  """Hand-checked: rows 1 and 3 are poisons, rows 0, 1 and 2 selected; the
  noised images differ from the received ones by 2 levels on every pixel of
  row 1, by 1 level on half the pixels of row 0, not at all on row 2."""
  x = np.full((4, 2, 2, 1), 100, np.uint8)
  noised = x.copy()
  noised[1] -= 2
  noised[0, 0] += 1                      # 2 of 4 pixels up by one level
  noised[3] = 0                          # not selected: must not count
  rec = hint_poison_record(np.array([0, 1, 2]), x, noised,
                           np.array([False, True, False, True]))
  assert rec == {"count": 2, "selected": 1, "num_selected": 3,
                 "levels_changed_mean_poisons": 2.0,
                 "levels_changed_mean_others": 0.25}
  none = hint_poison_record(None, x, x, np.array([True, False, False,
                                                   False]))
  assert none["selected"] == 0 and none["levels_changed_mean_poisons"] is None
