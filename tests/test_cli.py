"""The command line: outputs, and one-line errors for bad input."""

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from hint_jax.cli.main import main


def _run_cli(args, env_extra=None):
  env = dict(os.environ, **(env_extra or {}))
  return subprocess.run([sys.executable, "-m", "hint_jax.cli.main"] + args,
                        capture_output=True, text=True, env=env, timeout=300,
                        check=False)


def _assert_one_line_error(proc):
  assert proc.returncode == 2, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr       # no traceback wall
  assert lines[0].startswith("hint-jax: error:")
  return lines[0]


def test_unknown_dataset_and_negative_epochs(tmp_path):
  line = _assert_one_line_error(_run_cli(
      ["train", "--dataset", "imagenet", "--out", str(tmp_path)]))
  assert "imagenet" in line
  line = _assert_one_line_error(_run_cli(
      ["train", "--dataset", "digits", "--epochs", "-3", "--out",
       str(tmp_path)]))
  assert "--epochs" in line


def test_missing_data_directory_names_files(tmp_path):
  line = _assert_one_line_error(_run_cli(
      ["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "none"),
       "--out", str(tmp_path / "o")]))
  assert "train-images-idx3-ubyte.gz" in line and "HINT_JAX_DATA_DIR" in line
  line = _assert_one_line_error(_run_cli(
      ["train", "--dataset", "cifar10", "--out", str(tmp_path / "o")],
      {"HINT_JAX_DATA_DIR": str(tmp_path / "none")}))
  assert "cifar" in line


def test_truncated_mnist_file(tmp_path, data_dir):
  bad = tmp_path / "mnist"
  bad.mkdir()
  for f in (data_dir / "mnist").glob("*.gz"):
    shutil.copy(f, bad / f.name)
  raw = gzip.decompress((bad / "train-images-idx3-ubyte.gz").read_bytes())
  (bad / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:5000]))
  line = _assert_one_line_error(_run_cli(
      ["train", "--dataset", "mnist", "--data-dir", str(tmp_path),
       "--out", str(tmp_path / "o")]))
  assert "train-images-idx3-ubyte.gz" in line


def test_out_is_a_file(tmp_path):
  f = tmp_path / "file"
  f.write_text("x")
  assert main(["train", "--dataset", "digits", "--out", str(f)]) == 2


