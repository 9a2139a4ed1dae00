"""The training job: load and split the data, apply a poisoned set, train
(with a defence) resumably into a folder, and write ``result.json``,
``metrics.jsonl`` and the defence's files; the transfer scenario of a
targeted poisoned set; the shared cache of clean models.

    from hint_jax import pipeline
    job = pipeline.TrainJob(pipeline.DataSpec("mnist", data_dir="data"),
                            pipeline.TrainSpec(epochs=10),
                            defence=pipeline.HintSpec(),
                            poison="poison.npz")
    result = pipeline.run_train(job, "runs/hint")   # the result.json dict

The folder holds one checkpoint per finished epoch; calling `run_train`
again with the same job resumes after the last one. Nothing here prints:
progress and status lines go to a `Reporter`.
"""

import dataclasses
import hashlib
import json
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import attacks
from hint_jax import data as data_lib
from hint_jax.errors import ConfigError, DataError
from hint_jax.models import get_model, num_params
from hint_jax.parallel.distributed import process_rows
from hint_jax.pipeline import checkpoint, files
from hint_jax.pipeline import defences
from hint_jax.pipeline.defences import (JobDefence, defence_name,
                                        defence_notes, make_defence,
                                        resolve_defence)
from hint_jax.pipeline.specs import DataSpec, TrainJob
from hint_jax.train import DefenceHook, Trainer, fit, transfer
from hint_jax.train.presets import PRESETS, default_model, preset, preset_key

METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"


class Reporter:
  """What a job tells its caller while it runs. Every method does nothing
  here; override the ones you want (the command line draws progress bars
  and prints the notes)."""

  def note(self, text: str) -> None:
    """A status line (what the job is doing or has found)."""

  def steps(self, epoch: int, done: int, total: int, mean_loss) -> None:
    """Training progress within an epoch."""

  def stage(self, name: str, done: int, total: int) -> None:
    """Progress of a long pass outside training (a defence's, an
    attack's)."""

  def pause(self) -> None:
    """Any progress shown so far is finished (a note or a phase follows)."""


def load_splits(data: DataSpec, reporter: Reporter = None):
  """Loads ``data``'s dataset and splits it: ``(dataset, splits)``.
  ``subset`` is a cap: if fewer training images are left after
  validation (a partial copy), all of them are used and the reporter
  hears so.

  Raises:
    DataError: the files differ from the official ones (sha256) and
      ``own_data`` is off; or they are missing or unreadable.
  """
  dataset = data_lib.load_dataset(data.dataset, data.data_dir, data.source)
  if dataset.meta.get("verified") is False and not data.own_data:
    raise DataError(f"the {data.dataset} files of {dataset.source} differ "
                    "from the official ones (sha256); replace them, or "
                    "turn own_data on (--own-data) if they are yours")
  splits = data_lib.split_train_val(dataset, data.num_val, data.split_seed)
  if data.subset is not None:
    if data.subset <= len(splits.x_train):
      splits = data_lib.take_subset(splits, data.subset, data.split_seed)
    elif reporter is not None:
      reporter.note(f"subset {data.subset}: only {len(splits.x_train)} "
                    f"training images in {dataset.source} after validation; "
                    "using all of them")
  return dataset, splits


def target_outcome(model, state, target_x, target: dict) -> dict:
  """The trained model's verdict on a targeted attack's target image: the
  predicted class, the probabilities of the intended and the true class,
  and whether the attack succeeded (predicted == intended)."""
  x = jnp.asarray(target_x, jnp.float32)[None] / 255.0
  logits = model.apply_eval(state.params, state.model_state, x)[0]
  probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float32)))
  predicted = int(np.argmax(probs))
  return {**target, "predicted": predicted,
          "success": predicted == target["intended_class"],
          "intended_probability": float(probs[target["intended_class"]]),
          "true_probability": float(probs[target["true_class"]])}


