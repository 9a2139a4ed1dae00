"""Timings of the influence engine on the MNIST ConvNet (theta_top = the
16010-parameter head), measured in one run.

Every figure is the median of ``repeats`` timed calls after a warm-up
(compilation excluded). Figures marked ``extrapolated`` time a sample and
scale linearly to the full count, which is what a per-example Python loop
costs (each example is an independent call).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import xla_options
from hint_jax.bench.timing import median_seconds as _median
from hint_jax.bench.timing import quiet


def trained_convnet(data_dir, train_epochs, subset, note=quiet,
                    dataset="mnist"):
  """The dataset's default network (MNIST: the ConvNet) trained
  ``train_epochs`` epochs on at most ``subset`` training images (None:
  all), untimed: ``(splits, model, trainer, state)``."""
  # pylint: disable=g-import-not-at-top
  from hint_jax import data as data_lib
  from hint_jax.models import get_model
  from hint_jax.train import Trainer, fit
  from hint_jax.train.presets import default_model, preset
  loaded = data_lib.load_dataset(dataset, data_dir)
  splits = data_lib.split_train_val(loaded)
  if subset is not None and subset < len(splits.x_train):
    splits = data_lib.split_train_val(loaded, subset=subset)
  n = len(splits.x_train)
  name = default_model(dataset, splits.x_train.shape[1:])
  model = get_model(name, splits.num_classes, splits.x_train.shape[1:])
  cfg = preset(dataset, epochs=train_epochs, eval_every=0)
  trainer = Trainer(model, cfg, n)
  note(f"training the {name} for {cfg.epochs} epoch(s) on {n} images "
       "(one device, not timed) ...")
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits)
  return splits, model, trainer, state


@dataclasses.dataclass
class _Setting:
  """What the influence timings share: the trained ConvNet, its data and
  the pieces computed once (features, the top-layer operator, s_test)."""
  splits: object
  model: object
  trainer: object
  state: object
  repeats: int
  quick: bool
  note: object
  x_dev: jax.Array = None
  y_dev: jax.Array = None
  phi: jax.Array = None
  op: object = None
  v: object = None
  s_cg: object = None

  @property
  def top(self):
    return self.state.params["head"]

  def __post_init__(self):
    # One function for every timing (as jit caches see it).
    self.loss_top = self.model.top_example_loss(self.state.params,
                                                self.state.model_state)


def _time_training_and_features(b: _Setting, fig):
  """One training epoch at this n (from the median step time), and the
  features of all training images: the one forward pass the top-layer
  Hessian, s_test and I_up need."""
  from hint_jax import influence as infl  # pylint: disable=g-import-not-at-top
  n = len(b.splits.x_train)
  b.x_dev = jnp.asarray(b.splits.x_train)
  b.y_dev = jnp.asarray(b.splits.y_train)
  batches = jnp.asarray(b.trainer.epoch_batches(b.state, 1, n)[:20])
  holder = {"s": jax.tree.map(jnp.copy, b.state)}  # steps donate their input

  def twenty_steps():
    holder["s"], m = b.trainer.train_steps(holder["s"], b.x_dev, b.y_dev,
                                           batches)
    return m

  fig["train_epoch_s"] = (_median(twenty_steps, b.repeats) / 20
                          * b.trainer.steps_per_epoch)
  b.note(f"one training epoch ({b.trainer.steps_per_epoch} steps): "
         f"{fig['train_epoch_s']:.1f} s")
  params, mstate = b.state.params, b.state.model_state
  phi_fn = lambda: b.model.features_of_images(params, mstate,
                                              b.splits.x_train)
  fig["features_all_train_s"] = _median(phi_fn, b.repeats)
  b.phi = phi_fn()
  phi_val = b.model.features_of_images(params, mstate, b.splits.x_val)
  b.op = infl.top_layer_hessian(b.top, b.phi)
  b.v = infl.mean_grad(infl.top_loss_one, b.top, phi_val,
                       jnp.asarray(b.splits.y_val))


def _time_hvps(b: _Setting, fig):
  from hint_jax import influence as infl  # pylint: disable=g-import-not-at-top
  fig["hvp_closed_form_all_train_s"] = _median(lambda: b.op.matvec(b.v),
                                               b.repeats)
  xb = b.x_dev[:50].astype(jnp.float32) / 255.0
  batch_op = infl.loss_hessian(b.loss_top, b.top, xb, b.y_dev[:50])
  fig["hvp_autodiff_batch50_s"] = _median(lambda: batch_op.matvec(b.v),
                                          b.repeats)
  b.note(f"HVP: closed form over {len(b.splits.x_train)} features "
         f"{fig['hvp_closed_form_all_train_s'] * 1e3:.1f} ms; forward-over-"
         f"reverse through the network on a batch of 50 "
         f"{fig['hvp_autodiff_batch50_s'] * 1e3:.1f} ms")


def _time_s_test(b: _Setting, fig):
  """s_test by each solver (features precomputed; add
  features_all_train_s for the end-to-end figure)."""
  from hint_jax import influence as infl  # pylint: disable=g-import-not-at-top
  op, v, key = b.op, b.v, jax.random.key(1)
  b.s_cg, cg_info = infl.solve(op, v, method="cg", damping=0.5, tol=1e-6)
  fig["s_test_cg_s"] = _median(
      lambda: infl.solve(op, v, method="cg", damping=0.5, tol=1e-6)[0],
      b.repeats)
  fig["s_test_cg_iterations"] = int(cg_info.iterations)
  fig["s_test_lissa_features_s"] = _median(
      lambda: infl.solve(op, v, method="lissa", damping=0.5, key=key)[0],
      b.repeats)
  s_lissa, _ = infl.solve(op, v, method="lissa", damping=0.5, key=key)
  fig["lissa_vs_cg_rel_diff"] = float(
      _norm(jax.tree.map(jnp.subtract, s_lissa, b.s_cg)) / _norm(b.s_cg))
  # The authors' way: LiSSA with an autodiff HVP through the network on each
  # sampled batch of 50 images (980 forward/backward passes).
  net_op = infl.loss_hessian(b.loss_top, b.top,
                             b.x_dev.astype(jnp.float32) / 255., b.y_dev)
  depth = 98 if b.quick else 980
  t_net = _median(lambda: infl.solve(net_op, v, method="lissa", damping=0.5,
                                     key=key, depth=depth)[0], 1)
  fig["s_test_lissa_autodiff_s"] = t_net * 980 / depth
  fig["s_test_lissa_autodiff_extrapolated"] = depth != 980
  fig["s_test_direct"] = ("not timed: the dense 16010x16010 Hessian is 1 GB "
                          "and ~3e13 flop to form on CPU; use direct on "
                          "small subsets")
  b.note(f"s_test: CG {fig['s_test_cg_s']:.2f} s "
         f"({fig['s_test_cg_iterations']} it), LiSSA on features "
         f"{fig['s_test_lissa_features_s']:.2f} s, LiSSA through the network "
         f"{fig['s_test_lissa_autodiff_s']:.1f} s; + "
         f"{fig['features_all_train_s']:.1f} s for the features")
  fig["s_test_cg_end_to_end_s"] = (fig["s_test_cg_s"]
                                   + fig["features_all_train_s"])
  fig["s_test_end_to_end_over_epoch"] = (fig["s_test_cg_end_to_end_s"]
                                         / fig["train_epoch_s"])


def _time_i_up(b: _Setting, fig, sample):
  """I_up for every training example: closed form over the features,
  against a per-example loop (extrapolated from ``sample`` examples)."""
  from hint_jax import influence as infl  # pylint: disable=g-import-not-at-top
  n = len(b.splits.x_train)
  fig["i_up_all_train_closed_form_s"] = _median(
      lambda: infl.top_layer_up_scores(b.top, b.phi,
                                       jnp.asarray(b.splits.y_train),
                                       b.s_cg), b.repeats)
  loss_top = b.loss_top
  one_dot = xla_options.jit(lambda x, y: jax.jvp(
      lambda t: loss_top(t, x, y), (b.top,), (b.s_cg,))[1])
  x_f = b.x_dev[:sample].astype(jnp.float32) / 255.0

  def loop_dots():
    return [one_dot(x_f[i], b.y_dev[i]) for i in range(sample)]

  fig["i_up_all_train_per_example_loop_s"] = (_median(loop_dots, 1)
                                              * n / sample)
  fig["i_up_loop_extrapolated_from"] = sample
  fig["i_up_speedup_closed_form"] = (
      fig["i_up_all_train_per_example_loop_s"]
      / fig["i_up_all_train_closed_form_s"])


def _time_i_pert(b: _Setting, fig, ratio, sample):
  """I_pert for ceil(ratio n) examples: batched on the top layer,
  vectorised, and a per-example loop (extrapolated)."""
  from hint_jax import influence as infl  # pylint: disable=g-import-not-at-top
  m = int(np.ceil(ratio * len(b.splits.x_train)))
  x_sel = b.x_dev[:m].astype(jnp.float32) / 255.0
  y_sel = b.y_dev[:m]
  top, s_cg, loss_top = b.top, b.s_cg, b.loss_top
  fig["i_pert_count"] = m
  feats = b.model.features_fn(b.state.params, b.state.model_state)
  fig["i_pert_batched_top_layer_s"] = _median(
      lambda: infl.top_layer_pert(feats, top, x_sel, y_sel, s_cg,
                                  chunk_size=500), b.repeats)
  fig["i_pert_vectorised_s"] = _median(
      lambda: infl.influence_pert(loss_top, top, x_sel, y_sel, s_cg,
                                  chunk_size=500), b.repeats)
  one_pert = xla_options.jit(lambda x, y: infl.influence_pert(
      loss_top, top, x[None], y[None], s_cg))

  def loop_pert():
    return [one_pert(x_sel[i], y_sel[i]) for i in range(sample)]

  fig["i_pert_per_example_loop_s"] = _median(loop_pert, 1) * m / sample
  fig["i_pert_loop_extrapolated_from"] = sample
  fig["i_pert_speedup_vectorised"] = (fig["i_pert_per_example_loop_s"]
                                      / fig["i_pert_vectorised_s"])
  fig["i_pert_speedup_batched_top_layer"] = (
      fig["i_pert_per_example_loop_s"] / fig["i_pert_batched_top_layer_s"])


def influence_figures(data_dir=None, *, quick=False, repeats=3,
                      train_epochs=1, ratio=0.5, note=quiet,
                      dataset="mnist") -> dict:
  """Times one training epoch, the feature pass, HVPs, s_test by each
  solver, I_up over every training example and I_pert over ceil(ratio n)
  of them (vectorised against a per-example loop) on the MNIST ConvNet
  (or ``dataset``'s default network) trained ``train_epochs`` epochs;
  ``quick``: at most 5000 images, one repeat. Returns ``{"benchmark", "dataset",
  "n_train", "quick", "repeats", "backend", "figures"}``."""
  repeats = 1 if quick else repeats
  splits, model, trainer, state = trained_convnet(
      data_dir, train_epochs, 5000 if quick else None, note, dataset)
  b = _Setting(splits, model, trainer, state, repeats, quick, note)
  fig = {}
  _time_training_and_features(b, fig)
  _time_hvps(b, fig)
  _time_s_test(b, fig)
  sample = 200 if not quick else 50
  _time_i_up(b, fig, sample)
  _time_i_pert(b, fig, ratio, sample)
  return {"benchmark": "influence", "dataset": dataset,
          "n_train": len(splits.x_train),
          "quick": quick, "repeats": repeats,
          "backend": jax.default_backend(), "figures": fig}


def _norm(tree):
  return jnp.sqrt(sum(jnp.sum(l ** 2) for l in jax.tree.leaves(tree)))
