"""``hint-jax demo``: the README's main job on the embedded digits.

Poisons the whole training set with the mixed attack (PGD, DAP, DURP and
DeepConfuse in equal shares, eps = 0.3; DeepConfuse's generator trained for
300 steps), trains the
same model from the same seed on it without and with HINT, prints both
test accuracies and draws the healthy-noise figure.
"""

from hint_jax import pipeline
from hint_jax.cli.common import CliReporter, check_out, info, nonneg_int
from hint_jax.pipeline import figures


def register(sub):
  p = sub.add_parser("demo", help="poison the embedded 8x8 digits (no "
                     "download needed), train without and with HINT; print "
                     "both test accuracies")
  p.add_argument("--out", default="runs/demo", help="output directory")
  p.add_argument("--seed", type=nonneg_int, default=0)
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def run(args):
  out = check_out(args.out)
  reporter = CliReporter(False if args.no_progress else None)
  data = pipeline.DataSpec("digits")
  poison_file = out / "poison.npz"
  info("demo: crafting the poisoned training set (mixed PGD/DAP/DURP/"
       "DeepConfuse, p = 1)")
  mix = ("pgd", "dap", "durp", pipeline.DcSpec(steps=300))
  pipeline.run_poison(data, pipeline.PoisonSpec(mix, ratio=1.0,
                                                seed=args.seed),
                      poison_file, reporter)
  results = {}
  for name, defence in (("plain", None), ("hint", pipeline.HintSpec())):
    info(f"demo: training {'with HINT' if defence else 'without a defence'}")
    job = pipeline.TrainJob(data, pipeline.TrainSpec(seed=args.seed),
                            defence=defence, poison=str(poison_file),
                            overwrite=True)
    results[name] = pipeline.run_train(job, out / name, reporter=reporter)
  figures.noise_figure(out / "hint")
  plain, hinted = results["plain"], results["hint"]
  print(f"\ndigits poisoned with PGD/DAP/DURP/DeepConfuse (p = 1, "
        f"eps = 0.3), "
        f"{plain['model']}, {plain['epochs']} epochs, seed {args.seed}:")
  print(f"  no defence: test accuracy {100 * plain['test_accuracy']:.2f}% "
        f"({plain['train_seconds']:.1f} s training)")
  print(f"  HINT:       test accuracy {100 * hinted['test_accuracy']:.2f}% "
        f"({hinted['train_seconds']:.1f} s training + "
        f"{hinted['defence_seconds']:.1f} s HINT, "
        f"{hinted['num_selected']} examples noised)")
  print(f"results: {poison_file}, {out}/plain/result.json, "
        f"{out}/hint/result.json, {out}/hint/fig_noise.png")
  return 0