# ------------------------------------------------------------ clean models
def clean_train_config(dataset, epochs, augment=None,
                       epoch_schedule="absolute", shape_epochs=None):
  """`train_clean`'s training configuration: the preset (``epochs`` if
  given, its milestones per ``epoch_schedule`` and ``shape_epochs``, see
  `hint_jax.train.presets.preset`), no evaluation between epochs. The
  default is "absolute", the schedule of the models crafted before the
  option existed; the jobs pass their own."""
  return dataclasses.replace(
      preset(dataset, epochs=epochs, augment=augment,
             epoch_schedule=epoch_schedule, shape_epochs=shape_epochs),
      eval_every=0)


def clean_model_folder(root, dataset, split_seed, subset, splits, model_name,
                       epochs, seed, augment=None, epoch_schedule="absolute",
                       shape_epochs=None):
  """Where the clean-model cache ``root`` keeps the clean model that
  `train_clean` trains with these arguments, and the data identity to pass
  it as ``settings``: one sub-folder per (data, split, subset, training
  images, model, epochs, seed), named by a digest of them, so a model
  trained on other data or settings is never reused. The poisoning jobs
  and the transfer scenario share it: the extractor a targeted attack was
  crafted on is then trained once, not again by every victim.
  ``augment``: None for the preset's augmentation, else on/off; only an
  explicit ``False`` joins the key (models trained before the option
  existed, all with the preset's, keep their folders); so do learning-rate
  milestones other than the preset's (``epoch_schedule`` "scaled" on a
  short run, see `clean_train_config`)."""
  identity = {"data": dataset, "split_seed": split_seed,
              "num_val": len(splits.x_val), "subset": subset,
              "clean_sha256": hashlib.sha256(np.ascontiguousarray(
                  splits.x_train).tobytes()).hexdigest()}
  cfg = clean_train_config(dataset, epochs, augment, epoch_schedule,
                           shape_epochs)
  key = {**identity, "model": model_name, "epochs": cfg.epochs, "seed": seed}
  if augment is not None and augment != preset(dataset).augment:
    key["augment"] = bool(augment)
  if cfg.optim.lr_milestones != PRESETS[preset_key(dataset)].optim.lr_milestones:
    key["lr_milestones"] = list(cfg.optim.lr_milestones)
  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()
                          ).hexdigest()[:16]
  folder = pathlib.Path(root) / f"victim-{dataset}-{digest}"
  folder.mkdir(parents=True, exist_ok=True)
  return folder, identity


def train_clean(dataset, model_name, splits, epochs, seed, folder,
                reporter: Reporter = None, label="clean model", augment=None,
                epoch_schedule="absolute", shape_epochs=None, **settings):
  """Trains ``model_name`` on ``splits``' (clean) training images with the
  dataset's preset (``epochs`` if given), checkpointing every epoch in
  ``folder`` and resuming from it; a finished checkpoint is just reloaded.
  ``settings`` join the checkpoint's identity. ``augment``: None for the
  preset's augmentation, else on/off (recorded in the identity when it
  differs from the preset's). ``epoch_schedule``, ``shape_epochs``: see
  `clean_train_config` (milestones other than the preset's join the
  identity). ``label`` names the model in the reporter's notes. Returns
  ``(model, state, trainer, test_accuracy)``."""
  reporter = reporter or Reporter()
  cfg = clean_train_config(dataset, epochs, augment, epoch_schedule,
                           shape_epochs)
  model = get_model(model_name, splits.num_classes, splits.x_train.shape[1:])
  trainer = Trainer(model, cfg, len(splits.x_train))
  state = trainer.init_state(jax.random.key(seed))
  settings = {**settings, "model": model_name, "epochs": cfg.epochs,
              "seed": seed}
  if cfg.augment != preset(dataset).augment:
    settings["augment"] = cfg.augment
  if cfg.optim.lr_milestones != PRESETS[preset_key(dataset)].optim.lr_milestones:
    settings["lr_milestones"] = list(cfg.optim.lr_milestones)
  resumed = checkpoint.load(folder, state, settings)
  start = 0
  if resumed is not None:
    state, start = resumed[0], resumed[1]
  if start < cfg.epochs:
    reporter.note(f"{label}: {model_name} on {len(splits.x_train)} clean "
                  f"images, {cfg.epochs} epochs"
                  + (f" (from epoch {start + 1})" if start else ""))
    state, _, _ = fit(trainer, state, splits, start_epoch=start,
                      on_progress=reporter.steps,
                      on_epoch_end=lambda e, st, rec, _x: checkpoint.save(
                          folder, st, e, settings, []))
    reporter.pause()
  acc = trainer.evaluate(state, splits.x_test, splits.y_test)["accuracy"]
  return model, state, trainer, acc


