"""``hint-jax train``: train a model on a dataset, write result.json and
metrics.jsonl, resume from the last finished epoch if interrupted."""

import argparse

from hint_jax import defenses
from hint_jax import hint as hint_lib
from hint_jax import pipeline
from hint_jax.cli.common import (CliReporter, OneLineParser, check_out,
                                 finite_float, nonneg_int, positive_float,
                                 positive_int)
from hint_jax.models import MODEL_NAMES
from hint_jax.pipeline import specs
from hint_jax.train.presets import EPOCH_SCHEDULES

DEFENSES = ("none", "hint", "epic", "friends", "atda")


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


def _schedule(text):
  text = text.strip()
  if text.lower() in ("", "none"):
    return ()
  try:
    epochs = tuple(int(t) for t in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma-separated list of epochs, e.g. 5,15,40")
  return epochs


def add_defense_args(p):
  d = specs.HintSpec()
  p.add_argument("--defense", choices=DEFENSES, default="none",
                 help="defence to train with (default: none)")
  g = p.add_argument_group("HINT (--defense hint; defaults are the "
                           "authors' settings)")
  g.add_argument("--ratio", type=finite_float, default=None,
                 help="fraction r of training examples given noise "
                 "(default 0.5; 1 noises all and skips scoring)")
  g.add_argument("--gamma", type=finite_float, default=None,
                 help="noise step size (default 0.1)")
  g.add_argument("--beta", type=finite_float, default=None,
                 help="L-inf bound of the noise in [0,1] pixel units "
                 "(default 16/255)")
  g.add_argument("--schedule", type=_schedule, default=None,
                 help="0-based epochs before which the noise is updated, "
                 "e.g. 5,15,40 (default: mnist 9, cifar10 5,15,40, digits "
                 "5,15, scaled to a shorter run, or trimmed to it under "
                 "--epoch-schedule absolute)")
  g.add_argument("--gamma-decay-epoch", type=nonneg_int, default=None,
                 help="use gamma/10 from this epoch on (default: the "
                 "authors' 40, scaled with the schedule under "
                 "--epoch-schedule scaled)")
  g.add_argument("--no-gamma-decay", action="store_true",
                 help="keep gamma for every update")
  g.add_argument("--sign-step", action="store_true",
                 help="step along sign(I_pert)")
  g.add_argument("--rounding", choices=hint_lib.config.ROUNDINGS,
                 default=d.rounding,
                 help="how noised images are stored as uint8 (authors: "
                 "truncate)")
  g.add_argument("--hessian-from", choices=hint_lib.config.HESSIAN_FROM,
                 default=d.hessian_from,
                 help="images the Hessian of later updates is taken over "
                 "(authors: the selected set)")
  g.add_argument("--grad-space", choices=hint_lib.config.GRAD_SPACES,
                 default=d.grad_space,
                 help="for models that normalise inputs: gradient w.r.t. "
                 "the normalised input (authors) or the pixels")
  g.add_argument("--solver", choices=hint_lib.config.SOLVERS,
                 default=d.solver,
                 help="s_test solver (cg: the fixed point of the authors' "
                 "LiSSA; lissa: theirs)")
  g.add_argument("--damping", type=finite_float, default=d.damping,
                 help="lambda of (H + lambda I) (authors' LiSSA: 0.5)")
  g.add_argument("--hint-seed", type=nonneg_int, default=d.seed,
                 help="seed of HINT's own randomness (LiSSA batches, the "
                 "controls' draws)")
  g.add_argument("--hint-direction", choices=hint_lib.config.DIRECTIONS,
                 default=d.direction,
                 help="control: random_sign keeps each update's per-pixel "
                 "magnitude |gamma I_pert| and draws its sign at random")
  g.add_argument("--hint-selection", choices=hint_lib.config.SELECTIONS,
                 default=d.selection,
                 help="control: random noises a random subset of the same "
                 "size instead of the top |I_up|")


def add_epic_args(p):
  d = specs.EpicSpec()
  g = p.add_argument_group("EPIC (--defense epic; defaults per dataset are "
                           "the paper's: MNIST K = 5, T = 2; CIFAR-10 K = "
                           "10, T = 4)")
  g.add_argument("--epic-warmup", type=nonneg_int, default=None,
                 help="epochs before the first selection (K)")
  g.add_argument("--epic-period", type=positive_int, default=None,
                 help="epochs between selections (T)")
  g.add_argument("--epic-budget", type=finite_float, default=d.budget,
                 help="medoids per class, fraction of the class (0.1)")
  g.add_argument("--epic-scale", type=finite_float, default=d.scale,
                 help="similarity exp(-||g_i - g_j|| / scale) (10)")


def add_friends_args(p):
  d = defenses.FriendsConfig()
  g = p.add_argument_group("FRIENDS (--defense friends; defaults are the "
                           "paper's)")
  g.add_argument("--friends-begin-epoch", type=nonneg_int,
                 default=d.begin_epoch,
                 help="epoch (0-based) before which the friendly noise is "
                 "computed, once")
  g.add_argument("--friends-steps", type=positive_int, default=d.steps)
  g.add_argument("--friends-lr", type=finite_float, default=d.lr)
  g.add_argument("--friends-mu", type=finite_float, default=d.mu)
  g.add_argument("--friends-clamp", type=finite_float, default=d.clamp,
                 help="friendly noise bound, [0,1] units (16/255)")
  g.add_argument("--friends-bernoulli", type=finite_float,
                 default=d.bernoulli,
                 help="Bernoulli noise amplitude, [0,1] units (8/255); 0 "
                 "turns it off")


def _tau(text):
  if text.lower() == "none":
    return None
  return nonneg_int(text)


def add_atda_args(p):
  d = defenses.AtdaConfig()
  g = p.add_argument_group("ATDA (--defense atda: adversarial training, "
                           "FAT early stop)")
  g.add_argument("--atda-eps", type=finite_float, default=d.eps,
                 help="budget in --atda-norm, [0,1] units (0.25 against "
                 "untargeted attacks; the paper uses 0.062 against targeted "
                 "ones)")
  g.add_argument("--atda-norm", choices=defenses.atda.NORMS, default=d.norm,
                 help="the inner attack's norm: l2 (default, as the "
                 "reference code the paper cites) or linf")
  g.add_argument("--atda-steps", type=positive_int, default=d.steps)
  g.add_argument("--atda-step-size", type=finite_float, default=None,
                 help="default eps/5")
  g.add_argument("--atda-tau", type=_tau, default=d.tau,
                 help="FAT: steps allowed after the first misclassification "
                 "(0); 'none' for plain PGD adversarial training")


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
  add_defense_args(p)
  add_epic_args(p)
  add_friends_args(p)
  add_atda_args(p)
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
  """The ``--defense`` and its options as a spec."""
  if args.defense == "hint":
    return specs.HintSpec(
        ratio=args.ratio, gamma=args.gamma, beta=args.beta,
        schedule=args.schedule, gamma_decay_epoch=args.gamma_decay_epoch,
        gamma_decay=not args.no_gamma_decay, sign=args.sign_step,
        rounding=args.rounding, hessian_from=args.hessian_from,
        grad_space=args.grad_space, solver=args.solver, damping=args.damping,
        seed=args.hint_seed, direction=args.hint_direction,
        selection=args.hint_selection)
  if args.defense == "epic":
    return specs.EpicSpec(warmup=args.epic_warmup, period=args.epic_period,
                          budget=args.epic_budget, scale=args.epic_scale)
  if args.defense == "friends":
    return defenses.FriendsConfig(
        begin_epoch=args.friends_begin_epoch, steps=args.friends_steps,
        lr=args.friends_lr, mu=args.friends_mu, clamp=args.friends_clamp,
        bernoulli=args.friends_bernoulli)
  if args.defense == "atda":
    return defenses.AtdaConfig(
        eps=args.atda_eps, norm=args.atda_norm, steps=args.atda_steps,
        step_size=args.atda_step_size, tau=args.atda_tau)
  return None


def train_job(args) -> specs.TrainJob:
  return specs.TrainJob(data=data_spec(args), train=train_spec(args),
                        defence=defence_spec(args), poison=args.poison,
                        victim_dir=args.victim_dir, overwrite=args.overwrite)


def load_splits(args):
  """`hint_jax.pipeline.load_splits` of the data arguments."""
  return pipeline.load_splits(data_spec(args), CliReporter(False))


_LABELS = {"none": "", "hint": " with HINT", "epic": " with EPIC",
           "friends": " with FRIENDS", "atda": " with ATDA"}


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
    print(f"{args.dataset}/{result['model']}{_LABELS[args.defense]}: test "
          f"accuracy {100 * result['test_accuracy']:.2f}% after "
          f"{result['epochs']} epochs; wrote {out / pipeline.RESULT_FILE}")
  return 0
