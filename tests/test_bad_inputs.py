"""Bad input through the command line, as a new user would give it: for each
case the exit status is 2, stderr holds exactly one line (the error, no
traceback) and nothing under the working folder is created or changed.

Every case runs in-process (``main(argv)``), so an unanticipated exception
fails the test with its traceback instead of being counted.
"""

import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from hint_jax.cli.main import main

# Cases: (id, argv); "{W}" is the working folder, "{P}" the valid digits
# poison file, "{D}" the real data folder.
TRAIN = ["train", "--dataset", "digits", "--epochs", "1", "--no-progress"]
OUT = ["--out", "{W}/run"]
CASES = [
    # --out itself
    ("out-empty", TRAIN + ["--out", ""]),
    ("out-blank", TRAIN + ["--out", "  "]),
    ("out-is-a-file", TRAIN + ["--out", "{W}/file.txt"]),
    ("out-under-proc", TRAIN + ["--out", "/proc/hint_jax_test/run"]),
    # settings
    ("epochs-negative", TRAIN + ["--epochs", "-1"] + OUT),
    ("lr-zero", TRAIN + ["--lr", "0"] + OUT),
    ("lr-nan", TRAIN + ["--lr", "nan"] + OUT),
    ("batch-zero", TRAIN + ["--batch-size", "0"] + OUT),
    ("subset-zero", TRAIN + ["--subset", "0"] + OUT),
    ("unknown-dataset", ["train", "--dataset", "imagenet"] + OUT),
    ("unknown-source", TRAIN + ["--source", "floppy"] + OUT),
    ("unknown-defence", TRAIN + ["--defence", "prayer"] + OUT),
    ("hint-beta-zero", TRAIN + ["--defence", "hint", "--beta", "0",
                                "--schedule", "0"] + OUT),
    ("hint-beta-negative", TRAIN + ["--defence", "hint", "--beta", "-1",
                                    "--schedule", "0"] + OUT),
    ("hint-beta-nan", TRAIN + ["--defence", "hint", "--beta", "nan",
                               "--schedule", "0"] + OUT),
    ("hint-ratio-zero", TRAIN + ["--defence", "hint", "--ratio", "0",
                                 "--schedule", "0"] + OUT),
    ("hint-ratio-two", TRAIN + ["--defence", "hint", "--ratio", "2",
                                "--schedule", "0"] + OUT),
    ("hint-gamma-negative", TRAIN + ["--defence", "hint", "--gamma", "-1",
                                     "--schedule", "0"] + OUT),
    ("hint-schedule-decreasing", TRAIN + ["--defence", "hint", "--schedule",
                                          "3,1"] + OUT),
    ("hint-schedule-words", TRAIN + ["--defence", "hint", "--schedule",
                                     "a,b"] + OUT),
    ("hint-schedule-past-end", TRAIN + ["--defence", "hint", "--schedule",
                                        "40"] + OUT),
    ("hint-direction-unknown", TRAIN + ["--defence", "hint",
                                        "--hint-direction", "up"] + OUT),
    ("friends-begin-past-end", TRAIN + ["--defence", "friends",
                                        "--friends-begin-epoch", "9"] + OUT),
    ("epic-warmup-past-end", TRAIN + ["--defence", "epic", "--epic-warmup",
                                      "9"] + OUT),
    ("atda-eps-zero", TRAIN + ["--defence", "atda", "--atda-eps", "0"] + OUT),
    ("atda-norm-unknown", TRAIN + ["--defence", "atda", "--atda-norm",
                                   "l1"] + OUT),
    ("victim-dir-without-transfer", TRAIN + ["--victim-dir", "{W}/v"] + OUT),
    ("epoch-schedule-unknown", TRAIN + ["--epoch-schedule", "relative"] +
     OUT),
    # poison files
    ("poison-missing", TRAIN + ["--poison", "{W}/nowhere.npz"] + OUT),
    ("poison-is-a-folder", TRAIN + ["--poison", "{W}/folder"] + OUT),
    ("poison-truncated", TRAIN + ["--poison", "{W}/trunc.npz"] + OUT),
    ("poison-random-bytes", TRAIN + ["--poison", "{W}/rand.npz"] + OUT),
    ("poison-not-ours", TRAIN + ["--poison", "{W}/other.npz"] + OUT),
    ("poison-no-eps", TRAIN + ["--poison", "{W}/noeps.npz"] + OUT),
    ("poison-nan-eps", TRAIN + ["--poison", "{W}/naneps.npz"] + OUT),
    ("poison-bad-json", TRAIN + ["--poison", "{W}/badmeta.npz"] + OUT),
    ("poison-other-split", TRAIN + ["--split-seed", "1", "--poison", "{P}"]
     + OUT),
    # crafting
    ("craft-ratio-zero", ["poison", "--dataset", "digits", "--ratio", "0",
                          "--out", "{W}/p.npz"]),
    ("craft-ratio-big", ["poison", "--dataset", "digits", "--ratio", "1.5",
                         "--out", "{W}/p.npz"]),
    ("craft-unknown-attack", ["poison", "--dataset", "digits", "--attacks",
                              "pgd,foo", "--out", "{W}/p.npz"]),
    ("craft-no-attack", ["poison", "--dataset", "digits", "--attacks", ",",
                         "--out", "{W}/p.npz"]),
    ("craft-eps-two", ["poison", "--dataset", "digits", "--eps", "2",
                       "--out", "{W}/p.npz"]),
    ("craft-out-is-folder", ["poison", "--dataset", "digits", "--out",
                             "{W}/folder"]),
    ("craft-published-dc-on-digits", ["poison", "--dataset", "digits",
                                      "--attacks", "dc", "--dc-generator",
                                      "published", "--out", "{W}/p.npz"]),
    ("craft-dc-weights-missing", ["poison", "--dataset", "mnist", "--attacks",
                                  "dc", "--data-dir", "{D}", "--dc-weights",
                                  "{W}/none.pt", "--out", "{W}/p.npz"]),
    ("craft-dc-weights-corrupt", ["poison", "--dataset", "mnist", "--attacks",
                                  "dc", "--data-dir", "{D}", "--dc-weights",
                                  "{W}/rand.npz", "--out", "{W}/p.npz"]),
    # data
    ("mnist-data-dir-missing", ["train", "--dataset", "mnist", "--data-dir",
                                "{W}/nodata"] + OUT),
    ("mnist-bytes-changed", ["train", "--dataset", "mnist", "--data-dir",
                             "{W}/changed"] + OUT),
    ("craft-seed-negative", ["poison", "--dataset", "digits", "--seed",
                             "-3", "--out", "{W}/p.npz"]),
    ("target-craft-seed-negative", ["target-poison", "--dataset", "digits",
                                    "--attack", "bp", "--seed", "-3",
                                    "--out", "{W}/p.npz"]),
    ("demo-seed-negative", ["demo", "--seed", "-3", "--out", "{W}/demo"]),
    ("demo-out-is-a-file", ["demo", "--out", "{W}/file.txt"]),
    # experiments and reports
    ("experiment-unknown-ratio", ["experiment", "table2", "--profile",
                                  "quick", "--ratios", "0.3", "--out",
                                  "{W}/exp"]),
    ("experiment-unknown-method", ["experiment", "controls", "--profile",
                                   "quick", "--methods", "magic", "--out",
                                   "{W}/exp"]),
    ("experiment-ratios-on-table3", ["experiment", "table3", "--profile",
                                     "quick", "--ratios", "1", "--out",
                                     "{W}/exp"]),
    ("experiment-out-empty", ["experiment", "table2", "--profile", "quick",
                              "--out", ""]),
    ("report-no-manifest", ["report", "{W}/folder"]),
    # the user's own data
    ("own-folder-missing", ["train", "--dataset", "folder:{W}/nothere"] + OUT),
    ("own-folder-no-path", ["train", "--dataset", "folder:"] + OUT),
    ("own-folder-flat", ["train", "--dataset", "folder:{W}/flat"] + OUT),
    ("own-folder-test-class-unknown", ["train", "--dataset",
                                       "folder:{W}/strayclass"] + OUT),
    ("own-folder-one-class", ["train", "--dataset", "folder:{W}/oneclass"]
     + OUT),
    ("own-folder-mixed-sizes", ["train", "--dataset", "folder:{W}/sizes"]
     + OUT),
    ("own-folder-not-an-image", ["train", "--dataset", "folder:{W}/notimg"]
     + OUT),
    ("own-folder-with-source", ["train", "--dataset", "folder:{W}/okfolder",
                                "--source", "idx"] + OUT),
    ("own-npz-missing-arrays", ["train", "--dataset", "npz:{W}/other.npz"]
     + OUT),
    ("own-npz-float-images", ["train", "--dataset", "npz:{W}/floatimg.npz"]
     + OUT),
    ("own-npz-corrupt", ["train", "--dataset", "npz:{W}/rand.npz"] + OUT),
    ("own-convnet-too-small", ["train", "--dataset", "folder:{W}/okfolder",
                               "--model", "convnet", "--epochs", "1"] + OUT),
    ("report-corrupt-manifest", ["report", "{W}/badexp"]),
    ("report-manifest-not-a-table", ["report", "{W}/oddexp"]),
    # refused after the data are read: the new run folder is removed again
    ("own-fewer-than-a-batch", ["train", "--dataset", "npz:{W}/tiny.npz",
                                "--epochs", "1", "--no-progress"] + OUT),
    ("own-1x1-convnet-small", ["train", "--dataset", "npz:{W}/onepixel.npz",
                               "--model", "convnet_small", "--epochs", "1",
                               "--no-progress"] + OUT),
    ("hint-default-schedule-zero-epochs", TRAIN + ["--epochs", "0",
                                                   "--defence", "hint"] + OUT),
    # output names and places
    ("out-name-too-long", TRAIN + ["--out", "{W}/" + "a" * 300]),
    ("craft-out-name-too-long", ["poison", "--dataset", "digits", "--attacks",
                                 "durp", "--out", "{W}/" + "a" * 300 + ".npz"]),
    ("craft-work-name-too-long", ["poison", "--dataset", "digits", "--attacks",
                                  "durp", "--out", "{W}/" + "b" * 252]),
    ("craft-out-under-proc", ["poison", "--dataset", "digits", "--attacks",
                              "durp", "--no-progress", "--out",
                              "/proc/hint_jax_test/p.npz"]),
    ("figure-unknown-suffix", ["figure", "bench-defences", "--json",
                               "{W}/bench.json", "--out", "{W}/bars.docx"]),
    ("figure-name-too-long", ["figure", "bench-defences", "--json",
                              "{W}/bench.json", "--out",
                              "{W}/" + "c" * 300 + ".png"]),
    ("figure-out-under-proc", ["figure", "bench-defences", "--json",
                               "{W}/bench.json", "--out",
                               "/proc/hint_jax_test/bars.png"]),
]


