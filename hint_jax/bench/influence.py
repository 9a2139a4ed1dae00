"""Timings of the influence engine on the MNIST ConvNet (theta_top = the
16010-parameter head), measured in one run.

Every figure is the median of ``repeats`` timed calls after a warm-up
(compilation excluded). Figures marked ``extrapolated`` time a sample and
scale linearly to the full count, which is what a per-example Python loop
costs (each example is an independent call).
"""

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import xla_options
from hint_jax.bench.timing import median_seconds as _median
from hint_jax.bench.timing import quiet


def trained_convnet(data_dir, train_epochs, subset, note=quiet):
  """The MNIST ConvNet trained ``train_epochs`` epochs on ``subset``
  training images (None: all), untimed: ``(splits, model, trainer,
  state)``."""
  # pylint: disable=g-import-not-at-top
  from hint_jax import data as data_lib
  from hint_jax.models import get_model
  from hint_jax.train import Trainer, fit
  from hint_jax.train.presets import preset
  dataset = data_lib.load_dataset("mnist", data_dir)
  splits = data_lib.split_train_val(dataset, subset=subset)
  n = len(splits.x_train)
  model = get_model("convnet", 10, (28, 28, 1))
  cfg = preset("mnist", epochs=train_epochs, eval_every=0)
  trainer = Trainer(model, cfg, n)
  note(f"training the ConvNet for {cfg.epochs} epoch(s) on {n} images "
       "(one device, not timed) ...")
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits)
  return splits, model, trainer, state


