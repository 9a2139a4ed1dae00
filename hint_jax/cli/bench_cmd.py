"""``hint-jax bench``: throughput benchmarks (not tests). The measuring is
`hint_jax.bench`'s; this module parses, prints the tables and writes the
JSON."""

import statistics

from hint_jax.cli.common import (CliReporter, Progress, info, positive_int,
                                 write_json_atomic)
from hint_jax.errors import ConfigError


def register(sub):
  p = sub.add_parser("bench", help="benchmarks (throughput, ratios)")
  bsub = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
  t = bsub.add_parser("train", help="training throughput (images/s) at "
                      "batch 128 of the MNIST ConvNet, resnet_tiny and "
                      "ResNet-18 (CIFAR-10 step), against the same network "
                      "in PyTorch when torch is installed")
  t.add_argument("--data-dir", default=None)
  t.add_argument("--models", default="convnet",
                 help="comma-separated: convnet, resnet_tiny, resnet18 "
                 "(default convnet)")
  t.add_argument("--batch-size", type=positive_int, default=128)
  t.add_argument("--steps", type=positive_int, default=None,
                 help="steps per timed repeat (default: convnet 50, "
                 "resnet_tiny 10, resnet18 3)")
  t.add_argument("--repeats", type=positive_int, default=5)
  t.add_argument("--no-torch", action="store_true",
                 help="skip the PyTorch reference even if torch is installed")
  t.add_argument("--json", default=None, help="write the figures here")
  t.set_defaults(func=bench_train)
  _register_influence(bsub)
  _register_hint(bsub)
  _register_defences(bsub)
  _register_all(bsub)


def _write(path, record):
  if path:
    write_json_atomic(path, record)


# ------------------------------------------------------------------ train
_TRAIN_STEPS = {"convnet": 50, "resnet_tiny": 10, "resnet18": 3}


def bench_train(args):
  from hint_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  from hint_jax.bench.train import MODELS, train_throughput  # pylint: disable=g-import-not-at-top
  models = [m.strip() for m in args.models.split(",") if m.strip()]
  unknown = [m for m in models if m not in MODELS]
  if unknown or not models:
    raise ConfigError(f"--models: unknown {', '.join(unknown) or '(none)'}; "
                      f"choose from {', '.join(MODELS)}")
  results, loaded = [], {}
  for model in models:
    dataset = MODELS[model][0]
    if dataset not in loaded:
      splits = data_lib.split_train_val(data_lib.load_dataset(dataset,
                                                              args.data_dir))
      loaded[dataset] = (splits.x_train, splits.y_train)
    x, y = loaded[dataset]
    result = train_throughput(x, y, model=model, batch_size=args.batch_size,
                              steps=args.steps or _TRAIN_STEPS[model],
                              repeats=args.repeats, torch=not args.no_torch,
                              note=info)
    results.append(result)
    print(f"{model} ({result['dataset']} step, batch {args.batch_size}; "
          f"{result['xla_options']}):")
    for name, fig in result["figures"].items():
      ratio = fig.get("speed_vs_pytorch_median")
      extra = "" if ratio is None else (f"   {ratio:.2f}x PyTorch (median "
                                        "of per-repeat ratios)")
      print(f"  {name:22s} {fig['images_per_second']:8.1f} images/s{extra}")
  _write(args.json, results[0] if len(results) == 1 else
         {"benchmark": "train_throughput", "results": results})
  return 0


# -------------------------------------------------------------- influence
def _register_influence(bsub):
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
  p.set_defaults(func=bench_influence)


def bench_influence(args):
  common = dict(quick=args.quick, repeats=args.repeats,
                train_epochs=args.train_epochs, ratio=args.ratio, note=info)
  if args.devices:
    from hint_jax.bench import scaling  # pylint: disable=g-import-not-at-top
    # Before anything starts JAX's backend (it fixes the CPU device count).
    counts = scaling.parse_counts(args.devices)
    result = scaling.scaling_figures(counts, args.data_dir,
                                     subset=args.subset, **common)
    _print_scaling(result)
  else:
    from hint_jax.bench.influence import influence_figures  # pylint: disable=g-import-not-at-top
    result = influence_figures(args.data_dir, **common)
    _print_influence(result)
  _write(args.json, result)
  return 0