def test_train_digits_writes_result_and_metrics(tmp_path, capsys):
  out = tmp_path / "run"
  rc = main(["train", "--dataset", "digits", "--epochs", "2", "--out",
             str(out), "--no-progress"])
  assert rc == 0
  result = json.loads((out / "result.json").read_text())
  for key in ("dataset", "model", "epochs", "seed", "test_accuracy",
              "train_seconds"):
    assert key in result
  assert result["epochs"] == 2 and result["model"] == "convnet_small"
  lines = (out / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
  assert "test accuracy" in capsys.readouterr().out
  # Re-running the finished run resumes at the end: nothing retrained, and
  # metrics are not duplicated.
  assert main(["train", "--dataset", "digits", "--epochs", "2", "--out",
               str(out), "--no-progress"]) == 0
  assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
  # Other settings in the same directory: refused unless --overwrite.
  assert main(["train", "--dataset", "digits", "--epochs", "3", "--out",
               str(out), "--no-progress"]) == 2
  assert main(["train", "--dataset", "digits", "--epochs", "3", "--out",
               str(out), "--no-progress", "--overwrite"]) == 0
  assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow


@pytest.mark.parametrize("source", ["pickle", "jpeg"])
def test_cifar10_both_local_forms(tmp_path, data_dir, source):
  out = tmp_path / source
  rc = main(["train", "--dataset", "cifar10", "--source", source,
             "--data-dir", str(data_dir), "--subset", "256", "--epochs", "1",
             "--model", "resnet_tiny", "--out", str(out), "--no-progress"])
  assert rc == 0
  result = json.loads((out / "result.json").read_text())
  assert result["num_train"] == 256
  assert ("jpeg" if source == "jpeg" else "pickle") in result["source"]
  assert 0.0 <= result["test_accuracy"] <= 1.0


def test_subset_is_a_cap_on_the_partial_cifar_copy(tmp_path, data_dir,
                                                   capsys):
  out = tmp_path / "cap"
  rc = main(["train", "--dataset", "cifar10", "--source", "pickle",
             "--data-dir", str(data_dir), "--subset", "5000", "--epochs", "0",
             "--model", "resnet_tiny", "--out", str(out), "--no-progress"])
  assert rc == 0
  result = json.loads((out / "result.json").read_text())
  # 5085 exact-pixel images: 2% (102) held out for validation, as 1000 of
  # the official 50000; the remaining 4983 all train, and that is said.
  assert result["num_val"] == 102 and result["num_train"] == 4983
  assert result["subset"] == 5000
  assert "using all of them" in capsys.readouterr().err


def test_progress_without_a_terminal_is_occasional_lines(capsys):
  """With stderr not a terminal (pytest captures it), progress is a plain
  line at most once per interval: nothing before the first interval has
  passed, one line per elapsed interval after, none with progress off."""
  from hint_jax.cli import common  # pylint: disable=g-import-not-at-top
  now = [0.0]
  clock = lambda: now[0]
  stage = common.StageProgress()
  train = common.Progress(desc="victim")
  assert stage.lines is not None and train.lines is not None
  for p in (stage.lines, train.lines):
    p.clock, p.last = clock, 0.0
  stage("gm", 1, 250)
  train(0, 1, 79, 2.3)
  assert capsys.readouterr().err == ""
  now[0] = common.LOG_INTERVAL
  stage("gm", 120, 250)
  stage("gm", 121, 250)                      # same interval: no second line
  train(2, 40, 79, 1.25)
  assert capsys.readouterr().err.splitlines() == [
      "gm: 120/250", "victim epoch 3: 40/79 steps, loss 1.2500"]
  quiet = common.StageProgress(False)
  now[0] = 10 * common.LOG_INTERVAL
  quiet("gm", 200, 250)
  common.Progress(False)(0, 1, 2, 0.5)
  assert capsys.readouterr().err == ""


def test_no_augment_reaches_victims_and_crafting_models(tmp_path, data_dir):
  """--no-augment (the paper's MetaPoison setting): `train` trains without
  CIFAR-10's shift and flip; `target-poison`'s crafting models too, kept
  in their own --victim-dir folder so a model trained with augmentation is
  never reused for one without (and the folders of models trained before
  the option existed keep their names)."""
  from hint_jax import pipeline  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import clean_model_folder  # pylint: disable=g-import-not-at-top
  common = ["train", "--dataset", "cifar10", "--source", "pickle",
            "--data-dir", str(data_dir), "--subset", "256", "--epochs", "0",
            "--model", "resnet_tiny", "--no-progress"]
  for flag, augment in (([], True), (["--no-augment"], False)):
    out = tmp_path / f"train{len(flag)}"
    assert main(common + flag + ["--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())[
        "config"]["augment"] is augment

  data = pipeline.DataSpec("cifar10", data_dir=str(data_dir),
                           source="pickle", subset=256)
  _, splits = pipeline.load_splits(data)
  folder = lambda aug: clean_model_folder(  # pylint: disable=g-long-lambda
      tmp_path / "victims", "cifar10", 0, 256, splits, "resnet_tiny", 1, 0,
      aug)[0]
  assert folder(None) == folder(True) != folder(False)
  victim = pipeline.VictimSpec(model="resnet_tiny", epochs=1, augment=False,
                               epoch_schedule="absolute",
                               victim_dir=str(tmp_path / "victims"))
  _, _, meta = pipeline.poisoning.train_victim(data, splits, victim,
                                               tmp_path / "w",
                                               pipeline.Reporter())
  assert meta["augment"] is False
  assert any(folder(False).iterdir())      # its checkpoint is here
  assert not any(folder(None).iterdir())   # not in the augmented one's