def influence_figures(data_dir=None, *, quick=False, repeats=3,
                       train_epochs=1, ratio=0.5, note=quiet) -> dict:
  """Times one training epoch, the feature pass, HVPs, s_test by each
  solver, I_up over every training example and I_pert over ceil(ratio n)
  of them (vectorised against a per-example loop) on the MNIST ConvNet
  trained ``train_epochs`` epochs; ``quick``: 5000 images, one repeat.
  Returns ``{"benchmark", "n_train", "quick", "repeats", "backend",
  "figures"}``."""
  # pylint: disable=g-import-not-at-top
  from hint_jax import influence as infl

  repeats = 1 if quick else repeats
  splits, model, trainer, state = trained_convnet(
      data_dir, train_epochs, 5000 if quick else None, note)
  n = len(splits.x_train)
  params, mstate = state.params, state.model_state
  top = params["head"]
  loss_top = model.top_example_loss(params, mstate)
  fig = {}

  # Reference: one training epoch at this n, from the median step time.
  x_dev, y_dev = jnp.asarray(splits.x_train), jnp.asarray(splits.y_train)
  batches = jnp.asarray(trainer.epoch_batches(state, 1, n)[:20])
  holder = {"s": jax.tree.map(jnp.copy, state)}  # steps donate their input

  def twenty_steps():
    holder["s"], m = trainer.train_steps(holder["s"], x_dev, y_dev, batches)
    return m

  fig["train_epoch_s"] = (_median(twenty_steps, repeats) / 20
                          * trainer.steps_per_epoch)
  note(f"one training epoch ({trainer.steps_per_epoch} steps): "
       f"{fig['train_epoch_s']:.1f} s")

  # Features of all training images: the one forward pass the top-layer
  # Hessian, s_test and I_up need.
  phi_fn = lambda: model.features_of_images(params, mstate, splits.x_train)
  fig["features_all_train_s"] = _median(phi_fn, repeats)
  phi = phi_fn()
  phi_val = model.features_of_images(params, mstate, splits.x_val)
  y_tr, y_val = jnp.asarray(splits.y_train), jnp.asarray(splits.y_val)
  op = infl.top_layer_hessian(top, phi)
  v = infl.mean_grad(infl.top_loss_one, top, phi_val, y_val)

  # HVPs.
  fig["hvp_closed_form_all_train_s"] = _median(lambda: op.matvec(v), repeats)
  xb = x_dev[:50].astype(jnp.float32) / 255.0
  yb = y_dev[:50]
  batch_op = infl.loss_hessian(loss_top, top, xb, yb)
  fig["hvp_autodiff_batch50_s"] = _median(lambda: batch_op.matvec(v), repeats)
  note(f"HVP: closed form over {n} features "
       f"{fig['hvp_closed_form_all_train_s'] * 1e3:.1f} ms; forward-over-"
       f"reverse through the network on a batch of 50 "
       f"{fig['hvp_autodiff_batch50_s'] * 1e3:.1f} ms")

  # s_test by each solver (features precomputed; add features_all_train_s
  # for the end-to-end figure).
  key = jax.random.key(1)
  s_cg, cg_info = infl.solve(op, v, method="cg", damping=0.5, tol=1e-6)
  fig["s_test_cg_s"] = _median(
      lambda: infl.solve(op, v, method="cg", damping=0.5, tol=1e-6)[0],
      repeats)
  fig["s_test_cg_iterations"] = int(cg_info.iterations)
  fig["s_test_lissa_features_s"] = _median(
      lambda: infl.solve(op, v, method="lissa", damping=0.5, key=key)[0],
      repeats)
  s_lissa, _ = infl.solve(op, v, method="lissa", damping=0.5, key=key)
  fig["lissa_vs_cg_rel_diff"] = float(
      _norm(jax.tree.map(jnp.subtract, s_lissa, s_cg)) / _norm(s_cg))
  # The authors' way: LiSSA with an autodiff HVP through the network on each
  # sampled batch of 50 images (980 forward/backward passes).
  net_op = infl.loss_hessian(loss_top, top, x_dev.astype(jnp.float32) / 255.,
                             y_dev)
  depth = 98 if quick else 980
  t_net = _median(lambda: infl.solve(net_op, v, method="lissa", damping=0.5,
                                     key=key, depth=depth)[0], 1)
  fig["s_test_lissa_autodiff_s"] = t_net * 980 / depth
  fig["s_test_lissa_autodiff_extrapolated"] = depth != 980
  fig["s_test_direct"] = ("not timed: the dense 16010x16010 Hessian is 1 GB "
                          "and ~3e13 flop to form on CPU; use direct on "
                          "small subsets")
  note(f"s_test: CG {fig['s_test_cg_s']:.2f} s ({fig['s_test_cg_iterations']}"
       f" it), LiSSA on features {fig['s_test_lissa_features_s']:.2f} s, "
       f"LiSSA through the network {fig['s_test_lissa_autodiff_s']:.1f} s; "
       f"+ {fig['features_all_train_s']:.1f} s for the features")
  fig["s_test_cg_end_to_end_s"] = (fig["s_test_cg_s"]
                                   + fig["features_all_train_s"])
  fig["s_test_end_to_end_over_epoch"] = (fig["s_test_cg_end_to_end_s"]
                                         / fig["train_epoch_s"])

  # I_up for every training example: closed form over the features.
  fig["i_up_all_train_closed_form_s"] = _median(
      lambda: infl.top_layer_up_scores(top, phi, y_tr, s_cg), repeats)
  sample = 200 if not quick else 50
  one_dot = xla_options.jit(lambda x, y: jax.jvp(
      lambda t: loss_top(t, x, y), (top,), (s_cg,))[1])
  x_f = x_dev[:sample].astype(jnp.float32) / 255.0

  def loop_dots():
    return [one_dot(x_f[i], y_dev[i]) for i in range(sample)]

  fig["i_up_all_train_per_example_loop_s"] = (_median(loop_dots, 1)
                                              * n / sample)
  fig["i_up_loop_extrapolated_from"] = sample

  # I_pert for ceil(r n) examples: vectorised vs a per-example loop.
  m = int(np.ceil(ratio * n))
  x_sel = x_dev[:m].astype(jnp.float32) / 255.0
  y_sel = y_dev[:m]
  fig["i_pert_count"] = m
  feats = model.features_fn(params, mstate)
  fig["i_pert_batched_top_layer_s"] = _median(
      lambda: infl.top_layer_pert(feats, top, x_sel, y_sel, s_cg,
                                  chunk_size=500), repeats)
  fig["i_pert_vectorised_s"] = _median(
      lambda: infl.influence_pert(loss_top, top, x_sel, y_sel, s_cg,
                                  chunk_size=500), repeats)
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
  fig["i_up_speedup_closed_form"] = (
      fig["i_up_all_train_per_example_loop_s"]
      / fig["i_up_all_train_closed_form_s"])

  return {"benchmark": "influence", "n_train": n, "quick": quick,
          "repeats": repeats, "backend": jax.default_backend(),
          "figures": fig}


def _norm(tree):
  return jnp.sqrt(sum(jnp.sum(l ** 2) for l in jax.tree.leaves(tree)))
