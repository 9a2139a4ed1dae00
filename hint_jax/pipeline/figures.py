"""Figures of finished runs: the paper's Fig. 1 for a HINT run.

For a few noised training examples of a finished training run with HINT:
the received image, the healthy noise and the noised image, with the
model's prediction and probability on each image. The model is the run's
final one (its last checkpoint), so the figure shows how the trained model
sees the received and the noised copies; the paper does not say which
model its figure uses.
"""

import pathlib

import numpy as np

from hint_jax import xla_options
from hint_jax.errors import ConfigError, DataError
from hint_jax.pipeline import checkpoint, files
from hint_jax.pipeline.defences import NOISE_FILE

PICKS = ("changed", "top", "random")


def load_run(run_dir):
  """Returns ``(settings, params, model_state, noise)`` of a HINT run."""
  run_dir = pathlib.Path(run_dir)
  noise_path = run_dir / NOISE_FILE
  for path in (run_dir / checkpoint.META_FILE, run_dir / checkpoint.STATE_FILE,
               noise_path):
    if not path.exists():
      raise DataError(f"{path} is missing: the run must be the output "
                      f"folder of a finished training run with HINT")
  settings, params, model_state = checkpoint.read_final(run_dir)
  with np.load(noise_path) as f:
    noise = {k: f[k] for k in f.files}
  if len(noise["selected"]) == 0:
    raise DataError(f"{noise_path} holds no noised examples (the run had no "
                    f"scheduled update)")
  return settings, params, model_state, noise


def predict(model, params, model_state, x_u8, batch_size=250):
  """Softmax probabilities of uint8 images in inference mode."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  @xla_options.jit
  def probs(xb):
    logits = model.apply_eval(params, model_state,
                              xb.astype(jnp.float32) / 255.0)
    return jax.nn.softmax(logits, axis=-1)

  out = [np.asarray(probs(jnp.asarray(x_u8[i:i + batch_size])))
         for i in range(0, len(x_u8), batch_size)]
  return np.concatenate(out)


def pick_examples(p_orig, p_noised, y, scores_sel, num, how, seed=0):
  """Row indices (into the selected examples) to show.

  Args:
    p_orig, p_noised: (k, K) probabilities on the received / noised images.
    y: (k,) labels.
    scores_sel: (k,) I_up of the selected examples, or None (r = 1).
    num: how many.
    how: "changed" (the examples whose true-class probability the noise
      raised most, wrong-to-right first), "top" (largest |I_up|) or
      "random".
    seed: for "random".
  """
  k = len(y)
  num = min(num, k)
  if how == "random":
    return np.sort(np.random.default_rng(seed).choice(k, num, replace=False))
  if how == "top":
    if scores_sel is None:
      raise ConfigError("picking the top |I_up| needs the I_up scores, which "
                        "a run with r = 1 does not compute; pick 'changed'")
    return np.argsort(-np.abs(scores_sel), kind="stable")[:num]
  if how != "changed":
    raise ConfigError(f"pick must be one of {PICKS}, got {how!r}")
  rows = np.arange(k)
  gain = p_noised[rows, y] - p_orig[rows, y]
  fixed = (p_orig.argmax(1) != y) & (p_noised.argmax(1) == y)
  # Wrong-to-right first, then by the gain in the true class's probability.
  order = np.lexsort((-gain, ~fixed))
  return order[:num]


def noise_figure(run_dir, out=None, *, num=4, pick="changed", seed=0):
  """Draws the figure for the HINT run in ``run_dir`` into the PNG ``out``
  (default: ``run_dir/fig_noise.png``); returns ``(path, rows)``, the rows
  being the noised examples shown (see `pick_examples`)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top

  out = files.check_figure(
      out if out else pathlib.Path(run_dir) / "fig_noise.png")
  settings, params, model_state, noise = load_run(run_dir)
  x_orig, x_noised = noise["x_orig"], noise["x_noised"]
  delta, y = noise["delta"], noise["y"]
  num_classes = int(np.asarray(params["head"]["bias"]).shape[0])
  model = get_model(settings["model"], num_classes, x_orig.shape[1:])
  p_orig = predict(model, params, model_state, x_orig)
  p_noised = predict(model, params, model_state, x_noised)
  scores = noise["scores"]
  scores_sel = scores[noise["selected"]] if len(scores) else None
  rows = pick_examples(p_orig, p_noised, y, scores_sel, num, pick, seed)
  beta = float(noise["beta"]) or 1.0
  gray = x_orig.shape[-1] == 1

  fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.3 * len(rows)),
                           squeeze=False)
  for r, i in enumerate(rows):
    panels = [
        (x_orig[i], f"Actual: {y[i]}\nPred: {p_orig[i].argmax()}, "
         f"Prob: {p_orig[i].max():.2f}"),
        (None, f"noise (±{255 * beta:.0f}/255)"),
        (x_noised[i], f"Pred: {p_noised[i].argmax()}, "
         f"Prob: {p_noised[i].max():.2f}"),
    ]
    for c, (img, title) in enumerate(panels):
      ax = axes[r, c]
      if img is None:  # the noise subtracted from the image, -delta
        shown = -delta[i]
        if gray:
          ax.imshow(shown[..., 0], cmap="seismic", vmin=-beta, vmax=beta)
        else:
          ax.imshow(np.clip(0.5 + shown / (2 * beta), 0, 1))
      elif gray:
        ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
      else:
        ax.imshow(img)
      if r == 0:
        title = f"[{('received', 'healthy noise', 'noised')[c]}]\n{title}"
      ax.set_title(title, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.suptitle(f"HINT healthy noise: {settings['dataset']}, "
               f"{settings['model']} (final model)", fontsize=9)
  fig.tight_layout()
  files.make_out(out.parent)
  files.write_output(out, lambda p: fig.savefig(p, dpi=120),
                     "the same command")
  plt.close(fig)
  return out, rows
