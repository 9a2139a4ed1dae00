"""Every benchmark in one run (``hint-jax bench all``), on whatever backend
JAX finds, with the device, the versions and the compiler options beside
the figures.

Parts, in order (each a dict under ``parts``; ``seconds`` says what each
cost):

* ``train``: training throughput at batch 128 of the MNIST ConvNet,
  resnet_tiny and ResNet-18 (`hint_jax.bench.train`), against PyTorch when
  torch is installed;
* ``hint``: HINT's wall time over plain training and its phases
  (`hint_jax.bench.hint`, the ``mnist`` setting shortened to
  ``HINT_EPOCHS`` epochs with one noise update before the last, as the
  paper's {9} of 10: the overall ratio is that of the short run, the
  phase times are per update);
* ``influence``: HVPs, s_test by each solver, I_up and I_pert on the MNIST
  ConvNet (`hint_jax.bench.influence`);
* ``attribution``: preparation and scoring time of the whole-network
  estimators on a slice (``ATTRIBUTION``).

``quick`` is a smoke run of minutes that needs no data files: the training
throughput on random images of the datasets' shapes (throughput does not
depend on the pixels), ResNet-18 left out, and the other parts on the
embedded 8x8 digits with their small network. Its figures show the
machinery works, not a machine's speed.
"""

import importlib.util
import platform
import time

import jax
import numpy as np

from hint_jax import xla_options
from hint_jax.bench.timing import quiet

PARTS = ("train", "hint", "influence", "attribution")
HINT_EPOCHS = 3
HINT_SCHEDULE = (HINT_EPOCHS - 1,)
# Steps per timed repeat of the training part (`hint-jax bench train`'s).
TRAIN_STEPS = {"convnet": 50, "resnet_tiny": 10, "resnet18": 3}
# Estimator settings of the attribution part: (name, quick, full).
ATTRIBUTION = (
    ("grad_dot", {}, {}),
    ("trak", {"proj_dim": 128}, {"proj_dim": 512}),
    ("kfac", {"curvature_examples": 300, "damping": 0.01},
     {"curvature_examples": 5000, "damping": 0.01}),
    ("ekfac", {"curvature_examples": 300, "damping": 0.01},
     {"curvature_examples": 5000, "damping": 0.01}),
    ("arnoldi", {"curvature_examples": 300, "iterations": 20, "top_k": 10,
                 "damping": 0.01},
     {"curvature_examples": 2000, "iterations": 100, "top_k": 50,
      "damping": 0.01}),
    ("cg", {"curvature_examples": 128, "maxiter": 5, "damping": 0.01},
     {"curvature_examples": 256, "maxiter": 10, "damping": 0.01}),
)
# (training images, test images) scored by the attribution part.
ATTRIBUTION_SLICE = {True: (300, 20), False: (10000, 100)}


def environment() -> dict:
  """The backend, devices, library versions and compiler options."""
  versions = {}
  for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
    if importlib.util.find_spec(name) is None:
      continue
    try:
      module = __import__(name)
      versions[name] = getattr(module, "__version__", None)
    except ImportError:   # present but broken: say so, measure the rest
      versions[name] = "not importable"
  devices = jax.devices()
  return {"backend": jax.default_backend(),
          "devices": [str(d) for d in devices],
          "device_kind": devices[0].device_kind,
          "platform": platform.platform(), "machine": platform.machine(),
          "processor": xla_options.processor_summary(),
          "versions": versions, "xla_options": xla_options.status(),
          "compiler_options": xla_options.compiler_options()}


def _train(data_dir, quick, torch, note):
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.bench.train import MODELS, train_throughput  # pylint: disable=g-import-not-at-top
  models = ("convnet", "resnet_tiny") if quick else tuple(MODELS)
  results, loaded = [], {}
  for i, model in enumerate(models):
    dataset, shape, _ = MODELS[model]
    if quick:   # random images of the dataset's shape
      rng = np.random.default_rng(i)
      x = rng.integers(0, 256, (512,) + tuple(shape), dtype=np.uint8)
      y = rng.integers(0, 10, 512).astype(np.int32)
    else:
      if dataset not in loaded:
        splits = data_lib.split_train_val(
            data_lib.load_dataset(dataset, data_dir))
        loaded[dataset] = (splits.x_train, splits.y_train)
      x, y = loaded[dataset]
    note(f"bench all: training throughput of {model}")
    results.append(train_throughput(
        x, y, model=model, steps=2 if quick else TRAIN_STEPS[model],
        repeats=2 if quick else 5, torch=torch, note=note))
  return {"inputs": "random images of each dataset's shape" if quick
          else "the datasets' training images", "results": results}


