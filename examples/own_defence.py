"""Add your own defence, in one file outside the package: bit-depth
reduction of the training images, registered with hint_jax and run from
Python and from the command line.

    python examples/own_defence.py
    hint-jax --plugin examples/own_defence.py train --dataset digits \
        --defence squeeze --squeeze-bits 3 --epochs 2 --out runs/squeeze

The first trains a small ConvNet on the embedded 8x8 digits twice (2
epochs each, under a minute), once through `hint_jax.pipeline.run_train`
and once through ``hint-jax train``, and prints one line for each. This
file shows the plug-in interface; it makes no claim that squeezing a
training set defends against poisoning.

A defence is three things: a frozen dataclass (its spec, what a job
asks for), a `JobDefence` (what it does during training, as functions of
a state the job keeps and checkpoints: here the ``before_epoch`` hook
rewrites the images and ``images`` redoes it when a run resumes from a
checkpoint; squeezing needs no state, so the base class's empty one
serves), and a `DefenceKind` given to
`register_defence` (its name, how a spec becomes a checked configuration
for a run, how the `JobDefence` is built, its command-line options).
"""

import dataclasses
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from hint_jax import pipeline
from hint_jax.errors import ConfigError
from hint_jax.pipeline.options import Option, whole_number


@dataclasses.dataclass(frozen=True)
class SqueezeSpec:
  """Keep ``bits`` bits of every 8-bit pixel of the training images."""
  bits: int = 4


def squeeze(images: np.ndarray, bits: int) -> np.ndarray:
  """uint8 images rounded to 2**bits evenly spaced grey levels (applying
  it twice changes nothing)."""
  top = 2 ** bits - 1
  levels = np.rint(images.astype(np.float32) / 255.0 * top)
  return np.rint(levels * (255.0 / top)).astype(np.uint8)


class SqueezeDefence(pipeline.JobDefence):
  name = "squeeze"

  def before_epoch(self, state, epoch, train_state, x_train):
    return state, squeeze(np.asarray(x_train), self.config.bits), 0.0

  def images(self, state, x_train):
    return squeeze(np.asarray(x_train), self.config.bits)


def _resolve(spec, dataset, epochs, epoch_schedule):
  del dataset, epochs, epoch_schedule   # the same for every run
  if not 1 <= spec.bits <= 8:
    raise ConfigError(f"squeeze keeps 1 to 8 bits, got {spec.bits}")
  return spec


pipeline.register_defence(pipeline.DefenceKind(
    name="squeeze", label="bit-depth squeezing", spec_type=SqueezeSpec,
    resolve=_resolve,
    build=lambda config, model, splits, **_: SqueezeDefence(config),
    options=(Option("--squeeze-bits", "bits", whole_number(1), 4,
                    help="bits kept per pixel (1-8)"),),
    help="squeeze (--defence squeeze; examples/own_defence.py)"))


def main():
  with tempfile.TemporaryDirectory() as tmp:
    job = pipeline.TrainJob(
        data=pipeline.DataSpec("digits"), train=pipeline.TrainSpec(epochs=2),
        defence=SqueezeSpec(bits=3))
    result = pipeline.run_train(job, pathlib.Path(tmp) / "python")
    print(f"from Python: defence {result['defence']} "
          f"{result['squeeze']}, test accuracy "
          f"{100 * result['test_accuracy']:.2f}%")
    cli = subprocess.run(
        [sys.executable, "-m", "hint_jax.cli.main", "--plugin", __file__,
         "train", "--dataset", "digits", "--defence", "squeeze",
         "--squeeze-bits", "3", "--epochs", "2", "--no-progress",
         "--out", str(pathlib.Path(tmp) / "cli")],
        capture_output=True, text=True, check=False)
    if cli.returncode:
      sys.exit(cli.stderr)
    print(f"from the command line: {cli.stdout.strip().splitlines()[-1]}")


if __name__ == "__main__":
  main()
