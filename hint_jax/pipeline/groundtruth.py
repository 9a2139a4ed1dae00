"""Attribution ground truth as a whole job: the models of a protocol
retrained on LDS subsets or leave-one-out sets, many at once, resumably.

A *protocol* fixes the data slice, the model and its training:

- ``mnist_lr`` and ``mnist_mlp``: dattri's MNIST-10 benchmark (the first
  5000 MNIST training images and the first 500 test images, pixels scaled
  to [0, 1] and normalised with mean 0.1307 and std 0.3081); logistic
  regression 784 → 10 with a bias, SGD lr 0.01, batch 32, 20 epochs; the
  MLP 784-128-64-10 with ReLU and dropout 0.1 after each hidden layer, SGD
  lr 0.01 with momentum 0.9, batch 32, 50 epochs. PyTorch's default
  initialisation for every layer (U(±1/√fan_in)).
- ``mnist_convnet``: the project's MNIST ConvNet (the HINT paper's model,
  with BatchNorm) on the same 5000 / 500 slice, pixels in [0, 1] as the
  paper trains it, plain SGD lr 0.01, 10 epochs: the MNIST preset, except
  batches of 125 instead of 128 (a model with batch statistics trains on
  full batches only, and 125 divides both 2500 and 5000).
- ``digits_lr``, ``digits_mlp`` and ``digits_convnet`` (quick): the same
  kinds of model on the first 500 training and 100 test images of the
  embedded 8x8 digits (the LR and MLP normalised with the slice's own mean
  and std, the small ConvNet in [0, 1]), 10 epochs; minutes, for tests and
  CI.

Files written in ``out`` (an interrupted job resumes from its finished
chunks; a folder made with other settings is refused):

- ``settings.json``: the job's settings and the protocol's description.
- ``masks.npy`` (LDS: (m, n) booleans, subset j's training examples) or
  ``removed.npy`` (LOO: the removed examples' indices), and ``seeds.npy``
  (each model's seed; see `hint_jax.attribution.groundtruth`).
- ``chunks/``: the test losses of each finished chunk of models.
- ``test_loss.npy``: float32 (models, n_test), written when every chunk is
  done. LDS: row j · R + r is subset j's r-th seed. LOO: row 0 is the model
  trained on all n examples, row 1 + j the one without ``removed[j]``.
- ``groundtruth.json``: what was trained, the models' mean test accuracy,
  and the time spent training.
"""

import dataclasses
import json
import pathlib
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import data as data_lib
from hint_jax.attribution import groundtruth as gt
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import capture
from hint_jax.models.convnet import ConvNet
from hint_jax.models.simple import MLP, LogReg
from hint_jax.pipeline import files
from hint_jax.pipeline.training import Reporter

KINDS = ("lds", "loo")
RECORD_FILE = "groundtruth.json"
LOSS_FILE = "test_loss.npy"


