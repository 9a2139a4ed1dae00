"""Tests of hint_jax.data: real files in shared/data, broken copies, splits."""

import gzip
import io
import json
import pathlib
import pickle
import shutil
import socket
import sys
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

from hint_jax import data
from hint_jax.data import cifar
from hint_jax.data import image_folder
from hint_jax.data import mnist
from hint_jax.errors import ConfigError, DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
                      5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SUBSET_ROWS = 1017


# --------------------------------------------------------------------------
# Fixtures and helpers.


@pytest.fixture(scope="session")
def mnist_ds(data_dir):
  return data.load_dataset("mnist", data_dir=data_dir)


@pytest.fixture(scope="session")
def cifar_subset(data_dir):
  return data.load_dataset("cifar10", data_dir=data_dir, source="pickle")


@pytest.fixture(scope="session")
def cifar_jpeg(data_dir, cache_dir):
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("HINT_JAX_CACHE_DIR", str(cache_dir))
    return data.load_dataset("cifar10", data_dir=data_dir, source="jpeg")


@pytest.fixture(scope="session")
def exact_labels(data_dir):
  with np.load(data_dir / "cifar10" / "labels-exact.npz") as f:
    return f["y_train"], f["y_test"]


@pytest.fixture(scope="session")
def digits_ds():
  return data.load_dataset("digits")


def raises_one_line(fn, *needles, error=DataError):
  """Calls fn, checks it raises `error` with a one-line message naming all
  needles; returns the message."""
  with pytest.raises(error) as info:
    fn()
  message = str(info.value)
  assert "\n" not in message, message
  for needle in needles:
    assert str(needle) in message, (needle, message)
  return message


def idx_bytes(array, magic_type=0x08) -> bytes:
  header = bytes([0, 0, magic_type, array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  return header + np.ascontiguousarray(array, ">u1").tobytes()


def copy_mnist(src_dir, dst_root) -> pathlib.Path:
  """Links the four real MNIST files into dst_root/mnist; returns that."""
  dst = dst_root / "mnist"
  dst.mkdir(parents=True)
  for pair in mnist.FILES.values():
    for base in pair:
      (dst / (base + ".gz")).symlink_to(src_dir / "mnist" / (base + ".gz"))
  return dst


def write_batch(path, x_nhwc, labels, protocol=2):
  rows = x_nhwc.transpose(0, 3, 1, 2).reshape(len(x_nhwc), -1)
  record = {b"batch_label": b"synthetic", b"labels": list(labels),
            b"data": rows}
  with open(path, "wb") as f:
    pickle.dump(record, f, protocol=protocol)


def write_pickle_folder(folder, rows, meta_rows, label_len=None, seed=0):
  """A synthetic cifar-10-batches-py folder with `rows` images per batch."""
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True)
  for name in cifar.TRAIN_BATCHES + (cifar.TEST_BATCH,):
    x = rng.integers(0, 256, (rows, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, label_len or rows).tolist()
    write_batch(folder / name, x, labels)
  with open(folder / "batches.meta", "wb") as f:
    pickle.dump({b"num_cases_per_batch": meta_rows,
                 b"label_names": [c.encode() for c in data.CIFAR10_CLASS_NAMES],
                 b"num_vis": 3072}, f, protocol=2)
  return folder


def png_bytes(color, size=(32, 32)) -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", size, color).save(buf, format="PNG")
  return buf.getvalue()


def write_tar(path, files: dict):
  with tarfile.open(path, "w:gz") as tar:
    for name, blob in files.items():
      info = tarfile.TarInfo(name)
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))


def small_tree(prefix=""):
  """A tiny image tree: train has 2 cats and 3 airplanes, test 1 ship.

  File names need natural sorting (2 < 10); the colour's red channel encodes
  the expected position within the class.
  """
  files = {}
  for i, stem in enumerate(["2", "10", "33"]):
    files[f"{prefix}train/airplane/{stem}.png"] = png_bytes((i, 0, 0))
  for i, stem in enumerate(["0001", "0002"]):
    files[f"{prefix}train/cat/{stem}.png"] = png_bytes((i, 3, 0))
  files[f"{prefix}test/ship/0000.png"] = png_bytes((0, 8, 0))
  return files


# --------------------------------------------------------------------------
# Names, constants, errors for unknown names.