def hint_spec(data_dir, quick):
  """The HINT part's settings: the ``quick`` setting as it is, or the
  MNIST one shortened to ``HINT_EPOCHS`` epochs, updating at
  ``HINT_SCHEDULE``."""
  from hint_jax.bench import hint as bench  # pylint: disable=g-import-not-at-top
  if quick:
    return bench.HintBench(data_dir=data_dir)
  return bench.HintBench(data_dir=data_dir, epochs=HINT_EPOCHS,
                         schedule=HINT_SCHEDULE)


def _hint(data_dir, quick, torch, note):
  from hint_jax.bench import hint as bench  # pylint: disable=g-import-not-at-top
  spec = hint_spec(data_dir, quick)
  note("bench all: HINT's overhead")
  return bench.hint_overhead(["quick" if quick else "mnist"], spec,
                             torch=torch and not quick, note=note)


def _influence(data_dir, quick, torch, note):
  del torch   # no PyTorch reference here
  from hint_jax.bench.influence import influence_figures  # pylint: disable=g-import-not-at-top
  note("bench all: the influence engine")
  return influence_figures(data_dir, quick=quick, repeats=1 if quick else 3,
                           note=note,
                           dataset="digits" if quick else "mnist")


def _attribution(data_dir, quick, torch, note):
  """Each estimator's preparation and scoring on a slice: scoring timed
  twice, the first call with its compilation, the second without."""
  del torch
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from hint_jax import attribution  # pylint: disable=g-import-not-at-top
  from hint_jax.bench.influence import trained_convnet  # pylint: disable=g-import-not-at-top
  from hint_jax.models import capture  # pylint: disable=g-import-not-at-top
  n_tr, n_te = ATTRIBUTION_SLICE[quick]
  splits, model, _, state = trained_convnet(
      data_dir, 2 if quick else 1, None, note,
      "digits" if quick else "mnist")
  apply = capture.tapped_apply(model, state.model_state)
  train = (splits.x_train[:n_tr], splits.y_train[:n_tr])
  test = (splits.x_test[:n_te], splits.y_test[:n_te])
  out = {"dataset": "digits" if quick else "mnist",
         "num_train": len(train[0]), "num_test": len(test[0]),
         "estimators": {}}
  for name, quick_settings, full_settings in ATTRIBUTION:
    settings = quick_settings if quick else full_settings
    note(f"bench all: {name} on {len(test[0])} x {len(train[0])}")
    t0 = time.perf_counter()
    st = attribution.prepare(name, apply, state.params,
                             (jnp.asarray(train[0]), jnp.asarray(train[1])),
                             key=jax.random.key(0), **settings)
    jax.block_until_ready(st)
    prepare_s = time.perf_counter() - t0
    times = []
    for _ in range(2):
      t0 = time.perf_counter()
      np.asarray(attribution.scores(st, apply, train, test))
      times.append(time.perf_counter() - t0)
    out["estimators"][name] = {
        "settings": dict(st.settings), "prepare_s": prepare_s,
        "scores_first_s": times[0], "scores_s": times[1]}
  return out


_RUNNERS = {"train": _train, "hint": _hint, "influence": _influence,
            "attribution": _attribution}


def run_all(data_dir=None, *, quick=False, torch=True, parts=PARTS,
            note=quiet, on_part=None) -> dict:
  """Runs ``parts`` (see the module docstring) in order; returns ``{
  "benchmark", "quick", "environment", "parts", "seconds"}``.
  ``on_part(record)`` is called after each part (e.g. to save what has
  finished)."""
  unknown = [p for p in parts if p not in _RUNNERS]
  if unknown or not parts:
    raise ValueError(f"parts must be from {', '.join(PARTS)}; got "
                     f"{', '.join(unknown) or '(none)'}")
  record = {"benchmark": "all", "quick": quick, "environment": environment(),
            "parts": {}, "seconds": {}}
  for name in parts:
    t0 = time.perf_counter()
    record["parts"][name] = _RUNNERS[name](data_dir, quick, torch, note)
    record["seconds"][name] = time.perf_counter() - t0
    if on_part is not None:
      on_part(record)
  return record