# -------------------------------------------------------------- the job
class _Held:
  """The run folder, created and locked (process 0) once the job's inputs
  have passed their checks; `release` frees the lock, and after a failure
  removes the folder if it was made for this job and holds nothing else
  (`files.TakenFolder`)."""

  def __init__(self):
    self.taken = None

  def take(self, out):
    self.taken = files.take_out(out, lock=files.is_writer())

  def release(self, failed=False):
    if self.taken is not None:
      self.taken.release(failed)
      self.taken = None


def run_train(job: TrainJob, out, *, mesh=None, reporter: Reporter = None):
  """Runs ``job`` into the folder ``out`` and returns the result (also
  written to ``out/result.json``).

  Everything is checked before the folder is created. The folder is
  locked while the job runs (a second job on it is refused); a finished
  epoch is checkpointed, and the same call resumes after it. In a
  multi-host run (``mesh`` over several processes) every process trains on
  its rows and only process 0 writes.

  Args:
    job: what to run.
    out: the run folder.
    mesh: a data mesh (`hint_jax.parallel.make_data_mesh`) to split every
      batch and HINT's passes over; None for one device.
    reporter: hears progress and status lines.

  Raises:
    ConfigError: a setting is invalid, or the folder is in use or holds a
      run with other settings (one line).
    DataError: an input file is missing or corrupt, a file cannot be
      written, or training diverged (one line).
  """
  reporter = reporter or Reporter()
  held = _Held()
  try:
    return _run(job, files.check_out(out), mesh, reporter, held)
  except BaseException:
    held.release(failed=True)
    raise
  finally:
    held.release()


def _poison_record(path, ps):
  return {"file": str(pathlib.Path(path).resolve()), "counts": ps.counts(),
          "attacks": ps.meta["attacks"], "ratio": ps.meta.get("ratio"),
          "target": ps.target}


@dataclasses.dataclass
class _Poisoned:
  """A poisoned set read for a run: the file, the clean images it
  replaces, which rows it poisons and the record written to the result."""
  ps: object
  x_clean: np.ndarray
  x_poisoned: np.ndarray
  mask: np.ndarray
  record: dict


def _read_poison(job, splits, cfg, notes) -> _Poisoned:
  """Reads ``job.poison`` against the clean split (one-line errors);
  adds its notes."""
  ps = attacks.load_poisoned(job.poison)
  x_poisoned = attacks.poisoned_training_images(
      ps, splits.x_train, splits.y_train, where=job.poison)
  mask = np.zeros(len(x_poisoned), bool)
  mask[ps.clean_index[ps.attack_id >= 0]] = True
  attacks.check_target(ps, splits.x_test, splits.y_test, where=job.poison)
  crafted_on = (ps.meta.get("victim") or {}).get("augment")
  if crafted_on is not None and crafted_on != cfg.augment:
    notes.append(
        f"note: {job.poison} was crafted on models trained "
        f"{'with' if crafted_on else 'without'} augmentation; this run "
        f"trains {'with' if cfg.augment else 'without'} it (turn "
        f"augmentation {'off' if cfg.augment else 'on'}, --no-augment, "
        "to match)")
  return _Poisoned(ps, splits.x_train, x_poisoned, mask,
                   _poison_record(job.poison, ps))


def _is_transfer(poisoned) -> bool:
  target = poisoned is not None and poisoned.ps.target
  return bool(target) and target.get("scenario") == "transfer"


def _this_process(splits, poison_mask, notes):
  """In a multi-host run, the rows this process trains on."""
  if jax.process_count() == 1:
    return splits, poison_mask
  mine = process_rows(len(splits.x_train))
  splits = dataclasses.replace(splits, x_train=splits.x_train[mine],
                               y_train=splits.y_train[mine])
  notes.append(f"process {jax.process_index()} of {jax.process_count()}: "
               f"rows {mine.start}..{mine.stop - 1} of the training set")
  return splits, None if poison_mask is None else poison_mask[mine]


