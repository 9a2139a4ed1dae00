"""The epoch loop.

``fit`` reads the *current* training images at every epoch: a
``before_epoch`` hook may return new images (HINT writes healthy noise into
them between epochs). The loop itself never prints; progress and per-epoch
records go to the callbacks, which the command line turns into a progress bar
and a JSON-lines file.
"""

import dataclasses
import time
from typing import Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np

from hint_jax.errors import ConfigError, NumericalError
from hint_jax.parallel import distributed
from hint_jax.parallel import mesh as mesh_lib
from hint_jax.train.augment import bernoulli_noise, random_shift_flip
from hint_jax.train.optim import OptimConfig, make_optimizer
from hint_jax.train.state import (TrainState, create_train_state,
                                  make_eval_batch, make_sharded_train_step,
                                  make_train_step, make_train_steps,
                                  shuffle_key)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train.

  Attributes:
    epochs: number of epochs (>= 0).
    batch_size: examples per step; the last partial batch of each epoch is
      dropped (a different one each epoch, as the order is reshuffled), which
      keeps every step the same shape and so compiled once.
    optim: optimizer and schedule.
    augment: random shift (up to 4 px) + horizontal flip, on device.
    bernoulli_noise: if > 0, every pixel of every drawn example moves by
      +- this much (equally likely, fresh each step), then [0, 1] clip
      (FRIENDS' Bernoulli noise; after any shift/flip).
    eval_batch_size: batch size of evaluation passes.
    steps_per_call: training steps dispatched between two progress reports
      (the steps themselves are jitted one by one, see make_train_steps).
    eval_every: evaluate validation and test sets every this many epochs
      (and always after the last one); 0 disables per-epoch evaluation.
  """
  epochs: int = 10
  batch_size: int = 128
  optim: OptimConfig = OptimConfig()
  augment: bool = False
  bernoulli_noise: float = 0.0
  eval_batch_size: int = 250
  steps_per_call: int = 50
  eval_every: int = 1

  def validate(self):
    if not isinstance(self.epochs, int) or self.epochs < 0:
      raise ConfigError(f"epochs must be a whole number >= 0, got "
                        f"{self.epochs}")
    if self.batch_size < 1:
      raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
    if self.steps_per_call < 1 or self.eval_batch_size < 1:
      raise ConfigError("steps_per_call and eval_batch_size must be >= 1")
    if not 0.0 <= self.bernoulli_noise <= 1.0:
      raise ConfigError(f"bernoulli_noise must be in [0, 1], got "
                        f"{self.bernoulli_noise}")
    self.optim.validate()
    return self


def _augmentation(config: TrainConfig) -> Optional[Callable]:
  """The per-step ``(key, x) -> x`` of ``config``, or None."""
  amp = config.bernoulli_noise
  if not config.augment and not amp:
    return None

  def augment(key, x):
    if config.augment:
      x = random_shift_flip(key, x)
    if amp:
      x = bernoulli_noise(jax.random.fold_in(key, 1), x, amp)
    return x

  return augment


class Trainer:
  """Compiled train / eval functions for one model and configuration.

  Build it once and reuse it: its jitted functions are cached on it, so a
  second ``fit`` or ``evaluate`` does not recompile.

  Data parallel: with ``mesh`` (``hint_jax.parallel.make_data_mesh``) every
  batch is split by rows across the mesh's devices and the state is
  replicated; the batches are the ones a single device would draw, so the
  parameters agree with a one-device run up to float reassociation. Batches
  are gathered on the host and sent each step (one device-resident copy of
  the training set per device is not needed). Across several processes
  (``hint_jax.parallel.distributed``), ``x_u8``/``y`` passed to
  ``train_epoch`` are this process's rows only (``process_rows``): each
  process shuffles its own rows (its key folds in the process index) and
  supplies ``batch_size / process_count`` rows of every global batch.
  """

  def __init__(self, model, config: TrainConfig, num_train: int,
               adversary: Optional[Callable] = None, mesh=None):
    """``adversary``: optional ``(params, model_state, key, x, y) -> x``
    applied to every training batch (adversarial training, e.g.
    ``hint_jax.defences.atda.make_adversary``). ``num_train``: the size of
    the whole training set (all processes together). ``mesh``: optional
    data-parallel mesh (see the class docstring)."""
    config.validate()
    self.model = model
    self.config = config
    self.mesh = mesh
    self.steps_per_epoch = num_train // config.batch_size
    if self.steps_per_epoch == 0 and config.epochs > 0:
      raise ConfigError(f"{num_train} training examples are fewer than one "
                        f"batch of {config.batch_size}")
    self.optimizer = make_optimizer(config.optim, max(self.steps_per_epoch, 1))
    augment = _augmentation(config)
    self.train_step = make_train_step(model, self.optimizer, augment,
                                      adversary)
    self.train_steps = make_train_steps(self.train_step)
    self.eval_batch = make_eval_batch(model)
    if mesh is not None:
      procs = jax.process_count()
      if config.batch_size % mesh.size or config.batch_size % procs:
        raise ConfigError(f"batch size {config.batch_size} must be a multiple "
                          f"of the {mesh.size} devices (and {procs} "
                          "processes) it is split over")
      self.sharded_step = make_sharded_train_step(self.train_step, mesh)

  def init_state(self, key) -> TrainState:
    state = create_train_state(self.model, self.optimizer, key)
    if self.mesh is not None:
      state = self._replicate(state)
    return state

  def _replicate(self, tree):
    return mesh_lib.replicate(tree, self.mesh)

  def epoch_batches(self, state: TrainState, epoch: int, num_train: int,
                    active: Optional[np.ndarray] = None):
    """The epoch's batch indices, ``(steps, batch_size)`` int32, from a
    permutation keyed by (run key, epoch): over all ``num_train`` examples
    (``steps_per_epoch`` steps), or over the indices ``active`` only (a
    defence that drops examples; ``len(active) // batch_size`` steps)."""
    bs = self.config.batch_size
    if active is None:
      perm = np.asarray(jax.random.permutation(shuffle_key(state, epoch),
                                               num_train))
      steps = self.steps_per_epoch
    else:
      active = np.asarray(active)
      perm = active[np.asarray(jax.random.permutation(
          shuffle_key(state, epoch), len(active)))]
      steps = len(active) // bs
      if steps == 0:
        raise ConfigError(f"only {len(active)} active training examples, "
                          f"fewer than one batch of {bs}")
    return perm[:steps * bs].reshape(steps, bs).astype(np.int32)

  def train_epoch(self, state, x_u8, y, epoch: int,
                  on_progress: Optional[Callable] = None,
                  active: Optional[np.ndarray] = None):
    """One epoch over ``(x_u8, y)`` (only the rows ``active`` if given);
    returns ``(state, metrics)``."""
    if self.mesh is not None:
      return self._train_epoch_sharded(state, x_u8, y, epoch, on_progress,
                                       active)
    batches = self.epoch_batches(state, epoch, len(x_u8), active)
    x_dev, y_dev = jnp.asarray(x_u8), jnp.asarray(y)
    loss_sum, correct, done = 0.0, 0, 0
    for start in range(0, len(batches), self.config.steps_per_call):
      chunk = batches[start:start + self.config.steps_per_call]
      state, m = self.train_steps(state, x_dev, y_dev, jnp.asarray(chunk))
      done += len(chunk)
      if on_progress is not None:
        # Only here do we wait for the device; the Python float() syncs.
        loss_sum += float(m["loss_sum"])
        correct += int(m["correct"])
        on_progress(epoch, done, len(batches), loss_sum / done)
      else:
        loss_sum = loss_sum + m["loss_sum"]
        correct = correct + m["correct"]
    n_seen = max(done * self.config.batch_size, 1)
    return state, {"train_loss": float(loss_sum) / max(done, 1),
                   "train_accuracy": float(correct) / n_seen}

  def _train_epoch_sharded(self, state, x_u8, y, epoch, on_progress, active):
    """`train_epoch` over the mesh: each step's rows are gathered on the
    host (this process's part of the global batch) and split by rows."""
    procs = jax.process_count()
    if procs > 1 and active is not None:
      raise ConfigError("dropping examples (EPIC) is not supported across "
                        "several processes")
    if procs == 1:
      batches = self.epoch_batches(state, epoch, len(x_u8), active)
    else:  # this process's rows, shuffled by a key of its own
      local = self.config.batch_size // procs
      key = jax.random.fold_in(shuffle_key(state, epoch), jax.process_index())
      perm = np.asarray(jax.random.permutation(key, len(x_u8)))
      steps = self.steps_per_epoch
      if len(perm) < steps * local:
        raise ConfigError(f"this process holds {len(perm)} rows, fewer than "
                          f"the {steps * local} its share of an epoch needs")
      batches = perm[:steps * local].reshape(steps, local)
    rows = NamedSharding(self.mesh, PartitionSpec("data"))
    state = self._replicate(state)
    x_u8, y = np.asarray(x_u8), np.asarray(y)
    loss_sum, correct, done = 0.0, 0, 0
    report_every = self.config.steps_per_call
    for i, idx in enumerate(batches):
      xb = distributed.global_batch(x_u8[idx], rows)
      yb = distributed.global_batch(y[idx], rows)
      state, m = self.sharded_step(state, xb, yb)
      loss_sum = loss_sum + m["loss"]
      correct = correct + m["correct"]
      done = i + 1
      if on_progress is not None and (done % report_every == 0
                                      or done == len(batches)):
        on_progress(epoch, done, len(batches), float(loss_sum) / done)
    n_seen = max(done * self.config.batch_size, 1)
    return state, {"train_loss": float(loss_sum) / max(done, 1),
                   "train_accuracy": float(correct) / n_seen}

  def evaluate(self, state, x_u8, y) -> Dict[str, float]:
    """Mean loss and accuracy in inference mode over ``(x_u8, y)`` (every
    process passes the whole evaluation set; with a mesh each batch is
    split by rows)."""
    n = len(x_u8)
    if n == 0:
      return {"loss": float("nan"), "accuracy": float("nan")}
    bs = self.config.eval_batch_size
    put = lambda a: a
    if self.mesh is not None:
      bs = -(-bs // self.mesh.size) * self.mesh.size
      rows = NamedSharding(self.mesh, PartitionSpec("data"))
      put = lambda a: mesh_lib.put_global(a, rows)
    loss, correct = 0.0, 0
    for start in range(0, n, bs):
      xb, yb = x_u8[start:start + bs], y[start:start + bs]
      mask = np.ones(bs, np.float32)
      if len(xb) < bs:  # pad to one shape so eval compiles once
        pad = bs - len(xb)
        mask[len(xb):] = 0
        xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
        yb = np.concatenate([yb, np.zeros((pad,), yb.dtype)])
      l, c = self.eval_batch(state.params, state.model_state, put(xb),
                             put(yb), put(mask))
      loss += float(l)
      correct += float(c)
    return {"loss": loss / n, "accuracy": correct / n}


# A mean training loss above this (or not finite) is divergence: the
# cross-entropy of a uniform guess over 10 classes is 2.3, and no sane
# epoch of any preset here comes near 1000.
DIVERGED_LOSS = 1e3


class DefenceHook:
  """``fit``'s ``before_epoch`` and ``active_fn`` for a defence written as
  pure functions over a state (HINT, EPIC, FRIENDS: ``init()``,
  ``before_epoch(state, epoch, train_state, x_train) -> (state, x_train,
  seconds)``, optionally ``active_indices(state)``): it carries the state
  from one epoch to the next and keeps the last in ``state``.

  Example:
    >>> hook = DefenceHook(hint.Hint(model, cfg, x, y, x_val, y_val))
    >>> state, history, _ = fit(trainer, state, splits, before_epoch=hook,
    ...                         active_fn=hook.active_indices)
    >>> hook.defence.summary(hook.state)
  """

  def __init__(self, defence, state=None):
    self.defence = defence
    self.state = defence.init() if state is None else state

  def __call__(self, epoch, train_state, x_train):
    self.state, x_train, seconds = self.defence.before_epoch(
        self.state, epoch, train_state, x_train)
    return x_train, seconds

  def active_indices(self):
    """The rows the defence still trains on (None: all)."""
    ask = getattr(self.defence, "active_indices", None)
    return None if ask is None else ask(self.state)


def fit(trainer: Trainer, state: TrainState, data, *, start_epoch: int = 0,
        before_epoch: Optional[Callable] = None,
        on_progress: Optional[Callable] = None,
        on_epoch_end: Optional[Callable] = None,
        active_fn: Optional[Callable] = None):
  """Trains ``state`` from ``start_epoch`` to ``trainer.config.epochs``.

  Args:
    trainer: compiled functions and configuration.
    state: the train state to continue from.
    data: an object with ``x_train, y_train, x_val, y_val, x_test, y_test``
      (uint8 NHWC images, int labels), e.g. ``hint_jax.data.Splits``.
    start_epoch: first epoch to run (to resume from a checkpoint).
    before_epoch: optional ``(epoch, state, x_train) -> (x_train, seconds)``
      run before each epoch; it may return new training images (same shape)
      and reports the seconds it spent (e.g. HINT's noise update).
    on_progress: optional ``(epoch, steps_done, steps_total, mean_loss)``.
    on_epoch_end: optional ``(epoch, state, record, x_train)`` called after
      each epoch with that epoch's metrics record.
    active_fn: optional ``() -> indices`` asked after ``before_epoch``: the
      epoch trains on those rows only (e.g. EPIC's surviving examples); None
      from it means every row.

  The training steps donate their input state's buffers (no copy per step):
  after the call, use the returned state, not the one passed in.

  Raises:
    NumericalError: an epoch's mean training loss is not finite or above
      ``DIVERGED_LOSS``; raised before that epoch's ``on_epoch_end``, so a
      checkpointing hook keeps the last good epoch.

  Returns:
    ``(state, history, x_train)``: the final state, the list of per-epoch
    records and the training images as they were at the end.
  """
  cfg = trainer.config
  x_train = data.x_train
  history: List[dict] = []
  for epoch in range(start_epoch, cfg.epochs):
    hook_seconds = 0.0
    if before_epoch is not None:
      new_x, hook_seconds = before_epoch(epoch, state, x_train)
      if new_x.shape != x_train.shape or new_x.dtype != x_train.dtype:
        raise ValueError("before_epoch must keep the images' shape and dtype")
      x_train = new_x
    t0 = time.perf_counter()
    active = None if active_fn is None else active_fn()
    state, metrics = trainer.train_epoch(state, x_train, data.y_train, epoch,
                                         on_progress, active)
    jax.block_until_ready(state.params)
    train_seconds = time.perf_counter() - t0
    loss = metrics["train_loss"]
    if not (np.isfinite(loss) and loss <= DIVERGED_LOSS):
      raise NumericalError(
          f"training diverged in epoch {epoch + 1} (mean loss {loss:.4g}); "
          "epochs finished before it are kept; lower the learning rate")
    record = {"epoch": epoch + 1, **metrics,
              "train_seconds": train_seconds, "hook_seconds": hook_seconds,
              "step": int(state.step)}
    last = epoch + 1 == cfg.epochs
    if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
      t1 = time.perf_counter()
      for split in ("val", "test"):
        xs, ys = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if len(xs):
          m = trainer.evaluate(state, xs, ys)
          record[f"{split}_loss"] = m["loss"]
          record[f"{split}_accuracy"] = m["accuracy"]
      record["eval_seconds"] = time.perf_counter() - t1
    history.append(record)
    if on_epoch_end is not None:
      on_epoch_end(epoch, state, record, x_train)
  return state, history, x_train
