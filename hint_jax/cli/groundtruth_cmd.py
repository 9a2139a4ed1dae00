"""``hint-jax groundtruth``: retrain a protocol's models on LDS subsets or
leave-one-out sets, many at once and resumably
(`hint_jax.pipeline.groundtruth` does the work and says which files it
writes).

Example (dattri's MNIST logistic-regression LDS, 50 subsets):
  hint-jax groundtruth --protocol mnist_lr --kind lds --num-subsets 50 \\
      --out runs/gt_lr_lds
"""

from hint_jax.cli.common import (CliReporter, check_out, info, nonneg_int,
                                 positive_float, positive_int)


def register(sub):
  from hint_jax.pipeline import groundtruth  # pylint: disable=g-import-not-at-top
  p = sub.add_parser(
      "groundtruth", help="retrain many models on training subsets (LDS) "
      "or without single examples (LOO): the ground truth attribution "
      "scores are measured against",
      epilog="Protocols: " + "; ".join(
          f"{name}: {pr.dataset}, {pr.model}, first {pr.num_train} "
          f"training / {pr.num_test} test images"
          for name, pr in groundtruth.PROTOCOLS.items()))
  p.add_argument("--protocol", default="mnist_lr",
                 choices=sorted(groundtruth.PROTOCOLS))
  p.add_argument("--kind", default="lds", choices=groundtruth.KINDS)
  p.add_argument("--num-subsets", type=positive_int, default=50,
                 help="LDS: subsets m (default 50, dattri's MNIST setting)")
  p.add_argument("--fraction", type=positive_float, default=0.5,
                 help="LDS: subset size as a fraction of the training "
                 "slice (default 0.5)")
  p.add_argument("--seeds-per-subset", type=positive_int, default=1,
                 help="LDS: models per subset, averaged (default 1)")
  p.add_argument("--num-removed", type=positive_int, default=None,
                 help="LOO: leave out this many training images, drawn "
                 "with --subset-seed (default: every one)")
  p.add_argument("--subset-seed", type=nonneg_int, default=0,
                 help="draws the subsets or the removed images")
  p.add_argument("--first-seed", type=nonneg_int, default=0,
                 help="training seeds start here (another value gives an "
                 "independent ground truth: the noise ceiling)")
  p.add_argument("--chunk", type=positive_int, default=50,
                 help="models trained at once (default 50)")
  p.add_argument("--data-dir", default=None,
                 help="data folder (default: $HINT_JAX_DATA_DIR)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--no-progress", action="store_true")
  p.set_defaults(func=run)


def run(args):
  from hint_jax.pipeline import groundtruth  # pylint: disable=g-import-not-at-top
  check_out(args.out)
  job = groundtruth.GroundTruthJob(
      protocol=args.protocol, kind=args.kind, num_subsets=args.num_subsets,
      fraction=args.fraction, seeds_per_subset=args.seeds_per_subset,
      subset_seed=args.subset_seed, first_seed=args.first_seed,
      num_removed=args.num_removed, chunk=args.chunk)
  reporter = CliReporter(False if args.no_progress else None,
                         desc="groundtruth")
  record = groundtruth.run_groundtruth(job, args.out, data_dir=args.data_dir,
                                       reporter=reporter)
  info(f"{args.protocol}/{args.kind}: {record['models']} models, mean test "
       f"accuracy {record['mean_test_accuracy']:.4f}, "
       f"{record['seconds_training']:.1f} s of training; test losses in "
       f"{args.out}/{groundtruth.LOSS_FILE}")
  return 0