@dataclasses.dataclass
class _Inputs:
  """A job's inputs once checked: the training configuration, the
  defence's resolved configuration, the data (poisoned rows applied), the
  poisoned set (or None) and the lines to say once the run starts."""
  cfg: object
  defence_cfg: object
  dataset: object
  splits: object
  poisoned: "_Poisoned | None"
  notes: list


def _read_inputs(job, reporter) -> _Inputs:
  """Checks the settings, then reads the data and the poisoned set."""
  data, tr = job.data, job.train
  name = defence_name(job.defence)
  cfg = tr.config(data.dataset)
  if jax.process_count() > 1 and defences.get(name).whole_training_set:
    raise ConfigError(f"defence {name} runs on one host only (it scores or "
                      "rewrites the whole training set); across hosts use "
                      "no defence or atda")
  # Settings are checked before any data is read.
  defence_cfg = resolve_defence(job.defence, data.dataset, cfg.epochs,
                                tr.epoch_schedule)
  dataset, splits = load_splits(data, reporter)
  # Said once the inputs have passed their checks (a refused run says
  # only its error).
  notes = [f"data: {dataset.source}: {len(splits.x_train)} train / "
           f"{len(splits.x_val)} val / {len(splits.x_test)} test"]
  if cfg.epochs == 0:
    notes.append("note: 0 epochs trains nothing; the result is the "
                 "untrained model's")
  poisoned = (None if job.poison is None
              else _read_poison(job, splits, cfg, notes))
  if poisoned is not None:
    splits = dataclasses.replace(splits, x_train=poisoned.x_poisoned)
  return _Inputs(cfg, defence_cfg, dataset, splits, poisoned, notes)


def _run(job, out, mesh, reporter, held):
  t_start = time.perf_counter()
  inputs = _read_inputs(job, reporter)
  if _is_transfer(inputs.poisoned):
    held.take(out)
    for note in inputs.notes:
      reporter.note(note)
    return _run_transfer(job, out, t_start, inputs, reporter)
  return _run_plain(job, out, mesh, reporter, held, t_start, inputs)


