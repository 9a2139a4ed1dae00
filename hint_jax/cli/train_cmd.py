"""``hint-jax train``: train a model on a dataset, write result.json and
metrics.jsonl, resume from the last finished epoch if interrupted."""

from hint_jax import pipeline
from hint_jax.cli.common import (CliReporter, OneLineParser, add_kind_options,
                                 check_out, finite_float, nonneg_int,
                                 positive_float, positive_int)
from hint_jax.models import MODEL_NAMES
from hint_jax.pipeline import defences, specs
from hint_jax.train.presets import EPOCH_SCHEDULES

def add_data_args(p):
  p.add_argument("--dataset", required=True,
                 help="mnist, cifar10, digits, or your own data: "
                 "folder:PATH (PATH/{train,test}/<class>/ images, any class "
                 "names) or npz:PATH (x_train, y_train, x_test, y_test)")
  p.add_argument("--data-dir", default=None,
                 help="data directory (default: $HINT_JAX_DATA_DIR, else "
                 "~/.cache/hint_jax/data)")
  p.add_argument("--source", default="auto",
                 help="where to read the dataset from: auto, idx (mnist), "
                 "pickle|jpeg (cifar10), npz, tfds; auto picks a complete "
                 "official copy, then (cifar10) the JPEG copy, then the "
                 "exact-pixel subset")
  p.add_argument("--subset", type=positive_int, default=None,
                 help="train on this many training images (seeded choice)")
  p.add_argument("--num-val", type=nonneg_int, default=None,
                 help="validation images held out of the training set "
                 "(default: 1000 for mnist/cifar10, 100 for digits, a "
                 "tenth of the training images (at most 1000) for your own)")
  p.add_argument("--split-seed", type=nonneg_int, default=0,
                 help="seed of the train/validation split")
  p.add_argument("--own-data", action="store_true",
                 help="accept dataset files whose checksums differ from the "
                 "official ones (your own MNIST IDX files); without it they "
                 "are refused")


def add_train_args(p):
  p.add_argument("--model", choices=MODEL_NAMES, default=None,
                 help="default: convnet (mnist), resnet18 (cifar10), "
                 "convnet_small (digits)")
  p.add_argument("--epochs", type=nonneg_int, default=None,
                 help="default: the dataset's preset; 0 evaluates the "
                 "untrained model (said on stderr)")
  p.add_argument("--batch-size", type=positive_int, default=None)
  p.add_argument("--lr", type=positive_float, default=None)
  p.add_argument("--momentum", type=finite_float, default=None,
                 help="SGD momentum in [0, 1) (default: the preset's; "
                 "mnist 0, cifar10 0.9 Nesterov, your own data 0.9)")
  p.add_argument("--seed", type=nonneg_int, default=0,
                 help="seed of initialisation, data order and augmentation")
  p.add_argument("--eval-every", type=nonneg_int, default=None,
                 help="evaluate every N epochs (0: only at the end)")
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--poison", default=None, metavar="FILE",
                 help="train on a poisoned set written by `hint-jax poison` "
                 "(made from the same split)")
  p.add_argument("--no-augment", action="store_true",
                 help="train without the preset's augmentation (CIFAR-10: "
                 "random shift and flip); the paper's MetaPoison setting")
  add_epoch_schedule_arg(p)
  p.add_argument("--overwrite", action="store_true",
                 help="discard a checkpoint of a run with other settings")
  p.add_argument("--no-progress", action="store_true")
  add_parallel_args(p)


def add_epoch_schedule_arg(p):
  p.add_argument("--epoch-schedule", choices=EPOCH_SCHEDULES,
                 default="scaled",
                 help="a run shorter than its dataset's preset: 'scaled' "
                 "(default) places the preset's learning-rate milestones and "
                 "HINT's default schedule at the same fractions of the run "
                 "(CIFAR-10 in 15 of 80 epochs: lr x0.1 at 6/9/13, HINT at "
                 "1/3/8); 'absolute' keeps the preset's epoch numbers")


def _devices(text):
  if text == "all":
    return None
  return positive_int(text)


