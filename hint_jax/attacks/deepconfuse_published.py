"""DeepConfuse with the generator its authors publish for MNIST.

The DeepConfuse authors (Feng, Cai, Zhou, NeurIPS 2019) publish their
trained MNIST generator as a PyTorch *legacy* (pre-1.6, non-zip) ``state_dict``
file, ``atkmnist_best.pt``. This module reads that file with ``pickle`` and
numpy alone (no torch), runs the network in JAX in eval mode (BatchNorm on
its running statistics) and makes the poison as the authors do:
``x~ = clip(x + eps * g(x), 0, 1)`` with ``eps = 0.3`` and ``g`` ending in a
tanh, stored as whole grey levels within the budget.

The network, in PyTorch's layer order (NCHW, 1x28x28 input in [0, 1]):

- encoder.0 Conv2d(1, 16, 3, stride 3, padding 1), encoder.1 BatchNorm2d,
  ReLU, MaxPool2d(2, 2);
- encoder.4 Conv2d(16, 64, 3, stride 2, padding 1), encoder.5 BatchNorm2d,
  ReLU, MaxPool2d(2, stride 1);
- decoder.0 ConvTranspose2d(64, 128, 3, stride 2), decoder.1 BatchNorm2d,
  ReLU;
- decoder.3 ConvTranspose2d(128, 64, 5, stride 3, padding 1), decoder.4
  BatchNorm2d, ReLU;
- decoder.6 ConvTranspose2d(64, 1, 2, stride 2, padding 1), decoder.7
  BatchNorm2d, tanh.

The weights are the DeepConfuse authors' (free for academic use); the user
supplies the file, which never enters this repository.
"""

import collections
import functools
import hashlib
import io
import pathlib
import pickle
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import xla_options
from hint_jax.attacks.untargeted import budget_levels, quantize_within_budget
from hint_jax.errors import DataError

FILE_NAME = "atkmnist_best.pt"
# Where the data directory keeps the file (``<data dir>/deepconfuse/...``).
DATA_SUBDIR = "deepconfuse"
# The authors' file, byte for byte (a different file is still accepted if its
# tensors have the expected names and shapes; its checksum is recorded).
PUBLISHED_SHA256 = ("aaf7586cd16e0b0e9ad053a6845716a5f22a45b584e8f272757b2aa0"
                    "b447f86c")
INPUT_SHAPE = (28, 28, 1)
BN_EPS = 1e-5
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c

# (name, kind, out/in channels, kernel, stride, padding) in forward order.
# Conv weights are (out, in, k, k); transposed-conv weights (in, out, k, k),
# as PyTorch stores them.
_LAYERS = (
    ("encoder.0", "conv", (16, 1, 3, 3), 3, 1),
    ("encoder.4", "conv", (64, 16, 3, 3), 2, 1),
    ("decoder.0", "convT", (64, 128, 3, 3), 2, 0),
    ("decoder.3", "convT", (128, 64, 5, 5), 3, 1),
    ("decoder.6", "convT", (64, 1, 2, 2), 2, 1),
)
_BATCHNORMS = (("encoder.1", 16), ("encoder.5", 64), ("decoder.1", 128),
               ("decoder.4", 64), ("decoder.7", 1))


def expected_shapes() -> Dict[str, tuple]:
  """Every floating-point tensor the generator needs, name -> shape."""
  shapes = {}
  for name, kind, wshape, _, _ in _LAYERS:
    shapes[f"{name}.weight"] = wshape
    shapes[f"{name}.bias"] = (wshape[0] if kind == "conv" else wshape[1],)
  for name, c in _BATCHNORMS:
    for part in ("weight", "bias", "running_mean", "running_var"):
      shapes[f"{name}.{part}"] = (c,)
  return shapes


def default_path(data_dir) -> pathlib.Path:
  """Where the file is looked for under a data directory."""
  return pathlib.Path(data_dir) / DATA_SUBDIR / FILE_NAME


_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
                   "HalfStorage": np.float16, "LongStorage": np.int64,
                   "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_}


class _StorageType:
  """Stands in for ``torch.<X>Storage`` while unpickling."""

  def __init__(self, name):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _TensorRef:
  """A tensor named in the pickle, rebuilt once its storage is read."""

  def __init__(self, storage, offset, size, stride, *unused):
    del unused
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(
        int(s) for s in stride)


