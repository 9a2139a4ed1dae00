"""DeepConfuse (a generator of error-maximising noise), registered as
``dc``: the authors' published MNIST generator, or a reduced generator
trained here (the only one for other data)."""

import dataclasses
import pathlib
from typing import Optional

import flax.serialization
import jax

from hint_jax import paths
from hint_jax.attacks import deepconfuse_published
from hint_jax.attacks.deepconfuse import (DeepConfuseConfig,
                                          deepconfuse_poison, train_generator)
from hint_jax.errors import ConfigError
from hint_jax.pipeline import files
from hint_jax.pipeline.options import Option, whole_number
from hint_jax.pipeline.poisons.base import AttackKind, register_attack

GENERATORS = ("published", "reduced")
# The generator and the reduced generator's steps by preset key (otherwise
# "reduced" and 1000).
DEFAULT_GENERATOR = {"mnist": "published"}
DEFAULT_STEPS = {"mnist": 500}
GENERATOR_FILE = "dc_generator.msgpack"   # the reduced one, in the work folder


@dataclasses.dataclass(frozen=True)
class DcSpec:
  """DeepConfuse: ``generator`` ("published" or "reduced"; None: the
  dataset's default), the published generator's file ``weights`` (None:
  the one in the data folder), the reduced generator's training ``steps``
  (None: the dataset's default)."""
  generator: Optional[str] = None
  weights: Optional[str] = None
  steps: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class DcConfig:
  """``weights``, ``sha256`` and ``authors_file`` only for the published
  generator (checked when the job is resolved, before any work)."""
  generator: str
  steps: int
  weights: Optional[str] = None
  sha256: Optional[str] = None
  authors_file: Optional[bool] = None


def _resolve(spec: DcSpec, ctx):
  generator = spec.generator or DEFAULT_GENERATOR.get(ctx.preset, "reduced")
  if generator not in GENERATORS:
    raise ConfigError(f"dc_generator must be one of {GENERATORS}, got "
                      f"{generator!r}")
  steps = spec.steps or DEFAULT_STEPS.get(ctx.preset, 1000)
  if generator == "reduced":
    return DcConfig(generator, steps)
  if ctx.dataset != "mnist":
    raise ConfigError(f"the published DeepConfuse generator is the authors' "
                      f"MNIST generator; for {ctx.dataset} use the "
                      "reduced one (dc_generator 'reduced', "
                      "--dc-generator reduced)")
  path = pathlib.Path(spec.weights) if spec.weights else (
      deepconfuse_published.default_path(paths.data_dir(ctx.data_dir)))
  deepconfuse_published.load_generator(path)   # fails early, one line
  sha = deepconfuse_published.file_sha256(path)
  return DcConfig(generator, steps, str(path), sha,
                  sha == deepconfuse_published.PUBLISHED_SHA256)


def _record(cfg: DcConfig) -> dict:
  if cfg.generator == "published":
    return {"generator": "published",
            "weights_file": pathlib.Path(cfg.weights).name,
            "sha256": cfg.sha256, "authors_file": cfg.authors_file,
            "note": "the DeepConfuse authors' trained MNIST generator, eval "
                    "mode: clip(x + eps * g(x), 0, 1) in whole grey levels "
                    "within the budget"}
  d = DeepConfuseConfig(steps=cfg.steps)
  return {"generator": "reduced", "steps": d.steps,
          "batch_size": d.batch_size, "classifier_lr": d.classifier_lr,
          "generator_lr": d.generator_lr, "width": d.width,
          "note": "small conv autoencoder and CNN trained here; steps "
                  "reduced from the original's training to fit a CPU"}


def _prepare(c, rows, meta):
  """The generator's parameters: the published file's, or the reduced
  generator trained on the clean split (kept in the work folder; not
  trained when the attack poisons no rows)."""
  cfg = c.config
  if cfg.generator == "published":
    return deepconfuse_published.load_generator(cfg.weights)
  if not len(rows):
    return None
  gen_file = c.work / GENERATOR_FILE
  if gen_file.exists():
    return flax.serialization.msgpack_restore(gen_file.read_bytes())
  dc_cfg = DeepConfuseConfig(eps=c.eps, steps=cfg.steps)
  c.note(f"dc: training the generator, {cfg.steps} steps")
  generator, _, losses = train_generator(
      c.x_train, c.y_train, c.key, num_classes=c.num_classes, config=dc_cfg,
      on_progress=lambda d, t: c.on_stage("dc generator", d, t))
  meta["final_unrolled_clean_loss"] = float(losses[-10:].mean())
  files.write_bytes_atomic(gen_file, flax.serialization.msgpack_serialize(
      jax.device_get(generator)))
  return generator


def _craft(c, x, y, chunk, report):
  del y, chunk, report
  if c.config.generator == "published":
    return deepconfuse_published.published_poison(c.state, x, eps=c.eps)
  return deepconfuse_poison(c.state, x, config=DeepConfuseConfig(
      eps=c.eps, steps=c.config.steps))


def _reductions(cfg: DcConfig):
  if cfg.generator == "reduced":
    return [f"DeepConfuse: the reduced generator, {cfg.steps} steps of a "
            "small network, far below the original's training"]
  return []


KIND = register_attack(AttackKind(
    name="dc", label="DeepConfuse", spec_type=DcSpec, resolve=_resolve,
    craft=_craft, prepare=_prepare, record=_record, reductions=_reductions,
    options=(
        Option("--dc-generator", "generator", str, None, choices=GENERATORS,
               help="DeepConfuse's generator: 'published' (the authors' "
               "trained MNIST generator, read from --dc-weights; the "
               "default for mnist) or 'reduced' (a small generator trained "
               "here for --dc-steps; the default, and the only choice, for "
               "other datasets)"),
        Option("--dc-weights", "weights", str, None,
               help="the published generator's file (default: <data dir>/"
               f"{deepconfuse_published.DATA_SUBDIR}/"
               f"{deepconfuse_published.FILE_NAME})"),
        Option("--dc-steps", "steps", whole_number(1), None,
               help="steps of the reduced DeepConfuse generator (default "
               "1000; mnist 500; both far below the original's many "
               "epochs)")),
    help="dc (DeepConfuse)"))