# The protocols' convolutional models (both have BatchNorm).
CONV_MODELS = ("convnet", "convnet_small")


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Data slice, model and training of a ground truth."""
  name: str
  dataset: str
  num_train: int
  num_test: int
  model: str                       # "lr", "mlp", "convnet", "convnet_small"
  spec: gt.TrainSpec
  hidden: tuple = ()
  dropout: float = 0.0
  mean_std: Optional[tuple] = None  # None: the training slice's own

  @property
  def stateful(self) -> bool:
    """The model has BatchNorm statistics (see
    `hint_jax.attribution.groundtruth`)."""
    return self.model in CONV_MODELS

  @property
  def step_loop(self) -> str:
    """How `hint_jax.attribution.groundtruth.train_models` runs an epoch's
    steps: "host" for the convolutional models on the CPU (a convolution
    inside ``lax.scan`` is many times slower there), else "scan"."""
    on_cpu = jax.default_backend() == "cpu"
    return "host" if self.model in CONV_MODELS and on_cpu else "scan"

  def module(self):
    if self.model == "lr":
      return LogReg(num_classes=10)
    if self.model == "convnet":
      return ConvNet(num_classes=10)
    if self.model == "convnet_small":   # as hint_jax.models.get_model
      return ConvNet(num_classes=10, widths=(16, 32), kernel_size=3,
                     padding="SAME")
    return MLP(num_classes=10, hidden=self.hidden, dropout=self.dropout)

  def describe(self) -> dict:
    return {"name": self.name, "dataset": self.dataset,
            "train": f"the first {self.num_train} training images",
            "test": f"the first {self.num_test} test images",
            "model": self.model, "hidden": list(self.hidden),
            "dropout": self.dropout, "normalise": self.mean_std or "own",
            "training": dataclasses.asdict(self.spec)}


PROTOCOLS = {
    "mnist_lr": Protocol("mnist_lr", "mnist", 5000, 500, "lr",
                         gt.TrainSpec(20, 32, 0.01),
                         mean_std=(0.1307, 0.3081)),
    "mnist_mlp": Protocol("mnist_mlp", "mnist", 5000, 500, "mlp",
                          gt.TrainSpec(50, 32, 0.01, momentum=0.9),
                          hidden=(128, 64), dropout=0.1,
                          mean_std=(0.1307, 0.3081)),
    "mnist_convnet": Protocol("mnist_convnet", "mnist", 5000, 500,
                              "convnet", gt.TrainSpec(10, 125, 0.01),
                              mean_std=(0.0, 1.0)),
    "digits_lr": Protocol("digits_lr", "digits", 500, 100, "lr",
                          gt.TrainSpec(10, 32, 0.01)),
    "digits_mlp": Protocol("digits_mlp", "digits", 500, 100, "mlp",
                           gt.TrainSpec(10, 32, 0.01, momentum=0.9),
                           hidden=(32,), dropout=0.1),
    "digits_convnet": Protocol("digits_convnet", "digits", 500, 100,
                               "convnet_small", gt.TrainSpec(10, 25, 0.05),
                               mean_std=(0.0, 1.0)),
}


def get_protocol(name: str) -> Protocol:
  if name not in PROTOCOLS:
    raise ConfigError(f"unknown protocol {name!r}; choose one of "
                      f"{', '.join(PROTOCOLS)}")
  return PROTOCOLS[name]


@dataclasses.dataclass(frozen=True)
class ProtocolData:
  """The protocol's arrays (float32 normalised images, int32 labels) and
  its model as pure functions."""
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  init: object        # key -> params (stateful: (params, state))
  train_loss: object  # the loss `hint_jax.attribution.groundtruth` takes
  eval_loss: object   # (member, x, y) -> (b,), inference mode
  apply: object       # (params, x) -> logits, inference mode, with taps;
                      # stateless models only (else `bind`)
  stateful: bool = False
  logits: object = None   # (member, x) -> logits, inference mode
  _module: object = None  # the flax module (for `bind`)

  def bind(self, member):
    """``(apply, params)`` of one trained model (a member of a stack, see
    `hint_jax.attribution.groundtruth.unstack`): its inference-mode
    logits as a function of its parameters alone (a stateful model's
    statistics held fixed), with K-FAC's layer taps."""
    if not self.stateful:
      return self.apply, member
    params, state = member
    return capture.tapped_apply(_Eval(self._module), state), params