def _rebuild_tensor_v2(storage, offset, size, stride, *rest):
  return _TensorRef(storage, offset, size, stride, *rest)


class _LegacyUnpickler(pickle.Unpickler):
  """Resolves only the names a plain legacy ``state_dict`` uses; anything
  else (arbitrary code in a foreign pickle) is refused."""

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor_v2
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise pickle.UnpicklingError(f"unexpected object {module}.{name}")

  def persistent_load(self, pid):
    # ("storage", storage type, key, location, element count[, view])
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    return {"dtype": pid[1].dtype, "key": str(pid[2]), "numel": int(pid[4])}


def read_legacy_state_dict(path) -> Dict[str, np.ndarray]:
  """Reads a PyTorch legacy (non-zip) ``state_dict`` file with pickle and
  numpy: name -> array (little-endian, C order).

  Raises:
    DataError: the file is missing, unreadable, truncated, or not a legacy
      PyTorch state_dict (one line naming the file).
  """
  path = pathlib.Path(path)
  try:
    raw = path.read_bytes()
  except OSError as e:
    raise DataError(f"cannot read the DeepConfuse generator {path}: "
                    f"{e.strerror or e}") from None
  if raw[:2] == b"PK":
    raise DataError(f"{path} is a zip-format PyTorch file; the DeepConfuse "
                    "generator is the authors' legacy (pre-1.6) file "
                    f"{FILE_NAME}")
  f = io.BytesIO(raw)
  try:
    magic = pickle.load(f)
    if magic != _LEGACY_MAGIC:
      raise DataError(f"{path} is not a PyTorch legacy state_dict file "
                      "(wrong magic number)")
    pickle.load(f)   # protocol version
    sys_info = pickle.load(f)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian",
                                                          True)):
      raise DataError(f"{path}: big-endian PyTorch files are not supported")
    obj = _LegacyUnpickler(f).load()
    keys = pickle.load(f)
  except DataError:
    raise
  except Exception as e:  # pickle raises many types on foreign bytes
    raise DataError(f"{path} is not a readable PyTorch legacy state_dict "
                    f"file ({type(e).__name__})") from None
  if not isinstance(obj, dict) or not isinstance(keys, list):
    raise DataError(f"{path} does not hold a state_dict")
  itemsize = {t.storage["key"]: t.storage["dtype"].itemsize
              for t in obj.values() if isinstance(t, _TensorRef)}
  storages = {}   # key -> (element count, byte offset of the first element)
  for key in map(str, keys):
    head = f.read(8)
    if len(head) < 8:
      raise DataError(f"{path} is truncated (storage {len(storages)} of "
                      f"{len(keys)} missing)")
    if key not in itemsize:
      raise DataError(f"{path}: storage {key} is used by no tensor")
    storages[key] = (int(np.frombuffer(head, "<i8")[0]), f.tell())
    f.seek(storages[key][0] * itemsize[key], 1)
    if f.tell() > len(raw):
      raise DataError(f"{path} is truncated (storage {len(storages)} of "
                      f"{len(keys)} is cut short)")
  out = {}
  for name, t in obj.items():
    if not isinstance(t, _TensorRef):
      continue
    numel, start = storages.get(t.storage["key"], (None, None))
    if numel is None:
      raise DataError(f"{path}: tensor {name} has no storage")
    dtype = t.storage["dtype"].newbyteorder("<")
    flat = np.frombuffer(raw, dtype, count=numel, offset=start)
    strides = tuple(s * dtype.itemsize for s in t.stride)
    count = int(np.prod(t.size)) if t.size else 1
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if count and last >= numel:
      raise DataError(f"{path}: tensor {name} runs past its storage")
    out[name] = np.lib.stride_tricks.as_strided(
        flat[t.offset:], t.size, strides).astype(dtype.newbyteorder("="))
  return out


