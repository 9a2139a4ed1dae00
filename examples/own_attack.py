"""Add your own attack, in one file outside the package: FGSM (one signed
gradient step of the whole budget on the clean victim's loss), registered
with hint_jax and crafted from Python and from the command line.

    python examples/own_attack.py
    hint-jax --plugin examples/own_attack.py poison --dataset digits \
        --attacks fgsm,durp --fgsm-fraction 0.5 --victim-epochs 2 \
        --out runs/fgsm.npz

The first crafts a poisoned copy of the embedded 8x8 digits twice (FGSM
mixed with DURP in equal shares; a victim of 2 epochs, well under a
minute), once through `hint_jax.pipeline.run_poison` and once through
``hint-jax poison``, checks that both files hold the same images, and
prints one line for each. This file shows the plug-in interface; it makes
no claim about FGSM as a poisoning attack.

An untargeted attack is two things: a frozen dataclass (its settings, what
a job asks for; ``None`` fields may take a dataset's default in
``resolve``) and an `AttackKind` given to `register_attack` (its name, how
the settings are checked, how one chunk of images is crafted, whether it
needs the clean victim, its command-line options). The job assigns it
its share of the training rows, trains the victim once for every attack
that needs it, saves each crafted chunk so an interrupted job resumes,
and writes the poisoned-dataset file.
"""

import dataclasses
import pathlib
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import attacks, pipeline
from hint_jax.errors import ConfigError
from hint_jax.pipeline.options import Option, number


@dataclasses.dataclass(frozen=True)
class FgsmSpec:
  """One step of ``fraction`` of the budget along the sign of the input
  gradient of the victim's cross-entropy (error-maximising)."""
  fraction: float = 1.0


def _resolve(spec, ctx):
  del ctx   # the same for every dataset
  if not 0.0 < spec.fraction <= 1.0:
    raise ConfigError(f"fgsm fraction must be in (0, 1], got "
                      f"{spec.fraction}")
  return spec


def _craft(c, x_u8, y, chunk, report):
  """The chunk's poisoned uint8 images: ``c.logits_fn`` is the clean
  victim (float images in [0, 1] -> logits), ``c.eps`` the budget."""
  del chunk   # deterministic: no key needed
  x = jnp.asarray(x_u8, jnp.float32) / 255.0

  def loss(x):
    return optax.softmax_cross_entropy_with_integer_labels(
        c.logits_fn(x), jnp.asarray(y)).sum()

  step = c.config.fraction * c.eps * jnp.sign(jax.grad(loss)(x))
  report(len(x_u8), len(x_u8))
  # Whole grey levels within the budget, as every attack's images are.
  return np.asarray(attacks.quantize_within_budget(x_u8, x + step, c.eps))


pipeline.register_attack(pipeline.AttackKind(
    name="fgsm", label="FGSM", spec_type=FgsmSpec, resolve=_resolve,
    craft=_craft, uses_victim=True,
    record=lambda cfg: {"fraction": cfg.fraction, "steps": 1},
    options=(Option("--fgsm-fraction", "fraction", number, 1.0,
                    help="the step as a fraction of the budget (0-1]"),),
    help="fgsm (examples/own_attack.py)"))


def main():
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    spec = pipeline.PoisonSpec(
        attacks=(FgsmSpec(fraction=0.5), "durp"), ratio=1.0,
        victim=pipeline.VictimSpec(epochs=2))
    ps = pipeline.run_poison(pipeline.DataSpec("digits"), spec,
                             tmp / "python.npz")
    moved = np.abs(ps.x.astype(int) - np.asarray(
        pipeline.load_splits(pipeline.DataSpec("digits"))[1].x_train,
        int)).max()
    print(f"from Python: {ps.counts()}, largest change {moved} grey levels")
    cli = subprocess.run(
        [sys.executable, "-m", "hint_jax.cli.main", "--plugin", __file__,
         "poison", "--dataset", "digits", "--attacks", "fgsm,durp",
         "--fgsm-fraction", "0.5", "--victim-epochs", "2", "--no-progress",
         "--out", str(tmp / "cli.npz")],
        capture_output=True, text=True, check=False)
    if cli.returncode:
      sys.exit(cli.stderr)
    same = np.array_equal(attacks.load_poisoned(tmp / "cli.npz").x, ps.x)
    print(f"from the command line: {cli.stdout.strip().splitlines()[-1]}; "
          f"same images as from Python: {same}")


if __name__ == "__main__":
  main()
