"""Throughput of the sharded train step and influence passes against the
number of devices (``hint-jax bench influence --devices 1,2,4,8``).

For every device count D the same work runs on a mesh over the first D
devices (``hint_jax.parallel``): the data-parallel train step, the feature
pass, s_test by CG over the sharded top-layer Hessian, I_up over all
training examples and I_pert over ceil(r n) of them. Each figure is the
median of ``repeats`` timed calls after a warm-up.

On a machine without enough accelerators, the devices are simulated CPU
devices (``jax_num_cpu_devices``): they share the host's cores, so the
figures check that the sharded paths run and scale in structure, not that
they get faster. In such a process every row, the "no mesh" one included,
runs with XLA's defaults (`hint_jax.xla_options` applies its CPU option
with one device only), so the "no mesh" row is slower than a one-device
process's (`hint-jax bench train`).
"""

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax.bench.influence import trained_convnet
from hint_jax.bench.timing import median_seconds as _median
from hint_jax.bench.timing import quiet
from hint_jax.errors import ConfigError

CPU_NOTE = (
    "These are simulated CPU devices sharing the host's cores, so the rows "
    "show the sharded paths running at every device count, not a speed-up. "
    "XLA:CPU runs each simulated device's share as its own stream of work, "
    "so more devices can keep the same cores busier (a gain over the "
    "1-device row is that, not more compute; compare the 'no mesh' row, the "
    "normal one-device path). "
    "On real accelerators each device brings its own compute and memory "
    "bandwidth: the train step, features, I_up and I_pert split their "
    "examples with no communication but one gradient all-reduce per step "
    "(~0.5 MB of parameters for the MNIST ConvNet), so they should scale "
    "close to linearly while the per-device batch keeps a device busy "
    "(e.g. >= 32 images); each CG iteration all-reduces one 16010-float "
    "vector, so s_test scales until that latency dominates its small "
    "per-device products.")


def parse_counts(text):
  try:
    counts = sorted({int(t) for t in text.split(",") if t.strip()})
  except ValueError as err:
    raise ConfigError(f"device counts are a list like 1,2,4,8, got {text!r}"
                      ) from err
  if not counts or counts[0] < 1:
    raise ConfigError(f"device counts must be >= 1, got {text!r}")
  return counts


def _time_on_mesh(d, model, trainer, splits, state, idx, m, repeats):
  """The figures of one device count ``d``: sharded train steps over the
  batches ``idx``, the feature pass, s_test by CG, I_up over every
  training example and I_pert over the first ``m``."""
  # pylint: disable=g-import-not-at-top
  from hint_jax import influence as infl
  from hint_jax import parallel
  from hint_jax.parallel import influence as sharded
  from hint_jax.train import Trainer
  cfg, n = trainer.config, len(splits.x_train)
  params, mstate = state.params, state.model_state
  top = params["head"]
  mesh = parallel.make_data_mesh(d)
  if cfg.batch_size % d:
    raise ConfigError(f"batch size {cfg.batch_size} does not split over {d} "
                      "devices")
  par = Trainer(model, cfg, n, mesh=mesh)
  rows = parallel.rows(mesh)
  xs = [parallel.put_global(splits.x_train[i], rows) for i in idx]
  ys = [parallel.put_global(splits.y_train[i], rows) for i in idx]
  holder = {"s": parallel.replicate(jax.tree.map(jnp.copy, state), mesh)}

  def train_steps():
    for xb, yb in zip(xs, ys):
      holder["s"], metrics = par.sharded_step(holder["s"], xb, yb)
    return metrics

  fig = {"devices": d}
  fig["train_images_per_s"] = (len(idx) * cfg.batch_size
                               / _median(train_steps, repeats))
  feats = lambda: sharded.features_of_images(model, params, mstate,
                                             splits.x_train, mesh)
  fig["features_images_per_s"] = n / _median(feats, repeats)
  phi = feats()
  phi_val = sharded.features_of_images(model, params, mstate, splits.x_val,
                                       mesh)
  op = sharded.top_layer_hessian(top, phi, mesh)
  y_tr = jnp.asarray(splits.y_train)
  solve = lambda: sharded.s_test(op, infl.top_loss_one, top, phi_val,
                                 jnp.asarray(splits.y_val), mesh,
                                 method="cg", damping=0.5, tol=1e-6)[0]
  fig["s_test_cg_s"] = _median(solve, repeats)
  s = solve()
  fig["i_up_examples_per_s"] = n / _median(
      lambda: sharded.top_layer_up_scores(top, phi, y_tr, s, mesh), repeats)
  x_sel = jnp.asarray(splits.x_train[:m], jnp.float32) / 255.0
  features_fn = model.features_fn(params, mstate)
  fig["i_pert_examples_per_s"] = m / _median(
      lambda: sharded.top_layer_pert(features_fn, top, x_sel, y_tr[:m], s,
                                     mesh, chunk_size=max(1, 500 // d)),
      repeats)
  return fig


def scaling_figures(counts, data_dir=None, *, quick=False, repeats=3,
                    train_epochs=1, ratio=0.5, subset=10000,
                    note=quiet) -> dict:
  """For every device count in ``counts``: the train step's, the feature
  pass's, I_up's and I_pert's throughput and s_test's time on a mesh over
  that many devices (simulated CPU devices when there are no
  accelerators; call before anything starts JAX's backend), beside the
  plain one-device path. Returns the JSON-ready figures."""
  from hint_jax import parallel  # pylint: disable=g-import-not-at-top

  parallel.use_cpu_devices(max(counts))  # a no-op for accelerators
  backend = jax.default_backend()
  if len(jax.devices()) < max(counts):
    raise ConfigError(f"{max(counts)} devices asked for but only "
                      f"{len(jax.devices())} {backend} device(s) exist")

  repeats = 1 if quick else repeats
  splits, model, trainer, state = trained_convnet(
      data_dir, train_epochs, 2000 if quick else subset, note)
  n = len(splits.x_train)
  m = int(np.ceil(ratio * n))
  bs = trainer.config.batch_size
  steps = 10
  idx = np.asarray(trainer.epoch_batches(state, 1, n)[:steps])
  # The normal one-device path (no mesh, device-resident data), for scale.
  x_dev, y_dev = jnp.asarray(splits.x_train), jnp.asarray(splits.y_train)
  solo = {"s": jax.tree.map(jnp.copy, state)}

  def solo_steps():
    solo["s"], metrics = trainer.train_steps(solo["s"], x_dev, y_dev,
                                             jnp.asarray(idx))
    return metrics

  no_mesh_train = steps * bs / _median(solo_steps, repeats)
  note(f"no mesh: train {no_mesh_train:.0f} img/s")
  rows_table = []
  for d in counts:
    fig = _time_on_mesh(d, model, trainer, splits, state, idx, m, repeats)
    rows_table.append(fig)
    note(f"{d} device(s): train {fig['train_images_per_s']:.0f} img/s, "
         f"I_pert {fig['i_pert_examples_per_s']:.0f} ex/s")

  simulated = backend == "cpu"
  return {"benchmark": "influence_scaling", "n_train": n, "i_pert_count": m,
          "backend": backend, "simulated_devices": simulated,
          "no_mesh_train_images_per_s": no_mesh_train,
          "repeats": repeats, "rows": rows_table,
          "note": CPU_NOTE if simulated else None}