def _print_influence(result):
  fig, n, m = result["figures"], result["n_train"], result["figures"][
      "i_pert_count"]
  print(f"MNIST ConvNet, n = {n}, theta_top = 16010 parameters "
        f"({result['backend']}, medians of {result['repeats']})")
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
  print(f"  (* extrapolated from {fig['i_pert_loop_extrapolated_from']} "
        "examples)")
  print(f"s_test end to end (features + CG) / one epoch: "
        f"{fig['s_test_end_to_end_over_epoch']:.3f}")
  print(f"I_up closed form vs per-example loop: "
        f"{fig['i_up_speedup_closed_form']:.0f}x faster")
  print(f"I_pert vs per-example loop: batched top-layer "
        f"{fig['i_pert_speedup_batched_top_layer']:.1f}x faster, vmapped "
        f"mixed derivative {fig['i_pert_speedup_vectorised']:.1f}x")
  print(f"LiSSA (authors' settings) vs CG: relative difference "
        f"{fig['lissa_vs_cg_rel_diff']:.3f}")


def _print_scaling(result):
  rows_table, simulated = result["rows"], result["simulated_devices"]
  print(f"MNIST ConvNet, n = {result['n_train']}, I_pert over "
        f"{result['i_pert_count']}; {result['backend']}"
        f"{' (simulated devices)' if simulated else ''}, medians of "
        f"{result['repeats']}")
  head = ("devices", "train img/s", "features img/s", "s_test CG s",
          "I_up ex/s", "I_pert ex/s")
  print("  " + "  ".join(f"{h:>14s}" for h in head))
  print(f"  {'no mesh':>14s}  {result['no_mesh_train_images_per_s']:>14.0f}")
  for fig in rows_table:
    print("  " + "  ".join([
        f"{fig['devices']:>14d}", f"{fig['train_images_per_s']:>14.0f}",
        f"{fig['features_images_per_s']:>14.0f}",
        f"{fig['s_test_cg_s']:>14.3f}", f"{fig['i_up_examples_per_s']:>14.0f}",
        f"{fig['i_pert_examples_per_s']:>14.0f}"]))
  base, last = rows_table[0], rows_table[-1]
  print(f"throughput at {last['devices']} vs {base['devices']} device(s): "
        f"train {last['train_images_per_s'] / base['train_images_per_s']:.2f}x"
        f", I_pert {last['i_pert_examples_per_s'] / base['i_pert_examples_per_s']:.2f}x")
  if simulated:
    print("note: " + result["note"])


# ------------------------------------------------------------------- hint
def _register_hint(bsub):
  from hint_jax.bench.hint import SETTINGS, HintBench  # pylint: disable=g-import-not-at-top
  d = HintBench()
  p = bsub.add_parser("hint", help="HINT's wall time over plain training "
                      "(same seed, same run), by phase")
  p.add_argument("--settings", default="mnist,cifar_like",
                 help=f"comma-separated, from {', '.join(SETTINGS)}")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--epochs", type=positive_int, default=None,
                 help="override the setting's epochs (the schedule is "
                 "trimmed to fit)")
  p.add_argument("--cifar-model", default=d.cifar_model)
  p.add_argument("--cifar-subset", type=positive_int, default=d.cifar_subset)
  p.add_argument("--cifar-source", default=d.cifar_source)
  p.add_argument("--seed", type=int, default=d.seed)
  p.add_argument("--torch-sample", type=positive_int, default=d.torch_sample,
                 help="examples the PyTorch per-example loops are timed on")
  p.add_argument("--no-torch", action="store_true",
                 help="skip the PyTorch phase reference")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--json", default=None, help="write the figures here")
  p.set_defaults(func=bench_hint)


def bench_hint(args):
  from hint_jax.bench import hint as bench  # pylint: disable=g-import-not-at-top
  names = [s.strip() for s in args.settings.split(",") if s.strip()]
  bench.check_settings(names)
  spec = bench.HintBench(
      data_dir=args.data_dir, epochs=args.epochs,
      cifar_model=args.cifar_model, cifar_subset=args.cifar_subset,
      cifar_source=args.cifar_source, seed=args.seed,
      torch_sample=args.torch_sample)
  printed = set()

  def on_setting(results):
    # After each setting: a killed run keeps what finished.
    for name, fig in results["settings"].items():
      if name not in printed:
        printed.add(name)
        _print_hint(fig, fig.get("pytorch_reference"))
    _write(args.json, results)

  bench.hint_overhead(
      names, spec, torch=not args.no_torch,
      progress=lambda name: Progress(False if args.no_progress else None,
                                     desc=name),
      note=info, on_setting=on_setting)
  return 0