def test_helpers():
  assert data.default_num_val("mnist") == 1000
  assert data.default_num_val("CIFAR10") == 1000
  assert data.default_num_val("digits") == 100
  assert data.class_names("cifar10")[0] == "airplane"
  assert data.class_names("cifar10")[-1] == "truck"
  assert data.class_names("mnist") == tuple("0123456789")
  assert data.normalization("cifar10") == ((0.4914, 0.4822, 0.4465),
                                           (0.2023, 0.1994, 0.2010))
  assert data.normalization("mnist") == ((0.1307,), (0.3081,))


def test_unknown_name_and_source():
  raises_one_line(lambda: data.load_dataset("imagenet"), "imagenet", "mnist",
                  "cifar10", "digits")
  raises_one_line(lambda: data.default_num_val("svhn"), "svhn")
  raises_one_line(lambda: data.load_dataset("digits", source="jpeg"), "jpeg",
                  "sklearn")


# --------------------------------------------------------------------------
# MNIST.


def test_mnist_real(mnist_ds):
  ds = mnist_ds
  assert ds.x_train.shape == (60000, 28, 28, 1)
  assert ds.x_test.shape == (10000, 28, 28, 1)
  assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
  assert ds.x_test.dtype == np.uint8 and ds.y_test.dtype == np.int32
  assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS
  assert np.bincount(ds.y_test).tolist() == MNIST_TEST_COUNTS
  assert ds.meta["verified"] is True
  assert ds.source.startswith("mnist-idx:")
  assert ds.num_classes == 10 and ds.name == "mnist"
  assert abs(ds.x_train.mean() / 255 - data.MNIST_MEAN[0]) < 1e-3
  assert abs(ds.x_train.std(dtype=np.float64) / 255 - data.MNIST_STD[0]) < 1e-3


def test_mnist_data_dir_from_env(data_dir, monkeypatch):
  monkeypatch.setenv("HINT_JAX_DATA_DIR", str(data_dir))
  ds = data.load_dataset("mnist")
  assert ds.x_test.shape == (10000, 28, 28, 1)


def test_mnist_raw_files_at_top_level(data_dir, tmp_path):
  for pair in mnist.FILES.values():
    for base in pair:
      with gzip.open(data_dir / "mnist" / (base + ".gz")) as f:
        (tmp_path / base).write_bytes(f.read())
  ds = data.load_dataset("mnist", data_dir=tmp_path)
  assert ds.meta["verified"] is True
  assert ds.x_train.shape == (60000, 28, 28, 1)