def load_generator(path) -> Dict[str, np.ndarray]:
  """The published generator's parameters (float32), checked by name and
  shape.

  Raises:
    DataError: missing, unreadable, truncated, foreign or mis-shaped file.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise DataError(f"the DeepConfuse generator {path} is missing: put the "
                    f"authors' published MNIST generator {FILE_NAME} in "
                    f"<data dir>/{DATA_SUBDIR}/ or give its path")
  state = read_legacy_state_dict(path)
  params = {}
  for name, shape in expected_shapes().items():
    if name not in state:
      raise DataError(f"{path} is not the DeepConfuse MNIST generator (no "
                      f"tensor {name})")
    a = state[name]
    if a.shape != shape or not np.issubdtype(a.dtype, np.floating):
      raise DataError(f"{path} is not the DeepConfuse MNIST generator "
                      f"({name} is {a.dtype}{list(a.shape)}, expected "
                      f"float{list(shape)})")
    if not np.all(np.isfinite(a)):
      raise DataError(f"{path}: {name} holds non-finite values")
    params[name] = np.asarray(a, np.float32)
  return params


def file_sha256(path) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _conv(x, w, b, stride, pad):
  """PyTorch Conv2d, NCHW / OIHW."""
  y = jax.lax.conv_general_dilated(
      x, w, (stride, stride), [(pad, pad), (pad, pad)],
      dimension_numbers=("NCHW", "OIHW", "NCHW"),
      precision=jax.lax.Precision.HIGHEST)
  return y + b[None, :, None, None]


def _conv_transpose(x, w, b, stride, pad):
  """PyTorch ConvTranspose2d (weights (in, out, k, k)), as the gradient of a
  convolution: dilate the input by the stride, pad by k - 1 - pad and
  convolve with the spatially flipped, in/out-swapped kernel."""
  k = w.shape[-1]
  wt = jnp.flip(w, (2, 3)).transpose(1, 0, 2, 3)
  q = k - 1 - pad
  y = jax.lax.conv_general_dilated(
      x, wt, (1, 1), [(q, q), (q, q)], lhs_dilation=(stride, stride),
      dimension_numbers=("NCHW", "OIHW", "NCHW"),
      precision=jax.lax.Precision.HIGHEST)
  return y + b[None, :, None, None]


def _batchnorm(x, p, name):
  scale = p[f"{name}.weight"] / jnp.sqrt(p[f"{name}.running_var"] + BN_EPS)
  shift = p[f"{name}.bias"] - p[f"{name}.running_mean"] * scale
  return x * scale[None, :, None, None] + shift[None, :, None, None]


def _max_pool(x, size, stride):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, size, size),
                               (1, 1, stride, stride), "VALID")


def generator_apply(params, x):
  """g(x): NHWC float images (n, 28, 28, 1) in [0, 1] -> the tanh map of
  the same shape, in [-1, 1]."""
  h = x.transpose(0, 3, 1, 2)
  pools = {"encoder.0": (2, 2), "encoder.4": (2, 1)}
  for (name, kind, _, stride, pad), (bn, _) in zip(_LAYERS, _BATCHNORMS):
    layer = _conv if kind == "conv" else _conv_transpose
    h = layer(h, params[f"{name}.weight"], params[f"{name}.bias"], stride, pad)
    h = _batchnorm(h, params, bn)
    if bn == "decoder.7":
      h = jnp.tanh(h)
    else:
      h = jax.nn.relu(h)
    if name in pools:
      h = _max_pool(h, *pools[name])
  return h.transpose(0, 2, 3, 1)


@functools.partial(xla_options.jit, static_argnames=("eps",))
def _poison_chunk(params, x_u8, eps):
  x = x_u8.astype(jnp.float32) / 255.0
  return quantize_within_budget(
      x_u8, jnp.clip(x + eps * generator_apply(params, x), 0.0, 1.0), eps)


def published_poison(params, x_u8: np.ndarray, *, eps: float = 0.3,
                     chunk_size: int = 1000) -> np.ndarray:
  """Poisons uint8 MNIST images (n, 28, 28, 1) with the published generator:
  ``round(255 * clip(x + eps * g(x), 0, 1))``, projected onto the budget of
  ``budget_levels(eps)`` grey levels (rounding alone can reach one level
  more).

  Raises:
    DataError: the images are not 28x28x1.
  """
  budget_levels(eps)
  x_u8 = np.asarray(x_u8)
  if x_u8.shape[1:] != INPUT_SHAPE:
    raise DataError(f"the published DeepConfuse generator takes MNIST's "
                    f"28x28x1 images, got {x_u8.shape[1:]}")
  jparams = jax.tree.map(jnp.asarray, params)
  out = [np.asarray(_poison_chunk(jparams, jnp.asarray(x_u8[i:i + chunk_size]),
                                  float(eps)))
         for i in range(0, len(x_u8), chunk_size)]
  return np.concatenate(out) if out else x_u8.copy()