def _print_hint(fig, torch_fig=None):
  name = fig["setting"]
  print(f"\n== {name}: {fig['model']}, {fig['num_train']} images, "
        f"{fig['epochs']} epochs, schedule {fig['schedule']}, r = "
        f"{fig['ratio_r']} ({fig['num_selected']} selected)")
  print(f"plain training      {fig['plain_seconds']:8.1f} s   test accuracy "
        f"{100 * fig['test_accuracy_plain']:.2f}%")
  print(f"HINT training       {fig['hint_seconds']:8.1f} s   test accuracy "
        f"{100 * fig['test_accuracy_hint']:.2f}%  (epochs "
        f"{fig['hint_train_seconds']:.1f} s + defence "
        f"{fig['hint_defence_seconds']:.1f} s)")
  target = (fig["targets"] or {}).get("ratio")
  authors = (fig["authors"] or {}).get("ratio")
  line = f"HINT / plain        {fig['time_ratio']:8.3f}x"
  if target:
    line += f"   target <= {target:.2f}x"
  if authors:
    line += f", authors {authors:.2f}x"
  print(line)
  print(f"  median per-epoch ratio without the defence: "
        f"{fig['median_epoch_ratio_without_defence']:.3f}")
  rows = [("selection", "selection_seconds"), ("s_test (later)",
                                              "s_test_seconds"),
          ("I_pert", "pert_seconds"), ("noise write", "write_seconds")]
  for label, key in rows:
    line = f"  {label:16s} {fig[key]:8.2f} s"
    t = (fig["targets"] or {}).get(key)
    a = (fig["authors"] or {}).get(key)
    if t is not None:
      line += f"   target <= {t:g} s"
    if a is not None:
      line += f", authors {a:g} s"
    if torch_fig and key in torch_fig:
      line += (f", PyTorch here {torch_fig[key]:.1f} s "
               f"({torch_fig[key] / max(fig[key], 1e-9):.0f}x ours)")
    print(line)
  if torch_fig:
    print(f"  PyTorch authors'-style HINT / plain on this machine (estimate): "
          f"{torch_fig['time_ratio_estimate']:.2f}x")


# --------------------------------------------------------------- defences
def _register_defences(bsub):
  from hint_jax.bench.defences import DEFENCES  # pylint: disable=g-import-not-at-top
  p = bsub.add_parser("defences", aliases=["defenses"],
                      help="wall time of each defence over undefended "
                      "training (paper Table V)")
  p.add_argument("--dataset", default="mnist",
                 choices=("mnist", "cifar10", "digits"))
  p.add_argument("--data-dir", default=None)
  p.add_argument("--subset", type=positive_int, default=None,
                 help="training images (default: all)")
  p.add_argument("--epochs", type=positive_int, default=None,
                 help="default: the dataset's preset")
  p.add_argument("--defences", "--defenses", dest="defences",
                 default=",".join(DEFENCES),
                 help="comma-separated, 'none' first is the reference")
  p.add_argument("--repeats", type=positive_int, default=1)
  p.add_argument("--extra", default="",
                 help="extra `train` flags for every run, e.g. "
                 "'--atda-steps 7'")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--json", default=None, help="write the figures here")
  p.add_argument("--plot", default=None,
                 help="PNG path: the ratios as bars, the paper's beside "
                 "(`hint-jax figure bench-defences` draws a saved --json)")
  p.set_defaults(func=bench_defences)