def test_mnist_own_files_are_accepted_unverified(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "mnist"
  folder.mkdir()
  for split, n in (("train", 7), ("test", 3)):
    images, labels = mnist.FILES[split]
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    (folder / (images + ".gz")).write_bytes(gzip.compress(idx_bytes(x)))
    (folder / labels).write_bytes(idx_bytes(y))
  ds = data.load_dataset("mnist", data_dir=tmp_path)
  assert ds.x_train.shape == (7, 28, 28, 1)
  assert ds.x_test.shape == (3, 28, 28, 1)
  assert ds.meta["verified"] is False


def _truncated_gzip(real: bytes) -> bytes:
  return real[: len(real) // 2]


def _wrong_magic(real: bytes) -> bytes:
  raw = bytearray(gzip.decompress(real))
  raw[2] = 0x77
  return gzip.compress(bytes(raw))


def _short_payload(real: bytes) -> bytes:
  return gzip.compress(gzip.decompress(real)[:-100])


def _not_gzip(real: bytes) -> bytes:
  return b"this is not a gzip file" * 10


@pytest.mark.parametrize("corrupt,reason", [
    (_truncated_gzip, ""), (_wrong_magic, "magic"),
    (_short_payload, "truncated"), (_not_gzip, "")])
def test_mnist_corrupt_file(data_dir, tmp_path, corrupt, reason):
  folder = copy_mnist(data_dir, tmp_path)
  target = folder / "t10k-labels-idx1-ubyte.gz"
  real = target.read_bytes()
  target.unlink()
  target.write_bytes(corrupt(real))
  raises_one_line(lambda: data.load_dataset("mnist", data_dir=tmp_path),
                  target, "official", reason)


def test_mnist_missing_files(tmp_path):
  raises_one_line(lambda: data.load_dataset("mnist", data_dir=tmp_path),
                  "train-images-idx3-ubyte.gz", tmp_path / "mnist",
                  "HINT_JAX_DATA_DIR")


def test_mnist_images_labels_mismatch(data_dir, tmp_path):
  folder = copy_mnist(data_dir, tmp_path)
  target = folder / "t10k-labels-idx1-ubyte.gz"
  target.unlink()
  target.write_bytes(gzip.compress(idx_bytes(np.zeros(5, np.uint8))))
  raises_one_line(lambda: data.load_dataset("mnist", data_dir=tmp_path),
                  "10000 images but 5 labels")


def test_parse_idx_rejects_trailing_bytes():
  with pytest.raises(ValueError, match="unexpected bytes"):
    mnist.parse_idx(idx_bytes(np.zeros(3, np.uint8)) + b"x")


# --------------------------------------------------------------------------
# CIFAR-10 pickles.


def test_cifar_pickle_subset(cifar_subset, exact_labels):
  ds = cifar_subset
  assert ds.x_train.shape == (5 * SUBSET_ROWS, 32, 32, 3)
  assert ds.x_test.shape == (SUBSET_ROWS, 32, 32, 3)
  assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
  assert ds.source.startswith("cifar10-pickle:")
  assert ds.source.endswith("cifar-10-batches-py-subset")
  assert ds.meta["complete"] is False
  y_train, y_test = exact_labels
  for b in range(5):
    np.testing.assert_array_equal(
        ds.y_train[b * SUBSET_ROWS:(b + 1) * SUBSET_ROWS],
        y_train[b * 10000:b * 10000 + SUBSET_ROWS])
  np.testing.assert_array_equal(ds.y_test, y_test[:SUBSET_ROWS])


def test_cifar_pickle_label_list_longer_than_data(tmp_path):
  write_pickle_folder(tmp_path / "cifar10" / "cifar-10-batches-py-subset",
                      rows=3, meta_rows=10000, label_len=10000)
  ds = data.load_dataset("cifar10", data_dir=tmp_path)
  assert ds.x_train.shape == (15, 32, 32, 3) and ds.y_train.shape == (15,)
  assert ds.x_test.shape == (3, 32, 32, 3)


def test_cifar_pickle_pixel_layout(tmp_path):
  folder = write_pickle_folder(tmp_path / "cifar-10-batches-py", rows=2,
                               meta_rows=2)
  x = np.zeros((2, 32, 32, 3), np.uint8)
  x[0, 1, 2] = (10, 20, 30)  # red, green, blue of pixel (row 1, column 2)
  write_batch(folder / "data_batch_1", x, [4, 5], protocol=4)
  ds = data.load_dataset("cifar10", data_dir=tmp_path, source="pickle")
  np.testing.assert_array_equal(ds.x_train[0, 1, 2], [10, 20, 30])
  assert ds.y_train[:2].tolist() == [4, 5]
  assert ds.meta["complete"] is True


def test_cifar_pickle_written_by_numpy1(tmp_path):
  folder = write_pickle_folder(tmp_path / "cifar-10-batches-py", rows=2,
                               meta_rows=2)
  path = folder / "test_batch"
  raw = path.read_bytes()
  assert b"cnumpy._core.multiarray\n" in raw  # protocol 2: text GLOBAL
  path.write_bytes(raw.replace(b"cnumpy._core.multiarray\n",
                               b"cnumpy.core.multiarray\n"))
  ds = data.load_dataset("cifar10", data_dir=tmp_path, source="pickle")
  assert ds.x_test.shape == (2, 32, 32, 3)


def test_cifar_auto_prefers_complete_official_pickles(data_dir, tmp_path):
  base = tmp_path / "cifar10"
  write_pickle_folder(base / "cifar-10-batches-py", rows=2, meta_rows=2)
  (base / "cifar10-jpeg-q75.tar.gz").symlink_to(
      data_dir / "cifar10" / "cifar10-jpeg-q75.tar.gz")
  ds = data.load_dataset("cifar10", data_dir=tmp_path)
  assert ds.source == f"cifar10-pickle:{base / 'cifar-10-batches-py'}"


def test_cifar_auto_order(data_dir, cifar_jpeg, tmp_path):
  # The real folder has the JPEG archive and the subset: JPEG wins.
  ds = data.load_dataset("cifar10", data_dir=data_dir)
  assert ds.source == ("cifar10-jpeg:" + str(data_dir / "cifar10" /
                                             "cifar10-jpeg-q75.tar.gz"))
  assert ds.meta["cache"] == "hit"
  # An incomplete official folder loses to the archive too.
  write_pickle_folder(tmp_path / "cifar10" / "cifar-10-batches-py", rows=2,
                      meta_rows=10000)
  (tmp_path / "cifar10" / "cifar10-jpeg-q75.tar.gz").symlink_to(
      data_dir / "cifar10" / "cifar10-jpeg-q75.tar.gz")
  assert data.load_dataset("cifar10", data_dir=tmp_path).source.startswith(
      "cifar10-jpeg:")
  # Without an archive, the pickles are used.
  (tmp_path / "cifar10" / "cifar10-jpeg-q75.tar.gz").unlink()
  assert data.load_dataset("cifar10", data_dir=tmp_path).source.startswith(
      "cifar10-pickle:")
  # Subset only.
  only_subset = tmp_path / "subset_only"
  only_subset.mkdir()
  (only_subset / "cifar-10-batches-py-subset").symlink_to(
      data_dir / "cifar10" / "cifar-10-batches-py-subset")
  ds = data.load_dataset("cifar10", data_dir=only_subset)
  assert ds.source.endswith("cifar-10-batches-py-subset")
  assert ds.x_train.shape[0] == 5 * SUBSET_ROWS


def test_cifar_missing_everything(tmp_path):
  (tmp_path / "cifar10").mkdir()
  raises_one_line(lambda: data.load_dataset("cifar10", data_dir=tmp_path),
                  "cifar-10-batches-py/", "cifar10-jpeg-q75.tar.gz",
                  tmp_path / "cifar10", "HINT_JAX_DATA_DIR", "--data-dir")
  raises_one_line(
      lambda: data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg"),
      "cifar10-jpeg-q75.tar.gz")
  raises_one_line(
      lambda: data.load_dataset("cifar10", data_dir=tmp_path,
                                source="pickle"), "cifar-10-batches-py/")


def test_cifar_corrupt_pickle(data_dir, tmp_path):
  folder = tmp_path / "cifar-10-batches-py-subset"
  shutil.copytree(data_dir / "cifar10" / "cifar-10-batches-py-subset", folder)
  target = folder / "data_batch_3"
  target.chmod(0o644)
  target.write_bytes(target.read_bytes()[:5000])
  raises_one_line(lambda: data.load_dataset("cifar10", data_dir=tmp_path),
                  target, "corrupt", "data_batch_3")


def test_cifar_pickle_missing_batch(data_dir, tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()
  for name in cifar.TRAIN_BATCHES[:3]:
    (folder / name).symlink_to(
        data_dir / "cifar10" / "cifar-10-batches-py-subset" / name)
  raises_one_line(lambda: data.load_dataset("cifar10", data_dir=tmp_path),
                  folder / "data_batch_4", "missing")


def test_cifar_pickle_refuses_code(tmp_path):
  class Evil:

    def __reduce__(self):
      return (print, ("owned",))

  folder = write_pickle_folder(tmp_path / "cifar-10-batches-py", rows=1,
                               meta_rows=1)
  with open(folder / "test_batch", "wb") as f:
    pickle.dump({b"data": Evil(), b"labels": [0]}, f)
  raises_one_line(lambda: data.load_dataset("cifar10", data_dir=tmp_path),
                  folder / "test_batch", "forbidden global")


# --------------------------------------------------------------------------
# CIFAR-10 JPEG copy.


def test_cifar_jpeg_real(cifar_jpeg, exact_labels, cifar_subset):
  ds = cifar_jpeg
  assert ds.x_train.shape == (50000, 32, 32, 3)
  assert ds.x_test.shape == (10000, 32, 32, 3)
  assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
  assert np.bincount(ds.y_train).tolist() == [5000] * 10
  assert np.bincount(ds.y_test).tolist() == [1000] * 10
  assert ds.meta["order"] == "official" and ds.meta["lossy"] is True
  assert ds.source.startswith("cifar10-jpeg:")
  assert ds.source.endswith("cifar10-jpeg-q75.tar.gz")
  y_train, y_test = exact_labels
  np.testing.assert_array_equal(ds.y_train, y_train)
  np.testing.assert_array_equal(ds.y_test, y_test)
  # Same images as the exact pixels, up to JPEG loss (about 5.8 grey levels).
  for b in range(5):
    jpeg = ds.x_train[b * 10000:b * 10000 + SUBSET_ROWS].astype(np.int16)
    exact = cifar_subset.x_train[b * SUBSET_ROWS:(b + 1) * SUBSET_ROWS]
    assert np.abs(jpeg - exact).mean() < 8
  assert np.abs(ds.x_test[:SUBSET_ROWS].astype(np.int16)
                - cifar_subset.x_test).mean() < 8
  mean = ds.x_train.mean(axis=(0, 1, 2), dtype=np.float64) / 255
  np.testing.assert_allclose(mean, data.CIFAR10_MEAN, atol=2e-3)


def test_cifar_jpeg_cache_hit(cifar_jpeg, data_dir, monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError("decoded again despite the cache")

  monkeypatch.setattr(image_folder, "decode_images", fail)
  start = time.perf_counter()
  ds = data.load_dataset("cifar10", data_dir=data_dir, source="jpeg")
  seconds = time.perf_counter() - start
  assert ds.meta["cache"] == "hit"
  assert pathlib.Path(ds.meta["cache_path"]).is_file()
  assert seconds < 10, seconds
  np.testing.assert_array_equal(ds.x_train[:100], cifar_jpeg.x_train[:100])
  np.testing.assert_array_equal(ds.y_train, cifar_jpeg.y_train)


def test_cifar_jpeg_cache_keyed_by_archive(tmp_path, monkeypatch):
  monkeypatch.setenv("HINT_JAX_CACHE_DIR", str(tmp_path / "cache"))
  archive = tmp_path / "cifar10-jpeg-q75.tar.gz"
  write_tar(archive, small_tree())
  first = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  second = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  assert (first.meta["cache"], second.meta["cache"]) == ("miss", "hit")
  files = small_tree()
  files["test/ship/0001.png"] = png_bytes((1, 8, 0))
  write_tar(archive, files)  # a changed archive is decoded again
  third = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  assert third.meta["cache"] == "miss" and third.x_test.shape[0] == 2


def test_cifar_jpeg_damaged_or_unusable_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("HINT_JAX_CACHE_DIR", str(tmp_path / "cache"))
  write_tar(tmp_path / "cifar10-jpeg-q75.tar.gz", small_tree())
  first = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  pathlib.Path(first.meta["cache_path"]).write_bytes(b"garbage")
  second = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  assert second.meta["cache"] == "miss"
  np.testing.assert_array_equal(second.x_train, first.x_train)
  (tmp_path / "not_a_dir").write_text("")
  monkeypatch.setenv("HINT_JAX_CACHE_DIR", str(tmp_path / "not_a_dir" / "c"))
  third = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  assert third.meta["cache"] == "off"
  np.testing.assert_array_equal(third.x_train, first.x_train)


@pytest.mark.parametrize("prefix", ["", "cifar10-jpeg-q75/"])
def test_image_tree_tar_layout_and_order(tmp_path, prefix):
  write_tar(tmp_path / "cifar10-jpeg-q75.tar.gz", small_tree(prefix))
  ds = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  assert ds.y_train.tolist() == [0, 0, 0, 3, 3]
  assert ds.x_train[:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1]
  assert ds.y_test.tolist() == [8]
  assert ds.meta["order"] == "class-folder"


def test_image_tree_extracted_folder(tmp_path):
  root = tmp_path / "cifar10" / "cifar10-jpeg-q75"
  for name, blob in small_tree().items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(blob)
  (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
  ds = data.load_dataset("cifar10", data_dir=tmp_path)
  assert ds.source == f"cifar10-jpeg:{root}"
  assert ds.x_train.shape == (5, 32, 32, 3)


def test_image_tree_uses_labels_file_for_official_order(tmp_path):
  write_tar(tmp_path / "cifar10-jpeg-q75.tar.gz", small_tree())
  np.savez(tmp_path / "labels-exact.npz", y_train=np.array([3, 0, 0, 3, 0]),
           y_test=np.array([8]))
  ds = data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg")
  assert ds.meta["order"] == "official"
  assert ds.y_train.tolist() == [3, 0, 0, 3, 0]
  assert ds.x_train[:, 0, 0, 0].tolist() == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("mutate,needle", [
    (lambda f: f.update({"train/kangaroo/0.png": png_bytes((0, 0, 0))}),
     "kangaroo"),
    (lambda f: f.update({"train/cat/0003.png": b"not an image"}),
     "train/cat/0003.png"),
    (lambda f: f.update({"train/cat/0004.png": png_bytes((0, 0, 0), (8, 8))}),
     "one size"),
    (lambda f: [f.pop(k) for k in list(f) if k.startswith("test/")],
     "no images under test/"),
    (lambda f: f.update({"valid/cat/0.png": png_bytes((0, 0, 0))}),
     "valid/cat/0.png"),
])
def test_image_tree_errors(tmp_path, mutate, needle):
  files = small_tree()
  mutate(files)
  write_tar(tmp_path / "cifar10-jpeg-q75.tar.gz", files)
  raises_one_line(
      lambda: data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg"),
      needle)


def test_image_tree_truncated_archive(tmp_path):
  archive = tmp_path / "cifar10-jpeg-q75.tar.gz"
  write_tar(archive, small_tree())
  archive.write_bytes(archive.read_bytes()[:200])
  raises_one_line(
      lambda: data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg"),
      archive, "corrupt")


def test_image_tree_empty_folder(tmp_path):
  (tmp_path / "cifar10-jpeg-q75").mkdir()
  raises_one_line(
      lambda: data.load_dataset("cifar10", data_dir=tmp_path, source="jpeg"),
      "no images under train/")


def test_natural_key():
  names = ["10.jpg", "2.jpg", "0001.jpg", "a.jpg"]
  assert sorted(names, key=image_folder.natural_key) == [
      "0001.jpg", "2.jpg", "10.jpg", "a.jpg"]


# --------------------------------------------------------------------------
# Digits.


def test_digits(digits_ds):
  ds = digits_ds
  assert ds.x_train.shape == (1397, 8, 8, 1)
  assert ds.x_test.shape == (400, 8, 8, 1)
  assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
  assert ds.x_train.max() == 255 and ds.x_train.min() == 0
  values = np.unique(np.concatenate([ds.x_train.ravel(), ds.x_test.ravel()]))
  assert values.tolist() == [round(v * 255 / 16) for v in range(17)]
  again = data.load_dataset("digits")
  np.testing.assert_array_equal(ds.x_test, again.x_test)
  np.testing.assert_allclose((ds.x_train / 255.0).mean(), data.DIGITS_MEAN[0],
                             atol=1e-3)


# --------------------------------------------------------------------------
# Splits.


def test_split_defaults_and_disjointness(mnist_ds):
  s = data.split_train_val(mnist_ds, seed=3)
  assert s.x_train.shape == (59000, 28, 28, 1)
  assert s.x_val.shape == (1000, 28, 28, 1)
  assert s.x_test.shape == (10000, 28, 28, 1)
  assert len(np.intersect1d(s.train_idx, s.val_idx)) == 0
  np.testing.assert_array_equal(
      np.sort(np.concatenate([s.train_idx, s.val_idx])), np.arange(60000))
  np.testing.assert_array_equal(s.x_val, mnist_ds.x_train[s.val_idx])
  np.testing.assert_array_equal(s.y_train, mnist_ds.y_train[s.train_idx])
  assert s.seed == 3 and s.subset_seed is None and s.name == "mnist"


def test_split_determinism_and_subset(digits_ds):
  a = data.split_train_val(digits_ds, seed=1)
  b = data.split_train_val(digits_ds, seed=1)
  c = data.split_train_val(digits_ds, seed=2)
  assert a.x_val.shape[0] == 100 and a.x_train.shape[0] == 1297
  np.testing.assert_array_equal(a.val_idx, b.val_idx)
  assert not np.array_equal(a.val_idx, c.val_idx)
  sub = data.split_train_val(digits_ds, num_val=50, seed=1, subset=500)
  assert sub.x_train.shape[0] == 500 and sub.x_val.shape[0] == 50
  assert set(sub.train_idx) <= set(
      data.split_train_val(digits_ds, num_val=50, seed=1).train_idx)
  np.testing.assert_array_equal(sub.x_train, digits_ds.x_train[sub.train_idx])
  again = data.take_subset(data.split_train_val(digits_ds, 50, 1), 500, 1)
  np.testing.assert_array_equal(again.train_idx, sub.train_idx)
  assert sub.subset_seed == 1


def test_split_errors(digits_ds):
  raises_one_line(lambda: data.split_train_val(digits_ds, num_val=1397),
                  "num_val=1397", error=ConfigError)
  raises_one_line(lambda: data.split_train_val(digits_ds, num_val=-1),
                  "num_val", error=ConfigError)
  raises_one_line(
      lambda: data.split_train_val(digits_ds, num_val=100, subset=1298),
      "subset=1298", "1297", error=ConfigError)
  raises_one_line(lambda: data.take_subset(
      data.split_train_val(digits_ds), "many"), "subset", error=ConfigError)


# --------------------------------------------------------------------------
# The project's .npz format.


def test_npz_round_trip(digits_ds, tmp_path):
  path = data.save_npz(tmp_path / "digits" / "digits.npz", digits_ds)
  back = data.load_npz(path)
  for key in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(back, key), getattr(digits_ds, key))
    assert getattr(back, key).dtype == getattr(digits_ds, key).dtype
  assert back.class_names == digits_ds.class_names
  assert back.meta["saved_from"] == digits_ds.source
  via_loader = data.load_dataset("digits", data_dir=tmp_path, source="npz")
  assert via_loader.source == f"digits-npz:{path}"
  raises_one_line(
      lambda: data.load_dataset("mnist", data_dir=tmp_path, source="npz"),
      "mnist.npz", "not found")


def _npz_with(tmp_path, digits_ds, **overrides):
  arrays = {"x_train": digits_ds.x_train, "y_train": digits_ds.y_train,
            "x_test": digits_ds.x_test, "y_test": digits_ds.y_test,
            "metadata": np.asarray(json.dumps({
                "format": "hint_jax.dataset", "version": 1, "name": "digits",
                "num_classes": 10, "class_names": list("0123456789"),
                "source": "test", "meta": {}}))}
  arrays.update(overrides)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  return path


@pytest.mark.parametrize("override,needle", [
    ({"x_train": np.zeros((1397, 8, 8, 1), np.float32)}, "uint8"),
    ({"x_test": np.zeros((400, 8, 8), np.uint8)}, "x_test"),
    ({"y_train": np.full(1397, 10)}, "labels span"),
    ({"y_test": np.zeros(3, np.int32)}, "400 test images but 3 labels"),
    ({"y_test": None}, "lacks y_test"),
    ({"metadata": np.asarray("{}")}, "not a hint_jax.dataset file"),
    ({"metadata": np.asarray("{not json")}, "corrupt"),
])
def test_npz_validation(tmp_path, digits_ds, override, needle):
  path = _npz_with(tmp_path, digits_ds, **override)
  raises_one_line(lambda: data.load_npz(path), path, needle)


def test_npz_corrupt_and_wrong_name(tmp_path, digits_ds):
  path = tmp_path / "x.npz"
  path.write_bytes(b"PK\x03\x04 garbage")
  raises_one_line(lambda: data.load_npz(path), path, "corrupt")
  good = data.save_npz(tmp_path / "mnist.npz", digits_ds)
  raises_one_line(
      lambda: data.load_dataset("mnist", data_dir=tmp_path, source="npz"),
      good, "'digits'")


# --------------------------------------------------------------------------
# tensorflow-datasets (mocked; never touches the network).


@pytest.fixture
def no_network(monkeypatch):
  """Makes any connection attempt fail; the test checks none was made."""
  attempts = []

  def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network access is disabled in tests")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket.socket, "connect_ex", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)
  yield attempts
  assert not attempts, f"network access attempted: {attempts}"


def test_tfds_not_installed(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  raises_one_line(
      lambda: data.load_dataset("mnist", data_dir=tmp_path, source="tfds"),
      "pip install hint_jax[tfds]")


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)),
                                        ("cifar10", (32, 32, 3))])
def test_tfds_mock(name, shape, tmp_path, monkeypatch, no_network):
  tfds = pytest.importorskip("tensorflow_datasets")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  (tmp_path / "tensorflow_datasets").mkdir()
  with tfds.testing.mock_data(num_examples=6):
    ds = data.load_dataset(name, data_dir=tmp_path, source="tfds")
  assert ds.x_train.shape == (6,) + shape and ds.x_test.shape == (6,) + shape
  assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int32
  assert ds.y_train.min() >= 0 and ds.y_train.max() < 10
  assert ds.source == f"{name}-tfds:{tmp_path / 'tensorflow_datasets'}"


def test_tfds_not_prepared(tmp_path, monkeypatch, no_network):
  pytest.importorskip("tensorflow_datasets")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  (tmp_path / "tensorflow_datasets").mkdir()
  raises_one_line(
      lambda: data.load_dataset("mnist", data_dir=tmp_path, source="tfds"),
      "tfds build mnist --file_format=array_record")