def load_protocol(protocol: Protocol, data_dir=None) -> ProtocolData:
  """Reads the protocol's data slice (never downloads) and builds its
  model's functions."""
  ds = data_lib.load_dataset(protocol.dataset, data_dir)
  if len(ds.x_train) < protocol.num_train or len(ds.x_test) < \
      protocol.num_test:
    raise DataError(f"{protocol.dataset} has {len(ds.x_train)} training and "
                    f"{len(ds.x_test)} test images; {protocol.name} needs "
                    f"{protocol.num_train} and {protocol.num_test}")
  x_tr = ds.x_train[:protocol.num_train].astype(np.float32) / 255.0
  x_te = ds.x_test[:protocol.num_test].astype(np.float32) / 255.0
  mean, std = protocol.mean_std or (float(x_tr.mean()), float(x_tr.std()))
  x_tr = (x_tr - mean) / std
  x_te = (x_te - mean) / std
  module = protocol.module()
  shape = (1,) + x_tr.shape[1:]
  xent = optax.softmax_cross_entropy_with_integer_labels
  # Inference-mode logits with K-FAC's layer taps (a plain apply too).
  apply = capture.tapped_apply(_Eval(module), {})

  if protocol.stateful:
    def init(key):
      v = module.init(key, jnp.zeros(shape, jnp.float32))
      return v["params"], {"batch_stats": v["batch_stats"]}

    def train_loss(params, state, x, y, key):
      del key   # no dropout
      logits, new = module.apply({"params": params, **state}, x, train=True,
                                 mutable=["batch_stats"])
      return xent(logits, y), {"batch_stats": new["batch_stats"]}

    def logits(member, x):
      params, state = member
      return module.apply({"params": params, **state}, x)
  else:
    def init(key):
      return module.init(key, jnp.zeros(shape, jnp.float32))["params"]

    def train_loss(params, x, y, key):
      return xent(module.apply({"params": params}, x, train=True,
                               rngs={"dropout": key}), y)

    logits = apply

  def eval_loss(member, x, y):
    return xent(logits(member, x), y)

  return ProtocolData(x_tr, ds.y_train[:protocol.num_train].astype(np.int32),
                      x_te, ds.y_test[:protocol.num_test].astype(np.int32),
                      init, train_loss, eval_loss,
                      None if protocol.stateful else apply,
                      stateful=protocol.stateful, logits=logits,
                      _module=module)


@dataclasses.dataclass(frozen=True)
class _Eval:
  """A linen module as `hint_jax.models.capture.tapped_apply` takes a
  model: ``apply_eval(params, model_state, x)``, no model state."""
  module: object

  def apply_eval(self, params, model_state, x):
    return self.module.apply({"params": params, **model_state}, x)