def _snapshot(root: pathlib.Path) -> dict:
  """Every path under ``root`` with its size and modification time."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      p = pathlib.Path(dirpath) / name
      st = p.lstat()
      out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
  return out


@pytest.fixture(scope="module")
def work(tmp_path_factory, data_dir):
  """The working folder: a valid digits poison file and broken variants,
  a changed copy of MNIST, broken experiment folders."""
  w = tmp_path_factory.mktemp("bad")
  good = w / "good.npz"
  assert main(["poison", "--dataset", "digits", "--attacks", "durp",
               "--ratio", "0.5", "--out", str(good), "--no-progress"]) == 0
  raw = good.read_bytes()
  (w / "trunc.npz").write_bytes(raw[:len(raw) // 2])
  (w / "rand.npz").write_bytes(np.random.default_rng(0).bytes(5000))
  np.savez(w / "other.npz", a=np.zeros(3))
  with np.load(good) as f:
    arrays = dict(f)
  meta = json.loads(str(arrays["meta"]))
  for name, change in (("noeps", lambda a: a.pop("eps")),
                       ("naneps", lambda a: a.update(eps=float("nan")))):
    m = json.loads(json.dumps(meta))
    change(m["attacks"][0])
    np.savez(w / f"{name}.npz", **{**arrays, "meta": np.array(json.dumps(m))})
  np.savez(w / "badmeta.npz", **{**arrays, "meta": np.array("{oops")})
  (w / "file.txt").write_text("not a folder")
  (w / "folder").mkdir()
  # MNIST with one image byte changed, in raw (uncompressed) IDX files.
  changed = w / "changed" / "mnist"
  changed.mkdir(parents=True)
  for f in (data_dir / "mnist").glob("*-ubyte.gz"):
    data = bytearray(gzip.decompress(f.read_bytes()))
    if f.name.startswith("train-images"):
      data[5000] ^= 0xFF
    (changed / f.name[:-3]).write_bytes(bytes(data))
  (w / "badexp").mkdir()
  (w / "badexp" / "experiment_table2_quick.json").write_text('{"table": ')
  (w / "oddexp").mkdir()
  (w / "oddexp" / "experiment_table2_quick.json").write_text("[1, 2]")
  _own_data_cases(w)
  return w, good


def _png(path, size=8, value=0):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((size, size), value, np.uint8), "L").save(path)


def _own_data_cases(w):
  """Broken user datasets: no train/test split, a test class without
  training images, one class, images of two sizes, a file that is not an
  image; a valid 8x8 folder; an .npz of float images."""
  for split in ("train", "test"):
    for c in ("cat", "dog"):
      _png(w / "okfolder" / split / c / "0.png")
      _png(w / "sizes" / split / c / "0.png", size=8 if c == "cat" else 9)
      _png(w / "strayclass" / split / c / "0.png")
      _png(w / "notimg" / split / c / "0.png")
    _png(w / "oneclass" / split / "only" / "0.png")
  _png(w / "flat" / "cat" / "0.png")
  _png(w / "strayclass" / "test" / "bird" / "0.png")
  (w / "notimg" / "train" / "cat" / "1.png").write_text("not a png")
  np.savez(w / "floatimg.npz", x_train=np.zeros((4, 8, 8), np.float32),
           y_train=np.arange(4) % 2, x_test=np.zeros((2, 8, 8), np.float32),
           y_test=np.arange(2))
  # Valid, but fewer training images than one batch of the generic preset.
  np.savez(w / "tiny.npz", x_train=np.zeros((20, 8, 8), np.uint8),
           y_train=np.arange(20) % 2, x_test=np.zeros((4, 8, 8), np.uint8),
           y_test=np.arange(4) % 2)
  # 1x1 images: too small for the small ConvNet's two poolings.
  np.savez(w / "onepixel.npz", x_train=np.zeros((300, 1, 1), np.uint8),
           y_train=np.arange(300) % 2, x_test=np.zeros((4, 1, 1), np.uint8),
           y_test=np.arange(4) % 2)
  (w / "bench.json").write_text(json.dumps(
      {"defences": {"none": {"seconds": [1.0]}, "hint": {"seconds": [2.0]}}}))


@pytest.mark.parametrize("case,argv", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case, argv, work, data_dir,
                                                  capsys):
  w, good = work
  argv = [a.replace("{W}", str(w)).replace("{P}", str(good)).replace(
      "{D}", str(data_dir)) for a in argv]
  before = _snapshot(w)
  capsys.readouterr()
  try:
    rc = main(argv)
  except SystemExit as e:     # argparse refuses before main's try
    rc = e.code
  err = capsys.readouterr().err
  lines = [ln for ln in err.splitlines() if ln.strip()]
  assert rc == 2, (case, err)
  assert len(lines) == 1, (case, err)
  assert "Traceback" not in err
  assert lines[0].startswith(("hint-jax: error:", "hint-jax ")), lines[0]
  assert _snapshot(w) == before, case
  assert not pathlib.Path("/proc/hint_jax_test").exists()


def test_refused_mnist_copy_is_accepted_when_declared_own(work, tmp_path):
  """--own-data takes a changed copy, and result.json says it is not the
  official data."""
  w, _ = work
  out = tmp_path / "own"
  data = tmp_path / "data"
  shutil.copytree(w / "changed", data)
  assert main(["train", "--dataset", "mnist", "--data-dir", str(data),
               "--own-data", "--epochs", "0", "--subset", "200", "--out",
               str(out), "--no-progress"]) == 0
  result = json.loads((out / "result.json").read_text())
  assert result["data_verified"] is False


def test_divergence_stops_with_one_line_and_keeps_the_good_epochs(tmp_path,
                                                                  capsys):
  out = tmp_path / "run"
  rc = main(["train", "--dataset", "digits", "--epochs", "3", "--lr", "1e6",
             "--out", str(out), "--no-progress"])
  err = capsys.readouterr().err
  assert rc == 2
  assert err.strip().splitlines()[-1].startswith(
      "hint-jax: error: training diverged in epoch 1")
  # Nothing of the diverged epoch was written.
  assert not (out / "result.json").exists()
  assert not (out / "metrics.jsonl").exists()


def test_one_writer_per_run_folder(tmp_path, capsys):
  """A second run on a folder whose lock is held is refused, naming the
  holder; the folder's files are untouched."""
  from hint_jax.pipeline.files import lock_folder  # pylint: disable=g-import-not-at-top
  out = tmp_path / "run"
  out.mkdir()
  held = lock_folder(out)
  try:
    before = _snapshot(tmp_path)
    rc = main(["train", "--dataset", "digits", "--epochs", "1", "--out",
               str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "in use by another run (process" in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
    assert _snapshot(tmp_path) == before
  finally:
    held.close()
  # Released: the run goes through.
  assert main(["train", "--dataset", "digits", "--epochs", "1", "--out",
               str(out), "--no-progress"]) == 0


@pytest.mark.slow


def test_a_second_concurrent_train_is_refused_and_the_first_finishes(
    tmp_path, capsys):
  """Two real processes on one folder: the second (started while the first
  trains) is refused with one line naming the first; the first finishes
  with every epoch in metrics.jsonl exactly once."""
  out = tmp_path / "run"
  epochs = 30   # long enough that the second start lands while it trains
  first = subprocess.Popen(
      [sys.executable, "-m", "hint_jax.cli.main", "train", "--dataset",
       "digits", "--epochs", str(epochs), "--eval-every", "0", "--out",
       str(out), "--no-progress"], stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.monotonic() + 300
    while not ((out / ".lock").exists()
               and (out / ".lock").read_text().strip()):
      assert first.poll() is None, first.communicate()[0][-3000:]
      assert time.monotonic() < deadline, "the first run never took its lock"
      time.sleep(0.05)
    rc = main(["train", "--dataset", "digits", "--epochs", str(epochs),
               "--eval-every", "0", "--out", str(out), "--no-progress"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert first.poll() is None, "the first run ended before the second began"
    assert rc == 2 and len(err) == 1
    assert f"in use by another run (process {first.pid} " in err[0]
  finally:
    log = first.communicate(timeout=600)[0]
  assert first.returncode == 0, log[-3000:]
  lines = (out / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(ln)["epoch"] for ln in lines] == list(
      range(1, epochs + 1))
  assert json.loads((out / "result.json").read_text())["epochs"] == epochs


@pytest.mark.parametrize("name,nth", [
    ("metrics.jsonl", 2), ("checkpoint.msgpack", 2), ("hint_noise.npz", 1),
    ("result.json", 1)])
@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path, capsys,
                                                         monkeypatch, name,
                                                         nth):
  """The disk fills up at the ``nth`` write of ``name``: one line naming
  the file, no part file left; once there is room, the same command
  finishes the run with every epoch in metrics.jsonl once."""
  import builtins  # pylint: disable=g-import-not-at-top
  import errno  # pylint: disable=g-import-not-at-top
  out = tmp_path / "run"
  argv = ["train", "--dataset", "digits", "--epochs", "3", "--defence",
          "hint", "--schedule", "1", "--out", str(out), "--no-progress"]
  calls = [0]

  def full(path):
    if pathlib.Path(path).name == name:
      calls[0] += 1
      if calls[0] == nth:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

  real_replace, real_open = os.replace, builtins.open

  def replace(src, dst, *a, **k):
    full(dst)
    return real_replace(src, dst, *a, **k)

  def open_(file, mode="r", *a, **k):
    if "a" in mode:
      full(file)
    return real_open(file, mode, *a, **k)

  with monkeypatch.context() as m:
    m.setattr(os, "replace", replace)
    m.setattr(builtins, "open", open_)
    rc = main(argv)
  err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
  assert rc == 2
  # The checkpoint's line names the folder (its two files are one unit).
  named = out if name == "checkpoint.msgpack" else out / name
  assert err[-1].startswith("hint-jax: error: cannot write ") and (
      f"{named}: No space left on device; make room" in err[-1]), err[-1]
  assert not [p.name for p in out.iterdir() if "tmp" in p.name
              or (p.name.startswith(".") and p.name != ".lock")]
  assert main(argv) == 0
  lines = (out / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2, 3]
  assert (out / "result.json").exists() and (out / "hint_noise.npz").exists()


# ------------------------------------------------- interrupted checkpoints
class _Killed(Exception):
  pass


def _losses(out):
  lines = (out / "metrics.jsonl").read_text().splitlines()
  return [(r["epoch"], r["train_loss"]) for r in map(json.loads, lines)]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("ref") / "run"
  argv = ["train", "--dataset", "digits", "--epochs", "4", "--out",
          str(out), "--no-progress"]
  assert main(argv) == 0
  return argv, out


@pytest.mark.parametrize("where,epoch", [("state", 1), ("json", 1),
                                         ("state", 2), ("json", 3)])
def test_a_kill_inside_a_checkpoint_write_resumes_to_the_same_run(
    reference_run, tmp_path, monkeypatch, where, epoch):
  """The process dies while writing the checkpoint after 0-based
  ``epoch``: in the state file's write (the previous checkpoint stays) or
  in the readable JSON copy written after it (the new one is complete).
  The same command then resumes to the reference run's exact losses and
  accuracy, and metrics.jsonl holds each epoch once."""
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  ref_argv, ref_out = reference_run
  out = tmp_path / "run"
  argv = [a if a != str(ref_out) else str(out) for a in ref_argv]
  name = "write_bytes_atomic" if where == "state" else "write_json_atomic"
  real = getattr(checkpoint, name)
  calls = []

  def dies(path, data):
    calls.append(path)
    if len(calls) == epoch + 1:
      if where == "state":   # the temporary file is written, not renamed
        (path.parent / f".{path.name}.partial").write_bytes(b"\0" * 10)
      raise _Killed()
    return real(path, data)

  monkeypatch.setattr(checkpoint, name, dies)
  with pytest.raises(_Killed):
    main(argv)
  monkeypatch.undo()
  assert main(argv) == 0
  assert _losses(out) == _losses(ref_out)
  got = json.loads((out / "result.json").read_text())
  want = json.loads((ref_out / "result.json").read_text())
  assert got["test_accuracy"] == want["test_accuracy"]
  assert got["test_loss"] == want["test_loss"]


def test_corrupt_checkpoints_are_one_line(reference_run, tmp_path, capsys):
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  _, ref_out = reference_run
  for name, damage in (
      ("truncated", lambda p: p.write_bytes(p.read_bytes()[:100])),
      ("random", lambda p: p.write_bytes(np.random.default_rng(1).bytes(
          3000)))):
    out = tmp_path / name
    shutil.copytree(ref_out, out)
    damage(out / checkpoint.STATE_FILE)
    capsys.readouterr()
    rc = main(["train", "--dataset", "digits", "--epochs", "4", "--out",
               str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint" in err and "corrupt" in err, err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
    assert main(["figure", "noise", "--run", str(out)]) == 2
  # The readable JSON copy is not needed: the state file carries it.
  out = tmp_path / "nojson"
  shutil.copytree(ref_out, out)
  (out / checkpoint.META_FILE).unlink()
  settings, params, _ = checkpoint.read_final(out)
  assert settings["dataset"] == "digits" and params


def test_every_output_has_the_same_mode(reference_run):
  """result.json and the checkpoint (written atomically) get the mode of
  the plainly written metrics.jsonl."""
  _, out = reference_run
  modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()
           if p.is_file() and not p.name.startswith(".")}
  assert len(set(modes.values())) == 1, modes


def test_an_image_over_pils_size_limit_is_one_line(tmp_path, capsys,
                                                   monkeypatch):
  """PIL refuses to decode an image over its decompression-bomb limit
  (about 179 million pixels); the limit is lowered here so an 8x8 image
  stands in for an enormous one."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for split in ("train", "test"):
    for c in ("cat", "dog"):
      _png(tmp_path / "data" / split / c / "0.png")
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
  out = tmp_path / "run"
  capsys.readouterr()
  assert main(["train", "--dataset", f"folder:{tmp_path / 'data'}",
               "--out", str(out), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  assert "too large to decode safely" in err
  assert not out.exists()


def test_a_failed_job_removes_only_the_folders_it_made_and_left_empty(
    tmp_path):
  from hint_jax.pipeline import files  # pylint: disable=g-import-not-at-top
  new = tmp_path / "a" / "b" / "run"
  taken = files.take_out(new)
  assert (new / files.RUN_LOCK).exists()
  taken.release(failed=True)
  assert not (tmp_path / "a").exists()      # all three made here: gone
  # A folder that existed before the job is kept, lock file aside.
  old = tmp_path / "old"
  old.mkdir()
  files.take_out(old).release(failed=True)
  assert old.is_dir()
  # A job that wrote something keeps its folder, failed or not.
  kept = tmp_path / "kept"
  taken = files.take_out(kept)
  (kept / "metrics.jsonl").write_text("{}\n")
  taken.release(failed=True)
  assert (kept / "metrics.jsonl").exists()
  # Success keeps an empty folder too.
  done = tmp_path / "done"
  files.take_out(done).release()
  assert done.is_dir()