def bench_defences(args):
  from hint_jax.bench.defences import DEFENCES, defence_ratios  # pylint: disable=g-import-not-at-top
  from hint_jax.cli.train_cmd import parse_train, train_job  # pylint: disable=g-import-not-at-top
  names = [d.strip() for d in args.defences.split(",") if d.strip()]
  if not names or names[0] != "none" or any(d not in DEFENCES
                                            for d in names):
    raise ConfigError(f"--defences must start with none and list from "
                      f"{', '.join(DEFENCES)}; got {args.defences!r}")
  jobs = []
  for d in names:
    argv = ["--dataset", args.dataset, "--defence", d, "--out", "unused",
            "--eval-every", "0"]
    argv += ["--data-dir", args.data_dir] if args.data_dir else []
    argv += ["--subset", str(args.subset)] if args.subset else []
    argv += ["--epochs", str(args.epochs)] if args.epochs else []
    jobs.append(train_job(parse_train(argv + args.extra.split())))
  fig = defence_ratios(
      jobs, repeats=args.repeats,
      reporter=CliReporter(False if args.no_progress else None), note=info,
      describe={"dataset": args.dataset, "subset": args.subset,
                "epochs": args.epochs, "extra": args.extra})
  print(f"{'defence':10s} {'seconds':>9s} {'ratio':>7s} {'paper':>7s} "
        f"{'test acc':>9s}")
  for d in names:
    f = fig["defences"][d]
    paper = fig["paper_table_v"].get(d)
    print(f"{d:10s} {f['median_seconds']:9.1f} {f['ratio']:6.2f}x "
          f"{(f'{paper:.2f}x' if paper else '-'):>7s} "
          f"{100 * statistics.median(f['test_accuracy']):8.2f}%")
  _write(args.json, fig)
  if args.plot:
    from hint_jax.experiment.figures import defence_bench_figure  # pylint: disable=g-import-not-at-top
    defence_bench_figure(fig, args.plot)
    print(f"wrote {args.plot}")
  return 0


# -------------------------------------------------------------------- all
def _register_all(bsub):
  from hint_jax.bench.suite import PARTS  # pylint: disable=g-import-not-at-top
  p = bsub.add_parser("all", help="every benchmark in one run (training, "
                      "HINT's overhead, influence, attribution) on the "
                      "backend JAX finds, with the device and versions")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--quick", action="store_true",
                 help="a smoke run of minutes without data files (random "
                 "images for throughput, the embedded digits otherwise)")
  p.add_argument("--parts", default=",".join(PARTS),
                 help=f"comma-separated, from {', '.join(PARTS)}")
  p.add_argument("--no-torch", action="store_true",
                 help="skip the PyTorch references even if torch is "
                 "installed")
  p.add_argument("--json", default=None,
                 help="write the figures here (after every part)")
  p.set_defaults(func=bench_all)


def bench_all(args):
  from hint_jax.bench import suite  # pylint: disable=g-import-not-at-top
  parts = tuple(t.strip() for t in args.parts.split(",") if t.strip())
  unknown = [t for t in parts if t not in suite.PARTS]
  if unknown or not parts:
    raise ConfigError(f"--parts: unknown {', '.join(unknown) or '(none)'}; "
                      f"choose from {', '.join(suite.PARTS)}")
  record = suite.run_all(args.data_dir, quick=args.quick,
                         torch=not args.no_torch, parts=parts, note=info,
                         on_part=lambda r: _write(args.json, r))
  env = record["environment"]
  print(f"bench all{' --quick' if args.quick else ''} on "
        f"{env['backend']} ({env['device_kind']}; jax "
        f"{env['versions'].get('jax')}; {env['xla_options']}):")
  for name in parts:
    print(f"  {name:12s} {record['seconds'][name]:8.1f} s")
  _print_all(record["parts"])
  return 0


def _print_all(parts):
  for result in (parts.get("train") or {}).get("results", []):
    for name, fig in result["figures"].items():
      ratio = fig.get("speed_vs_pytorch_median")
      print(f"  train {result['model']:12s} {name:22s} "
            f"{fig['images_per_second']:8.1f} images/s"
            + ("" if ratio is None else f"  {ratio:.2f}x PyTorch"))
  for name, fig in ((parts.get("hint") or {}).get("settings") or {}).items():
    print(f"  hint {name}: HINT / plain {fig['time_ratio']:.3f}x over "
          f"{fig['epochs']} epochs")
  for name, fig in ((parts.get("attribution") or {}).get("estimators")
                    or {}).items():
    print(f"  attribution {name:10s} prepare {fig['prepare_s']:7.2f} s, "
          f"scores {fig['scores_s']:7.2f} s")