def _run_plain(job, out, mesh, reporter, held, t_start, inputs: _Inputs):
  """Trains the whole network (with the defence's hooks) on the training
  set, resuming from the folder's checkpoint."""
  data, tr = job.data, job.train
  cfg, splits, poisoned, notes = (inputs.cfg, inputs.splits, inputs.poisoned,
                                  inputs.notes)
  if poisoned is not None:
    notes.append(f"poisoned training set: {poisoned.record['counts']}")
  if job.victim_dir is not None:
    raise ConfigError("victim_dir applies to transfer-scenario poisoned "
                      "sets (targeted bp or fc) only")
  # The model is checked against the data before the run folder is taken.
  model_name = tr.model or default_model(data.dataset,
                                         splits.x_train.shape[1:])
  model = get_model(model_name, splits.num_classes, splits.x_train.shape[1:])
  held.take(out)
  num_train = len(splits.x_train)  # all processes together
  splits, poison_mask = _this_process(
      splits, None if poisoned is None else poisoned.mask, notes)
  defence = make_defence(inputs.defence_cfg, model, splits,
                         epochs=cfg.epochs, x_clean=None if poisoned is None
                         else poisoned.x_clean, mesh=mesh,
                         on_stage=reporter.stage)
  cfg = defence.train_config(cfg)
  trainer = Trainer(model, cfg, num_train, adversary=defence.adversary(model),
                    mesh=mesh)
  state = trainer.init_state(jax.random.key(tr.seed))
  settings = {"dataset": data.dataset, "source": inputs.dataset.source,
              "model": model_name, "seed": tr.seed,
              "split_seed": data.split_seed, "subset": data.subset,
              "num_val": len(splits.x_val), "defence": defence.name,
              "poison": None if poisoned is None else poisoned.record,
              "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
  if defence.config is not None:
    settings[defence.name] = defence.settings()
  run = _Training(job, out, cfg, trainer, defence, settings, reporter)
  state, splits = run.resume(state, splits, notes)
  state = run.fit(state, splits)
  result = _plain_result(run, state, splits, inputs.dataset, num_train,
                         t_start, mesh)
  if poisoned is not None and poisoned.ps.target_x is not None:
    result["target"] = target_outcome(model, state, poisoned.ps.target_x,
                                      poisoned.record["target"])
    _say_target(result["target"], reporter)
  result.update(defence.record(run.defence_state, poison_mask))
  if run.writer:
    files.write_output(out, lambda p: defence.write_files(
        run.defence_state, p, splits.train_idx),
                       "the same job")
    _write_result(out, result)
  return result


def _say_target(t, reporter):
  reporter.note(f"target test image {t['index']}: predicted "
                f"{t['predicted']}, intended {t['intended_class']} -> "
                f"attack {'succeeded' if t['success'] else 'failed'}")


def _write_result(out, result):
  files.write_output(out / RESULT_FILE, lambda p: files.write_json_atomic(
      p, result), "the same job")


def _environment(t_start) -> dict:
  """The result's entries on where and how long it ran (both scenarios)."""
  return {"total_seconds": time.perf_counter() - t_start,
          "backend": jax.default_backend(), "jax_version": jax.__version__}


class _Training:
  """One plain run's training: resuming from its checkpoint, the epochs
  with the defence's hooks, each finished epoch written to the metrics
  file and checkpointed with the defence's state (``defence_state``, the
  last one the defence returned)."""

  def __init__(self, job, out, cfg, trainer, defence, settings, reporter):
    self.job, self.out, self.cfg = job, out, cfg
    self.trainer, self.defence = trainer, defence
    self.settings, self.reporter = settings, reporter
    self.writer = files.is_writer()
    self.metrics = out / METRICS_FILE
    self.start_epoch, self.history = 0, []
    self.defence_state = defence.init()

  def resume(self, state, splits, notes):
    """Reads the folder's checkpoint (``job.overwrite``: clears it first);
    says the notes. Returns the state and splits to train from."""
    job, out, reporter = self.job, self.out, self.reporter
    if job.overwrite and self.writer:
      checkpoint.clear(out)
      self.metrics.unlink(missing_ok=True)
    resumed = checkpoint.load(out, state, self.settings)
    for note in notes:
      reporter.note(note)
    for note in defence_notes(job.defence, job.data.dataset,
                              self.cfg.epochs, job.train.epoch_schedule):
      reporter.note(note)
    if resumed is None:
      if self.writer and self.metrics.exists():
        self.metrics.unlink()
      return state, splits
    state, self.start_epoch, self.history, defence_state = resumed
    self.defence_state = self.defence.check(defence_state)
    splits = dataclasses.replace(splits, x_train=self.defence.images(
        self.defence_state, splits.x_train))
    reporter.note(f"resuming {out} after epoch {self.start_epoch}")
    # The metrics file is rebuilt from the checkpoint's history, so an
    # epoch written there after the last checkpoint is not repeated.
    if self.writer:
      files.write_output(self.metrics, lambda p: files.write_bytes_atomic(
          p, "".join(json.dumps(r) + "\n" for r in self.history).encode()),
                         "the same job")
    return state, splits

  def before_epoch(self, epoch, st, x_train):
    line = self.defence.starting(epoch)
    if line:
      self.reporter.pause()
      self.reporter.note(line)
    self.defence_state, x_new, seconds = self.defence.before_epoch(
        self.defence_state, epoch, st, x_train)
    line = self.defence.note(self.defence_state, epoch) if seconds else None
    if line:
      self.reporter.pause()
      self.reporter.note(line)
    return x_new, seconds

  def on_epoch_end(self, epoch, st, record, _x):
    self.history.append(record)
    if self.writer:
      def append(p):
        with open(p, "a") as f:
          f.write(json.dumps(record) + "\n")
      files.write_output(self.metrics, append,
                         "the same job to resume from the last checkpoint")
      checkpoint.save(self.out, st, epoch, self.settings, self.history,
                      self.defence_state)
    self.reporter.pause()
    acc = record.get("test_accuracy")
    self.reporter.note(f"epoch {epoch + 1}/{self.cfg.epochs}: loss "
                       f"{record['train_loss']:.4f}"
                       + (f", test accuracy {acc:.4f}" if acc is not None
                          else "")
                       + f" ({record['train_seconds']:.1f} s)")

  def fit(self, state, splits):
    try:
      state, _, _ = fit(self.trainer, state, splits,
                        start_epoch=self.start_epoch,
                        before_epoch=self.before_epoch,
                        on_progress=self.reporter.steps,
                        on_epoch_end=self.on_epoch_end,
                        active_fn=lambda: self.defence.active_indices(
                            self.defence_state))
    finally:
      self.reporter.pause()
    return state


def _plain_result(run, state, splits, dataset, num_train, t_start, mesh):
  """The result record of a plain run (without its target and defence
  parts)."""
  history, cfg, settings = run.history, run.cfg, run.settings
  final = (run.trainer.evaluate(state, splits.x_test, splits.y_test)
           if not history or "test_accuracy" not in history[-1] else
           {"accuracy": history[-1]["test_accuracy"],
            "loss": history[-1]["test_loss"]})
  return {
      **{k: v for k, v in settings.items()
         if k != "config" and k not in defences.names()},
      "data_verified": dataset.meta.get("verified"),
      "epochs": cfg.epochs, "batch_size": cfg.batch_size,
      "lr": cfg.optim.lr, "epoch_schedule": run.job.train.epoch_schedule,
      "lr_milestones": list(cfg.optim.lr_milestones),
      "num_train": num_train,
      "num_params": num_params(state.params),
      "test_accuracy": final["accuracy"], "test_loss": final["loss"],
      "val_accuracy": history[-1].get("val_accuracy") if history else None,
      "train_seconds": sum(r["train_seconds"] for r in history),
      "defence_seconds": sum(r.get("hook_seconds", 0.0) for r in history),
      **_environment(t_start),
      "machine": platform.machine(), "config": settings["config"],
      "devices": 1 if mesh is None else mesh.size,
      "processes": jax.process_count(),
  }


def _run_transfer(job, out, t_start, inputs: _Inputs, reporter):
  """The transfer scenario of a targeted poisoned set: pre-train on the
  clean 90% with the crafting run's own model, seed and epochs (so the
  victim's feature extractor is the one the attack saw: white-box, as in
  the paper's setting; training is deterministic, and the extractor's test
  accuracy is recorded next to the crafting run's as a check), then
  re-initialise theta_top from the job's seed and train it alone on the
  poisoned 10%.

  Every defence acts on the fine-tuning set and theta_top, the only layer
  trained here (`TopLayerConfig`'s epochs are the run's epochs):
  - hint: healthy noise written into the fine-tuning images before the
    scheduled epochs (influence on theta_top, as always);
  - friends: friendly noise computed once before its begin epoch with the
    network of that epoch, plus fresh Bernoulli noise every epoch (the
    features are then recomputed every epoch);
  - epic: the scheduled selections on the fine-tuning set; dropped
    examples are left out of the following epochs;
  - atda: every step trains on adversarial examples of its batch, crafted
    through the frozen body and the current theta_top (the paper uses eps
    0.062 against targeted attacks).
  """
  data, tr = job.data, job.train
  splits, ps = inputs.splits, inputs.poisoned.ps
  top_cfg = transfer.TopLayerConfig()
  # Settings are checked before the extractor is trained.
  defence_cfg = resolve_defence(job.defence, data.dataset, top_cfg.epochs,
                                tr.epoch_schedule)
  for note in defence_notes(job.defence, data.dataset, top_cfg.epochs,
                            tr.epoch_schedule):
    reporter.note(note)
  pre, fine, poisoned_rows = _transfer_rows(job, splits, ps)
  model, state, trainer, extractor = _pretrained_extractor(
      job, out, splits, ps, pre, reporter)
  params = transfer.reinit_top_layer(model, state.params,
                                     jax.random.key(tr.seed))
  x_fine, y_fine = inputs.poisoned.x_poisoned[fine], splits.y_train[fine]
  fine_splits = dataclasses.replace(splits, x_train=x_fine, y_train=y_fine)
  defence = make_defence(defence_cfg, model, fine_splits,
                         epochs=top_cfg.epochs,
                         x_clean=inputs.poisoned.x_clean[fine])
  hook = DefenceHook(defence)   # carries the defence's state
  t_top = time.perf_counter()
  params = transfer.train_top_layer(
      model, params, state.model_state, x_fine, y_fine,
      jax.random.fold_in(jax.random.key(tr.seed), 1), config=top_cfg,
      before_epoch=defence.transfer_hook(hook, state, tr.seed),
      rows=hook.active_indices, adversary=defence.adversary(model))
  top_seconds = time.perf_counter() - t_top
  state = state.replace(params=params)
  final = trainer.evaluate(state, splits.x_test, splits.y_test)
  result = {
      "dataset": data.dataset, "source": inputs.dataset.source,
      "model": extractor.pop("model"), "seed": tr.seed,
      "defence": defence.name, "poison": inputs.poisoned.record,
      "scenario": "transfer", "num_pretrain": len(pre),
      "num_finetune": len(fine), **extractor,
      "top_layer": dataclasses.asdict(top_cfg),
      "test_accuracy": final["accuracy"], "test_loss": final["loss"],
      "top_layer_seconds": top_seconds, **_environment(t_start),
      "target": target_outcome(model, state, ps.target_x, ps.target),
  }
  _say_target(result["target"], reporter)
  result.update(defence.record(hook.state, np.isin(fine, poisoned_rows),
                               transfer=True))
  if files.is_writer():
    _write_result(out, result)
  return result


def _transfer_rows(job, splits, ps):
  """``(pre-training rows, fine-tuning rows, poisoned rows)`` of the
  file's transfer split, the poisons checked to lie in the fine-tuning
  part."""
  target = ps.target
  pre, fine = transfer.transfer_split(
      len(splits.x_train), jax.random.key(target["transfer_split_seed"]),
      target["pretrain_fraction"])
  poisoned_rows = ps.clean_index[ps.attack_id >= 0]
  if np.any(np.isin(poisoned_rows, pre)):
    raise DataError(f"{job.poison}: poisons lie in the pre-training part "
                    "of its transfer split; the file is not a transfer-"
                    "scenario set")
  return pre, fine, poisoned_rows


def _pretrained_extractor(job, out, splits, ps, pre, reporter):
  """The crafting run's extractor, pre-trained (or reloaded from the run
  folder or the victim cache) on the clean rows ``pre``: ``(model, state,
  trainer, entries)``, the entries the result records of it (the model's
  name, its test accuracy beside the crafting run's, and its own verdict
  on the target)."""
  data, tr = job.data, job.train
  victim = ps.meta.get("victim") or {}
  model_name = (victim.get("model") or tr.model
                or default_model(data.dataset, splits.x_train.shape[1:]))
  pre_splits = dataclasses.replace(splits, x_train=splits.x_train[pre],
                                   y_train=splits.y_train[pre])
  folder, identity = out, {"scenario": "transfer",
                           "poison": str(job.poison)}
  # Files crafted before the option existed record none: "absolute".
  schedule = {"epoch_schedule": victim.get("epoch_schedule", "absolute")}
  if job.victim_dir is not None:
    folder, identity = clean_model_folder(
        job.victim_dir, data.dataset, data.split_seed, data.subset,
        pre_splits, model_name, victim.get("epochs"), victim.get("seed", 0),
        victim.get("augment"), **schedule)
  model, state, trainer, pre_acc = train_clean(
      data.dataset, model_name, pre_splits, victim.get("epochs"),
      victim.get("seed", 0), folder, reporter,
      "transfer: pre-training (the crafting run's extractor)",
      augment=victim.get("augment"), **schedule, **identity)
  # The pre-trained network's own verdict (its pre-training top layer):
  # the clean reference for the target, as the crafting run saw it.
  verdict = target_outcome(model, state, ps.target_x, ps.target)
  return model, state, trainer, {
      "model": model_name, "pretrain_test_accuracy": pre_acc,
      "crafting_extractor_test_accuracy": victim.get("test_accuracy"),
      "pretrain_target": {k: verdict[k] for k in (
          "predicted", "intended_probability", "true_probability")}}


__all__ = ["JobDefence", "Reporter", "clean_model_folder",
           "clean_train_config", "load_splits", "run_train",
           "target_outcome", "train_clean"]