@dataclasses.dataclass(frozen=True)
class GroundTruthJob:
  """What to retrain.

  Attributes:
    protocol: a name of ``PROTOCOLS``.
    kind: "lds" (random subsets) or "loo" (leave one out).
    num_subsets: LDS subsets m.
    fraction: LDS subset size as a fraction α of the training slice.
    seeds_per_subset: LDS models per subset R (different seeds).
    subset_seed: draws the subsets (LDS) or the removed examples (LOO).
    first_seed: LDS model (j, r) has seed first_seed + j · R + r; every
      LOO model (and the full one) has seed first_seed. A noise ceiling is
      the same job with another first_seed.
    num_removed: LOO: how many training examples are left out (drawn with
      ``subset_seed``, sorted); None: every one.
    chunk: models trained at once (memory grows with it).
  """
  protocol: str = "mnist_lr"
  kind: str = "lds"
  num_subsets: int = 50
  fraction: float = 0.5
  seeds_per_subset: int = 1
  subset_seed: int = 0
  first_seed: int = 0
  num_removed: Optional[int] = None
  chunk: int = 50

  def check(self):
    protocol = get_protocol(self.protocol)
    if self.kind not in KINDS:
      raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got "
                        f"{self.kind!r}")
    if protocol.stateful:    # full batches only (see train_models)
      k = (protocol.num_train - 1 if self.kind == "loo"
           else int(protocol.num_train * self.fraction))
      if k % protocol.spec.batch_size:
        raise ConfigError(
            f"{self.protocol} trains on full batches of "
            f"{protocol.spec.batch_size} (BatchNorm), but each {self.kind} "
            f"model has {k} examples; "
            + ("LOO does not apply to it" if self.kind == "loo" else
               "choose a fraction that gives a multiple of the batch"))
    for name in ("num_subsets", "seeds_per_subset", "chunk"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.num_removed is not None and self.num_removed < 1:
      raise ConfigError(f"num_removed must be >= 1, got {self.num_removed}")
    if self.first_seed < 0 or self.subset_seed < 0:
      raise ConfigError("seeds must be >= 0")

  def settings(self) -> dict:
    out = dataclasses.asdict(self)
    out.pop("chunk")                 # how, not what: may change on resume
    if self.kind == "lds":
      out.pop("num_removed")
    else:
      for name in ("num_subsets", "fraction", "seeds_per_subset"):
        out.pop(name)
    return out


def _models(job: GroundTruthJob, n: int):
  """The (masks, seeds) of every model, and the arrays that name them."""
  key = jax.random.key(job.subset_seed)
  if job.kind == "lds":
    subsets = gt.subset_masks(key, n, job.num_subsets, job.fraction)
    r = job.seeds_per_subset
    masks = np.repeat(subsets, r, axis=0)
    seeds = job.first_seed + np.arange(len(masks))
    return masks, seeds, {"masks.npy": subsets}
  if job.num_removed is None or job.num_removed >= n:
    removed = np.arange(n)
  else:
    removed = np.sort(np.asarray(jax.random.choice(
        key, n, (job.num_removed,), replace=False)))
  masks = np.concatenate([np.ones((1, n), bool), gt.loo_masks(n, removed)])
  seeds = np.full(len(masks), job.first_seed)
  return masks, seeds, {"removed.npy": removed}


def _chunks(masks, size):
  """Chunks of model indices with equal mask counts (the LOO full model
  trains alone)."""
  counts = masks.sum(axis=1)
  out = []
  for count in np.unique(counts):
    idx = np.flatnonzero(counts == count)
    out += [idx[i:i + size] for i in range(0, len(idx), size)]
  return sorted(out, key=lambda c: c[0])


def _open(job, out, masks_info, seeds):
  """Checks or writes the folder's settings and index arrays."""
  # As read back from JSON (tuples become lists), so a resumed run's
  # settings compare equal to the ones written.
  settings = json.loads(json.dumps(
      {"job": job.settings(),
       "protocol": get_protocol(job.protocol).describe()}))
  path = out / "settings.json"
  if path.exists():
    if json.loads(path.read_text()) != settings:
      raise ConfigError(f"{out} holds a ground truth with other settings; "
                        "use another folder")
  for name, arr in list(masks_info.items()) + [("seeds.npy", seeds)]:
    target = out / name
    if target.exists():
      if not np.array_equal(np.load(target), arr):
        raise ConfigError(f"{target} differs from this job's; use another "
                          "folder")
    else:
      files.write_output(target, lambda p, a=arr: files.write_npy_atomic(p, a))
  files.write_json_atomic(path, settings)


def run_groundtruth(job: GroundTruthJob, out, *, data_dir=None,
                    reporter: Reporter = None) -> dict:
  """Runs ``job`` into ``out``; returns the record (also
  ``out/groundtruth.json``). Progress reaches ``reporter.stage("models",
  done, total)`` (models finished) and ``reporter.stage("epochs", ...)``
  within a chunk.

  Raises:
    ConfigError: a bad setting, or a folder holding other settings.
    hint_jax.errors.DataError: the data are missing.
  """
  reporter = reporter or Reporter()
  job.check()
  protocol = get_protocol(job.protocol)
  out = files.check_out(out)
  data = load_protocol(protocol, data_dir)
  taken = files.take_out(out)
  try:
    masks, seeds, info = _models(job, len(data.x_train))
    _open(job, out, info, seeds)
    (out / "chunks").mkdir(exist_ok=True)
    chunks = _chunks(masks, job.chunk)
    key = jax.random.key(0)
    done = 0
    spent = 0.0
    for c in chunks:
      path = out / "chunks" / f"models_{c[0]:06d}_{c[-1]:06d}.npz"
      if path.exists():
        done += len(c)
        continue
      reporter.note(f"{job.protocol}/{job.kind}: training models "
                    f"{c[0]}-{c[-1]} of {len(masks)}")
      t0 = time.perf_counter()
      params = gt.train_models(
          data.init, data.train_loss, data.x_train, data.y_train, masks[c],
          seeds[c], protocol.spec, key, stateful=data.stateful,
          step_loop=protocol.step_loop, on_epoch=lambda e: reporter.stage("epochs", e,
                                            protocol.spec.epochs))
      losses = gt.evaluate_losses(data.eval_loss, params, data.x_test,
                                  data.y_test)
      correct = _correct(data, params)
      seconds = time.perf_counter() - t0
      spent += seconds
      files.write_output(path, lambda p: files.write_npz_atomic(
          p, models=c, test_loss=losses, correct=correct,
          seconds=np.float64(seconds)))
      done += len(c)
      reporter.pause()
      reporter.stage("models", done, len(masks))
    reporter.pause()
    return _finish(job, out, chunks, len(masks), len(data.x_test), spent)
  except BaseException:
    taken.release(failed=True)
    raise
  finally:
    taken.release()


def _correct(data, params):
  """(models,) test accuracy of stacked parameters."""
  logits = jax.jit(jax.vmap(data.logits, in_axes=(0, None)))(
      params, jnp.asarray(data.x_test))
  return np.asarray(jnp.mean(jnp.argmax(logits, -1) == data.y_test, axis=1))


def _finish(job, out, chunks, num_models, n_test, spent_now):
  losses = np.zeros((num_models, n_test), np.float32)
  accuracy = np.zeros(num_models)
  seconds = 0.0
  for c in chunks:
    with np.load(out / "chunks" / f"models_{c[0]:06d}_{c[-1]:06d}.npz") as z:
      losses[z["models"]] = z["test_loss"]
      accuracy[z["models"]] = z["correct"]
      seconds += float(z["seconds"])
  files.write_output(out / LOSS_FILE, lambda p: files.write_npy_atomic(p, losses))
  record = {"settings": job.settings(), "models": num_models,
            "test_loss": {"file": LOSS_FILE, "shape": [num_models, n_test]},
            "mean_test_accuracy": float(accuracy.mean()),
            "seconds_training": seconds,
            "seconds_this_call": spent_now,
            "backend": jax.default_backend(),
            "jax_version": jax.__version__}
  files.write_json_atomic(out / RECORD_FILE, record)
  return record


def load_groundtruth(folder) -> dict:
  """A finished ground truth, in the form the metrics take.

  Returns:
    LDS: ``{"kind": "lds", "masks": (m, n), "test_loss": (m, n_test)}``
    (averaged over each subset's seeds). LOO: ``{"kind": "loo",
    "removed": (N,), "loo_change": (N, n_test)}`` (loss without the
    example minus loss of the full model), and ``"full_loss"``.
  """
  folder = pathlib.Path(folder)
  if not (folder / LOSS_FILE).exists():
    raise DataError(f"{folder} holds no finished ground truth "
                    f"({LOSS_FILE} missing); run it to the end first")
  settings = json.loads((folder / "settings.json").read_text())["job"]
  losses = np.load(folder / LOSS_FILE)
  if settings["kind"] == "lds":
    masks = np.load(folder / "masks.npy")
    r = settings["seeds_per_subset"]
    return {"kind": "lds", "masks": masks,
            "test_loss": losses.reshape(len(masks), r, -1).mean(axis=1)}
  removed = np.load(folder / "removed.npy")
  return {"kind": "loo", "removed": removed, "full_loss": losses[0],
          "loo_change": losses[1:] - losses[0]}
