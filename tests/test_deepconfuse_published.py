"""The DeepConfuse authors' published MNIST generator: reading the legacy
PyTorch file without torch, the forward pass against a numpy reference
written here from PyTorch's layer definitions, the poison's budget, and one
clear line for every bad file."""

import pickle

import jax.numpy as jnp
import numpy as np
import pytest

from hint_jax.attacks import deepconfuse_published as dp
from hint_jax.errors import DataError


@pytest.fixture(scope="module")
def weights_path(data_dir):
  path = dp.default_path(data_dir)
  if not path.exists():
    # The weights are the DeepConfuse authors', supplied by the user and
    # never shipped; CI's data folder holds them, so these tests run there.
    pytest.skip(f"the published generator is not in {path}")
  return path


@pytest.fixture(scope="module")
def params(weights_path):
  return dp.load_generator(weights_path)


# ------------------------------------------------- numpy reference (NCHW)
def np_conv(x, w, b, stride, pad):
  """Conv2d by its definition: out[o, i, j] = b[o] + sum_{c, u, v}
  w[o, c, u, v] * xpad[c, s*i + u, s*j + v]."""
  c, h, wd = x.shape
  o, _, k, _ = w.shape
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
  ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
  out = np.zeros((o, ho, wo), np.float64)
  for i in range(ho):
    for j in range(wo):
      patch = xp[:, stride * i:stride * i + k, stride * j:stride * j + k]
      out[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
  return out + b[:, None, None]


def np_conv_transpose(x, w, b, stride, pad):
  """ConvTranspose2d by its definition: every input pixel scatters
  x[c, i, j] * w[c, o, :, :] at (s*i, s*j) of a full-size canvas, then
  ``pad`` rows/columns are cropped from each side."""
  c, h, wd = x.shape
  _, o, k, _ = w.shape
  full = np.zeros((o, (h - 1) * stride + k, (wd - 1) * stride + k))
  for i in range(h):
    for j in range(wd):
      full[:, stride * i:stride * i + k, stride * j:stride * j + k] += (
          np.tensordot(x[:, i, j], w, axes=([0], [0])))
  full = full[:, pad:full.shape[1] - pad, pad:full.shape[2] - pad]
  return full + b[:, None, None]


def np_bn(x, p, name):
  return ((x - p[f"{name}.running_mean"][:, None, None])
          / np.sqrt(p[f"{name}.running_var"][:, None, None] + 1e-5)
          * p[f"{name}.weight"][:, None, None]
          + p[f"{name}.bias"][:, None, None])


def np_max_pool(x, size, stride):
  c, h, w = x.shape
  ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
  out = np.empty((c, ho, wo))
  for i in range(ho):
    for j in range(wo):
      out[:, i, j] = x[:, stride * i:stride * i + size,
                       stride * j:stride * j + size].max(axis=(1, 2))
  return out


def np_generator(p, img):
  """The network of the file's README on one (1, 28, 28) image."""
  p = {k: v.astype(np.float64) for k, v in p.items()}
  relu = lambda v: np.maximum(v, 0)
  h = np_conv(img, p["encoder.0.weight"], p["encoder.0.bias"], 3, 1)
  h = np_max_pool(relu(np_bn(h, p, "encoder.1")), 2, 2)
  h = np_conv(h, p["encoder.4.weight"], p["encoder.4.bias"], 2, 1)
  h = np_max_pool(relu(np_bn(h, p, "encoder.5")), 2, 1)
  h = np_conv_transpose(h, p["decoder.0.weight"], p["decoder.0.bias"], 2, 0)
  h = relu(np_bn(h, p, "decoder.1"))
  h = np_conv_transpose(h, p["decoder.3.weight"], p["decoder.3.bias"], 3, 1)
  h = relu(np_bn(h, p, "decoder.4"))
  h = np_conv_transpose(h, p["decoder.6.weight"], p["decoder.6.bias"], 2, 1)
  return np.tanh(np_bn(h, p, "decoder.7"))


# ------------------------------------------------------------------ tests
def test_reads_every_tensor_of_the_authors_file(weights_path, params):
  assert dp.file_sha256(weights_path) == dp.PUBLISHED_SHA256
  assert {k: v.shape for k, v in params.items()} == dp.expected_shapes()
  raw = dp.read_legacy_state_dict(weights_path)
  # BatchNorm's step counters are int64 scalars, read but not used.
  assert raw["encoder.1.num_batches_tracked"].dtype == np.int64
  assert raw["encoder.1.num_batches_tracked"].shape == ()
  # Trained running variances are positive and not the initial ones.
  assert np.all(raw["encoder.1.running_var"] > 0)
  assert not np.allclose(raw["encoder.1.running_var"], 1.0)


def test_one_layer_matches_the_numpy_definitions(params):
  rng = np.random.default_rng(0)
  x = rng.random((1, 28, 28))
  got = dp._conv(jnp.asarray(x[None], jnp.float32),
                 params["encoder.0.weight"], params["encoder.0.bias"], 3, 1)
  want = np_conv(x, params["encoder.0.weight"].astype(np.float64),
                 params["encoder.0.bias"], 3, 1)
  assert got.shape == (1, 16, 10, 10)
  # float32 sums of 9 products of O(1) values: 1e-5 is ~100 ulps.
  np.testing.assert_allclose(np.asarray(got[0]), want, atol=1e-5)

  h = rng.standard_normal((128, 5, 5))
  got = dp._conv_transpose(jnp.asarray(h[None], jnp.float32),
                           params["decoder.3.weight"],
                           params["decoder.3.bias"], 3, 1)
  want = np_conv_transpose(h, params["decoder.3.weight"].astype(np.float64),
                           params["decoder.3.bias"], 3, 1)
  assert got.shape == (1, 64, 15, 15)
  # Sums of up to 128 * 4 products: relative 1e-5 of the output scale.
  np.testing.assert_allclose(np.asarray(got[0]), want,
                             atol=1e-5 * np.abs(want).max())


def test_whole_network_matches_the_numpy_reference(data_dir, params):
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  x_u8 = data_lib.load_dataset("mnist", data_dir).x_train[:2]
  x = x_u8.astype(np.float32) / 255.0
  got = np.asarray(dp.generator_apply(params, jnp.asarray(x)))
  assert got.shape == (2, 28, 28, 1)
  for i in range(2):
    want = np_generator(params, x[i].transpose(2, 0, 1).astype(np.float64))
    # Five float32 layers against float64; tanh's output is in [-1, 1].
    np.testing.assert_allclose(got[i, ..., 0], want[0], atol=2e-4)
  # The map is not trivial: it uses most of its range.
  assert np.abs(got).mean() > 0.3


def test_poison_keeps_the_budget_exactly_after_rounding(data_dir, params):
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  x = data_lib.load_dataset("mnist", data_dir).x_train[:500]
  adv = dp.published_poison(params, x, eps=0.3, chunk_size=200)
  d = adv.astype(np.int32) - x.astype(np.int32)
  assert adv.dtype == np.uint8 and adv.shape == x.shape
  assert np.abs(d).max() == 76          # floor(0.3 * 255), reached
  # Each pixel is round(255 * clip(x + 0.3 g(x), 0, 1)), then projected.
  xf = x.astype(np.float32) / 255.0
  g = np.asarray(dp.generator_apply(params, jnp.asarray(xf)))
  want = np.clip(np.round(np.clip(xf + 0.3 * g, 0, 1) * 255.0),
                 x.astype(np.int32) - 76, x.astype(np.int32) + 76)
  # float32 rounding at a .5 boundary may land one level apart.
  assert np.mean(adv != want) < 1e-4 and np.abs(adv - want).max() <= 1
  # The README's measured strength: mean |delta| ~ 0.175.
  assert 0.15 < np.abs(d).mean() / 255 < 0.2
  with pytest.raises(DataError, match="28x28x1"):
    dp.published_poison(params, np.zeros((2, 8, 8, 1), np.uint8))


def _one_line(err):
  msg = str(err.value)
  assert "\n" not in msg and msg
  return msg


def test_bad_files_give_one_clear_line(tmp_path, weights_path):
  raw = weights_path.read_bytes()
  cases = {
      "random.pt": np.random.default_rng(0).bytes(4096),
      "truncated.pt": raw[:len(raw) // 2],
      "header_only.pt": raw[:200],
      "zip.pt": b"PK\x03\x04" + b"\x00" * 100,
      "empty.pt": b"",
  }
  for name, content in cases.items():
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as err:
      dp.load_generator(tmp_path / name)
    assert name in _one_line(err)
  # A well-formed pickle of something else: a foreign file.
  foreign = tmp_path / "foreign.pt"
  foreign.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
  with pytest.raises(DataError) as err:
    dp.load_generator(foreign)
  assert "foreign.pt" in _one_line(err)
  # A legacy file with a tensor renamed: read, but not the generator.
  renamed = tmp_path / "renamed.pt"
  renamed.write_bytes(raw.replace(b"encoder.0.weight", b"encoder.9.weight"))
  with pytest.raises(DataError, match="no tensor encoder.0.weight") as err:
    dp.load_generator(renamed)
  _one_line(err)
  # A missing file says where to put it.
  with pytest.raises(DataError, match="deepconfuse/") as err:
    dp.load_generator(tmp_path / "nowhere" / dp.FILE_NAME)
  _one_line(err)


def test_pickle_code_is_not_run(tmp_path):
  """A pickle that would call a function on load is refused, not run."""
  class Evil:
    def __reduce__(self):
      return (print, ("ran",))
  path = tmp_path / "evil.pt"
  with open(path, "wb") as f:
    for obj in (dp._LEGACY_MAGIC, 1001, {"little_endian": True}):
      pickle.dump(obj, f)
    pickle.dump(Evil(), f)
  with pytest.raises(DataError, match="evil.pt"):
    dp.read_legacy_state_dict(path)


def test_poison_command_records_the_generator(tmp_path, data_dir, capsys):
  from hint_jax import attacks  # pylint: disable=g-import-not-at-top
  from hint_jax.cli.main import main  # pylint: disable=g-import-not-at-top
  out = tmp_path / "dc.npz"
  assert main(["poison", "--dataset", "mnist", "--attacks", "dc",
               "--ratio", "0.01", "--data-dir", str(data_dir), "--out",
               str(out), "--no-progress"]) == 0
  meta = attacks.load_poisoned(out).meta
  (entry,) = meta["attacks"]
  assert entry["generator"] == "published"
  assert entry["sha256"] == dp.PUBLISHED_SHA256 and entry["authors_file"]
  assert "params" not in entry and not meta["reductions"]
  capsys.readouterr()
  # The published generator is MNIST's; other data must ask for the
  # reduced one, and a missing file is one line before any work.
  assert main(["poison", "--dataset", "digits", "--attacks", "dc",
               "--dc-generator", "published", "--out",
               str(tmp_path / "d.npz")]) == 2
  assert "--dc-generator reduced" in capsys.readouterr().err
  assert main(["poison", "--dataset", "mnist", "--attacks", "dc",
               "--data-dir", str(data_dir), "--dc-weights",
               str(tmp_path / "missing.pt"), "--out",
               str(tmp_path / "m.npz")]) == 2
  err = capsys.readouterr().err
  assert "missing.pt" in err and err.count("\n") == 1
  assert not (tmp_path / "m.npz").exists()
  assert not (tmp_path / "m.npz.work").exists()