def add_parallel_args(p):
  g = p.add_argument_group(
      "devices and hosts (results equal one device's up to float rounding)")
  g.add_argument("--devices", type=_devices, default=1, metavar="N|all",
                 help="split every batch and HINT's passes over N devices "
                 "(a jax.sharding mesh; default 1, the plain one-device path)")
  g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="multi-host: the address of process 0 (also "
                 "JAX_COORDINATOR_ADDRESS); start the same command on every "
                 "host, each keeps only its rows of the training set")
  g.add_argument("--num-processes", type=positive_int, default=None)
  g.add_argument("--process-id", type=nonneg_int, default=None)


def make_mesh(args):
  """Starts the distributed runtime if asked, then returns the data mesh
  for ``--devices`` (None for the plain one-device path)."""
  from hint_jax import parallel  # pylint: disable=g-import-not-at-top
  multi = parallel.distributed.initialize(args.coordinator,
                                          args.num_processes, args.process_id)
  if multi or args.devices != 1:
    return parallel.make_data_mesh(None if multi else args.devices)
  return None


def add_defence_args(p):
  """``--defence`` and every registered defence's options, each defence's
  in its own group."""
  p.add_argument("--defence", "--defense", dest="defence",
                 choices=defences.names(), default="none",
                 help="defence to train with (default: none; --defense is "
                 "the old spelling)")
  add_kind_options(p, [defences.get(n) for n in defences.names()],
                   "defence")


def register(sub):
  p = sub.add_parser("train", help="train a model (optionally defended)")
  add_all_args(p)
  p.set_defaults(func=run)


def parse_train(argv):
  """``hint-jax train``'s arguments from ``argv`` (without "train")."""
  p = OneLineParser(prog="hint-jax train")
  add_all_args(p)
  return p.parse_args(argv)


def add_all_args(p):
  add_data_args(p)
  add_train_args(p)
  add_defence_args(p)
  p.add_argument("--victim-dir", default=None,
                 help="transfer-scenario files only: the folder where "
                 "`target-poison --victim-dir` left the pre-trained "
                 "extractor; it is reused (and trained there if missing) "
                 "instead of being trained again in OUT")


def data_spec(args) -> specs.DataSpec:
  return specs.DataSpec(
      dataset=args.dataset, data_dir=args.data_dir, source=args.source,
      subset=args.subset, num_val=args.num_val, split_seed=args.split_seed,
      own_data=getattr(args, "own_data", False))


def train_spec(args) -> specs.TrainSpec:
  return specs.TrainSpec(
      model=args.model, epochs=args.epochs, batch_size=args.batch_size,
      lr=args.lr, momentum=args.momentum, seed=args.seed,
      eval_every=args.eval_every,
      augment=False if args.no_augment else None,
      epoch_schedule=args.epoch_schedule)


def defence_spec(args) -> specs.DefenceSpec:
  """The ``--defence`` and its options as a spec."""
  return defences.get(args.defence).spec(vars(args))


def train_job(args) -> specs.TrainJob:
  return specs.TrainJob(data=data_spec(args), train=train_spec(args),
                        defence=defence_spec(args), poison=args.poison,
                        victim_dir=args.victim_dir, overwrite=args.overwrite)


def load_splits(args):
  """`hint_jax.pipeline.load_splits` of the data arguments."""
  return pipeline.load_splits(data_spec(args), CliReporter(False))


def run(args):
  out = check_out(args.out)   # (the library checks it again, quietly)
  job = train_job(args)
  mesh = make_mesh(args)
  result = pipeline.run_train(job, out, mesh=mesh, reporter=CliReporter(
      False if args.no_progress else None))
  if result.get("scenario") == "transfer":
    t = result["target"]
    print(f"{args.dataset}/{result['model']} transfer: test accuracy "
          f"{100 * result['test_accuracy']:.2f}%; target test image "
          f"{t['index']} predicted {t['predicted']} (intended "
          f"{t['intended_class']}): attack "
          f"{'succeeded' if t['success'] else 'failed'}; wrote "
          f"{out / pipeline.RESULT_FILE}")
  else:
    with_ = ("" if args.defence == "none"
             else f" with {defences.get(args.defence).label}")
    print(f"{args.dataset}/{result['model']}{with_}: test "
          f"accuracy {100 * result['test_accuracy']:.2f}% after "
          f"{result['epochs']} epochs; wrote {out / pipeline.RESULT_FILE}")
  return 0
