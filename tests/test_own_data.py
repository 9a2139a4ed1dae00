"""The user's own data: ``folder:PATH`` and ``npz:PATH`` datasets, the
generic presets they use, and ``hint-jax train`` on them."""

import json

import numpy as np
import pytest
from PIL import Image

from hint_jax import data, hint
from hint_jax.attacks.poisonset import load_poisoned
from hint_jax.cli.main import main
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import get_model
from hint_jax.train.presets import PRESETS, default_model, preset

# Arbitrary names; natural order puts "class 2" before "class 10".
NAMES = ["apple", "banana", "class 2", "class 10", "kiwi", "lime", "mango",
         "melon", "olive", "peach", "pear", "plum"]


def _folder(root, size=32, rgb=False, per_class=(6, 2)):
  rng = np.random.default_rng(0)
  for split, n in zip(("train", "test"), per_class):
    for c, name in enumerate(NAMES):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(n):
        # Class c: brightness around 20 * c, so the labels are learnable.
        base = rng.normal(20 * c, 4, (size, size)).clip(0, 255)
        img = base.astype(np.uint8)
        if rgb:
          img = np.stack([img, img // 2, 255 - img], -1)
          Image.fromarray(img, "RGB").save(folder / f"{i}.png")
        else:
          Image.fromarray(img, "L").save(folder / f"{i}.png")
  return root


def test_image_folder_with_any_class_names(tmp_path):
  root = _folder(tmp_path / "gray")
  ds = data.load_dataset(f"folder:{root}")
  assert ds.name == f"folder:{root}"
  assert ds.class_names == tuple(NAMES)
  assert ds.num_classes == 12
  # Equal channels everywhere: loaded as one channel.
  assert ds.x_train.shape == (72, 32, 32, 1) and ds.x_test.shape[0] == 24
  assert ds.x_train.dtype == np.uint8
  np.testing.assert_array_equal(np.bincount(ds.y_train), [6] * 12)
  # Labels follow the class folders: class 3 ("class 10") is brighter than
  # class 2 ("class 2").
  by = [ds.x_train[ds.y_train == c].mean() for c in range(12)]
  assert np.all(np.diff(by) > 0)
  rgb = data.load_dataset(f"folder:{_folder(tmp_path / 'rgb', rgb=True)}")
  assert rgb.x_train.shape == (72, 32, 32, 3)


def test_npz_of_plain_arrays(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "mine.npz"
  np.savez(path, x_train=rng.integers(0, 256, (40, 20, 20), np.uint8),
           y_train=np.arange(40) % 5, x_test=rng.integers(
               0, 256, (10, 20, 20), np.uint8), y_test=np.arange(10) % 5)
  ds = data.load_dataset(f"npz:{path}")
  assert ds.x_train.shape == (40, 20, 20, 1) and ds.num_classes == 5
  assert ds.class_names == ("0", "1", "2", "3", "4")
  named = tmp_path / "named.npz"
  np.savez(named, x_train=rng.integers(0, 256, (8, 20, 20, 3), np.uint8),
           y_train=np.arange(8) % 2, x_test=np.zeros((2, 20, 20, 3),
                                                       np.uint8),
           y_test=np.arange(2), class_names=np.array(["no", "yes", "maybe"]))
  ds = data.load_dataset(f"npz:{named}")
  assert ds.num_classes == 3 and ds.class_names == ("no", "yes", "maybe")
  with pytest.raises(DataError, match="store uint8"):
    np.savez(tmp_path / "f.npz", x_train=np.zeros((2, 4, 4)),
             y_train=np.arange(2), x_test=np.zeros((2, 4, 4)),
             y_test=np.arange(2))
    data.load_dataset(f"npz:{tmp_path / 'f.npz'}")


def test_generic_defaults_do_not_depend_on_a_dataset_name():
  assert preset(None) == PRESETS["generic"]
  assert preset("folder:/any/where", epochs=3).epochs == 3
  assert hint.paper_config().schedule == hint.paper_config(
      "npz:/x.npz").schedule == (9,)
  with pytest.raises(ConfigError):
    hint.paper_config("imagenet")
  assert default_model("folder:/x", (32, 32, 1)) == "convnet"
  assert default_model("folder:/x", (12, 12, 3)) == "convnet_small"
  assert default_model("mnist") == "convnet"
  # The ConvNet sizes itself from the input: 32x32 gives 5x5x100 features.
  model = get_model("convnet", 12, (32, 32, 1))
  import jax  # pylint: disable=g-import-not-at-top
  params, _ = model.init(jax.random.key(0))
  assert params["head"]["kernel"].shape == (2500, 12)
  assert data.default_num_val("folder:/x", 72) == 7
  assert data.default_num_val("folder:/x", 50000) == 1000


def test_train_on_an_image_folder_from_the_command_line(tmp_path, capsys):
  root = _folder(tmp_path / "fruit", per_class=(10, 3))
  out = tmp_path / "run"
  rc = main(["train", "--dataset", f"folder:{root}", "--epochs", "2",
             "--batch-size", "32",
             "--defence", "hint", "--out", str(out), "--no-progress"])
  assert rc == 0, capsys.readouterr().err
  result = json.loads((out / "result.json").read_text())
  assert result["dataset"] == f"folder:{root}"
  assert result["model"] == "convnet"
  assert 0.0 <= result["test_accuracy"] <= 1.0
  # 12 classes from 120 images: 12 held out for validation (a tenth).
  printed = capsys.readouterr()
  assert "108 train / 12 val / 36 test" in printed.out + printed.err


def test_poison_and_target_poison_on_own_data(tmp_path, capsys):
  """`poison` (every untargeted attack) and `target-poison` on an npz of
  the user's own, then `train` on each set: own data takes the generic
  defaults (eps 8/255) instead of failing on a missing dataset entry."""
  rng = np.random.default_rng(0)
  path = tmp_path / "mine.npz"
  y = np.arange(360) % 3     # 300 training images: more than a batch
  x = (rng.normal(60, 10, (360, 12, 12)) + 60 * y[:, None, None]).clip(
      0, 255).astype(np.uint8)
  np.savez(path, x_train=x[:300], y_train=y[:300], x_test=x[300:],
           y_test=y[300:])
  dataset = ["--dataset", f"npz:{path}", "--no-progress"]
  poisoned = tmp_path / "p.npz"
  rc = main(["poison", "--attacks", "pgd,dap,durp,dc", "--pgd-steps", "2",
             "--dap-steps", "2", "--dc-steps", "2", "--victim-epochs", "1",
             "--out", str(poisoned)] + dataset)
  assert rc == 0, capsys.readouterr().err
  meta = load_poisoned(poisoned).meta
  assert [a["name"] for a in meta["attacks"]] == ["pgd", "dap", "durp", "dc"]
  assert [a["eps"] for a in meta["attacks"]] == [pytest.approx(8 / 255)] * 4
  target = tmp_path / "gm"
  rc = main(["target-poison", "--attack", "gm", "--steps", "2",
             "--restarts", "1", "--victim-epochs", "1", "--out",
             str(target)] + dataset)
  assert rc == 0, capsys.readouterr().err
  for poison in (poisoned, target):
    out = tmp_path / f"run_{poison.stem}"
    rc = main(["train", "--poison", str(poison), "--epochs", "1",
               "--out", str(out)] + dataset)
    assert rc == 0, capsys.readouterr().err
    assert (out / "result.json").exists()


def _npz(path, n_train=150, seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(n_train + 30) % 3
  x = (rng.normal(60, 10, (len(y), 8, 8)) + 60 * y[:, None, None]).clip(
      0, 255).astype(np.uint8)
  np.savez(path, x_train=x[:n_train], y_train=y[:n_train],
           x_test=x[n_train:], y_test=y[n_train:])
  return path


@pytest.mark.slow
def test_experiment_quick_profiles_on_own_data(tmp_path, capsys):
  """`experiment --dataset` runs a quick profile on an npz and on an image
  folder of the user's own: cells and the report carry a file-safe name,
  and the contents' digest is part of every cell's id."""
  path = _npz(tmp_path / "mine.npz")
  given = tmp_path / "p1.npz"   # a cheap p = 1 set instead of the mix
  assert main(["poison", "--dataset", f"npz:{path}", "--attacks", "durp",
               "--out", str(given), "--no-progress"]) == 0
  exp = tmp_path / "exp"
  argv = ["experiment", "table2", "--profile", "quick", "--dataset",
          f"npz:{path}", "--poison-file", str(given), "--ratios", "1",
          "--methods", "none", "--out", str(exp), "--no-progress"]
  assert main(argv) == 0, capsys.readouterr().err
  cells = sorted(p.name for p in (exp / "cells").iterdir())
  assert len(cells) == 1 and cells[0].startswith("npz-mine_p1_none_t0_")
  result = json.loads((exp / "cells" / cells[0] / "result.json").read_text())
  assert result["dataset"] == f"npz:{path}"
  assert main(["report", str(exp)]) == 0
  report = (exp / "report.md").read_text()
  assert f"### npz:{path}" in report and "Run on npz:" in report
  assert all(f.parent == exp / "figures"
             for f in (exp / "figures").rglob("*") if f.is_file())
  # Other contents at the same path: no finished cell is reused.
  capsys.readouterr()
  _npz(path, seed=1)
  assert main(argv + ["--dry-run"]) == 0
  assert "0 finished" in capsys.readouterr().out
  # A targeted profile on an image folder (gradient matching, one trial).
  root = _folder(tmp_path / "fruit", size=12, per_class=(20, 4))
  exp3 = tmp_path / "exp3"
  assert main(["experiment", "table3", "--profile", "quick", "--dataset",
               f"folder:{root}", "--attacks", "gm", "--trials", "1",
               "--methods", "none", "--out", str(exp3),
               "--no-progress"]) == 0, capsys.readouterr().err
  done = [p for p in (exp3 / "cells").iterdir()
          if (p / "result.json").exists()]
  assert [p.name.split("_")[0] for p in done] == ["folder-fruit"]


def test_a_profile_of_two_datasets_refuses_another(tmp_path, capsys):
  assert main(["experiment", "table2", "--profile", "cpu", "--dataset",
               f"npz:{_npz(tmp_path / 'mine.npz')}", "--dry-run", "--out",
               str(tmp_path / "exp")]) == 2
  assert "replace the dataset of a one-dataset profile only" in (
      capsys.readouterr().err)
