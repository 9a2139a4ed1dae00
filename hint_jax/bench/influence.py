"""``hint-jax bench influence``: timings of the influence engine on the MNIST
ConvNet (theta_top = the 16010-parameter head), measured in one run.

Every figure is the median of ``--repeats`` timed calls after a warm-up
(compilation excluded). Figures marked ``extrapolated`` time a sample and
scale linearly to the full count, which is what a per-example Python loop
costs (each example is an independent call).
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax.cli.common import info, positive_int, write_json_atomic


def register(bsub):
  p = bsub.add_parser("influence", help="HVP, s_test by each solver, I_up "
                      "over all training examples, I_pert vectorised vs a "
                      "per-example loop (MNIST ConvNet)")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--quick", action="store_true",
                 help="5000 training images, fewer repeats (a smoke run)")
  p.add_argument("--repeats", type=positive_int, default=3)
  p.add_argument("--train-epochs", type=int, default=1,
                 help="epochs of plain training before timing (so the "
                 "Hessian is that of a trained model)")
  p.add_argument("--ratio", type=float, default=0.5,
                 help="fraction of the training set given I_pert (HINT r)")
  p.add_argument("--devices", default=None, metavar="COUNTS",
                 help="e.g. 1,2,4,8: time the sharded train step and "
                 "influence passes on a mesh of each many devices instead "
                 "(simulated CPU devices when there are no accelerators)")
  p.add_argument("--subset", type=positive_int, default=10000,
                 help="training images for --devices (default 10000)")
  p.add_argument("--json", default=None)
  p.set_defaults(func=run)


def _median(fn, repeats):
  jax.block_until_ready(fn())  # warm-up / compile
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def trained_convnet(args, subset):
  """The MNIST ConvNet trained ``args.train_epochs`` epochs on ``subset``
  training images (None: all), untimed: ``(splits, model, trainer,
  state)``."""
  # pylint: disable=g-import-not-at-top
  from hint_jax import data as data_lib
  from hint_jax.models import get_model
  from hint_jax.train import Trainer, fit
  from hint_jax.train.presets import preset
  dataset = data_lib.load_dataset("mnist", args.data_dir)
  splits = data_lib.split_train_val(dataset, subset=subset)
  n = len(splits.x_train)
  model = get_model("convnet", 10, (28, 28, 1))
  cfg = preset("mnist", epochs=args.train_epochs, eval_every=0)
  trainer = Trainer(model, cfg, n)
  info(f"training the ConvNet for {cfg.epochs} epoch(s) on {n} images "
       "(one device, not timed) ...")
  state, _, _ = fit(trainer, trainer.init_state(jax.random.key(0)), splits)
  return splits, model, trainer, state


def run(args):
  if args.devices:
    # pylint: disable=g-import-not-at-top
    from hint_jax.cli import bench_scaling
    # Before anything starts JAX's backend (it fixes the CPU device count).
    counts = bench_scaling.parse_counts(args.devices)
    return bench_scaling.run(args, counts)
  # pylint: disable=g-import-not-at-top
  from hint_jax import influence as infl

  repeats = 1 if args.quick else args.repeats
  splits, model, trainer, state = trained_convnet(
      args, 5000 if args.quick else None)
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
  info(f"one training epoch ({trainer.steps_per_epoch} steps): "
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
  info(f"HVP: closed form over {n} features "
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
  depth = 98 if args.quick else 980
  t_net = _median(lambda: infl.solve(net_op, v, method="lissa", damping=0.5,
                                     key=key, depth=depth)[0], 1)
  fig["s_test_lissa_autodiff_s"] = t_net * 980 / depth
  fig["s_test_lissa_autodiff_extrapolated"] = depth != 980
  fig["s_test_direct"] = ("not timed: the dense 16010x16010 Hessian is 1 GB "
                          "and ~3e13 flop to form on CPU; use direct on "
                          "small subsets")
  info(f"s_test: CG {fig['s_test_cg_s']:.2f} s ({fig['s_test_cg_iterations']}"
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
  sample = 200 if not args.quick else 50
  one_dot = jax.jit(lambda x, y: jax.jvp(
      lambda t: loss_top(t, x, y), (top,), (s_cg,))[1])
  x_f = x_dev[:sample].astype(jnp.float32) / 255.0

  def loop_dots():
    return [one_dot(x_f[i], y_dev[i]) for i in range(sample)]

  fig["i_up_all_train_per_example_loop_s"] = (_median(loop_dots, 1)
                                              * n / sample)
  fig["i_up_loop_extrapolated_from"] = sample

  # I_pert for ceil(r n) examples: vectorised vs a per-example loop.
  m = int(np.ceil(args.ratio * n))
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
  one_pert = jax.jit(lambda x, y: infl.influence_pert(
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

  print(f"MNIST ConvNet, n = {n}, theta_top = 16010 parameters "
        f"({jax.default_backend()}, medians of {repeats})")
  rows = [
      ("one training epoch", fig["train_epoch_s"]),
      ("features of all training images", fig["features_all_train_s"]),
      ("HVP closed form, all train", fig["hvp_closed_form_all_train_s"]),
      ("HVP autodiff, batch of 50", fig["hvp_autodiff_batch50_s"]),
      ("s_test CG (features given)", fig["s_test_cg_s"]),
      ("s_test LiSSA on features", fig["s_test_lissa_features_s"]),
      ("s_test LiSSA through network", fig["s_test_lissa_autodiff_s"]),
      ("I_up all train, closed form", fig["i_up_all_train_closed_form_s"]),
      ("I_up all train, per-example loop*",
       fig["i_up_all_train_per_example_loop_s"]),
      (f"I_pert {m}, batched top-layer", fig["i_pert_batched_top_layer_s"]),
      (f"I_pert {m}, vmapped mixed derivative", fig["i_pert_vectorised_s"]),
      (f"I_pert {m}, per-example loop*", fig["i_pert_per_example_loop_s"]),
  ]
  for name, sec in rows:
    print(f"  {name:36s} {sec:9.3f} s")
  print(f"  (* extrapolated from {sample} examples)")
  print(f"s_test end to end (features + CG) / one epoch: "
        f"{fig['s_test_end_to_end_over_epoch']:.3f}")
  print(f"I_up closed form vs per-example loop: "
        f"{fig['i_up_speedup_closed_form']:.0f}x faster")
  print(f"I_pert vs per-example loop: batched top-layer "
        f"{fig['i_pert_speedup_batched_top_layer']:.1f}x faster, vmapped "
        f"mixed derivative {fig['i_pert_speedup_vectorised']:.1f}x")
  print(f"LiSSA (authors' settings) vs CG: relative difference "
        f"{fig['lissa_vs_cg_rel_diff']:.3f}")
  if args.json:
    write_json_atomic(args.json, {"benchmark": "influence", "n_train": n,
                                  "quick": args.quick, "repeats": repeats,
                                  "backend": jax.default_backend(),
                                  "figures": fig})
  return 0


def _norm(tree):
  return jnp.sqrt(sum(jnp.sum(l ** 2) for l in jax.tree.leaves(tree)))
