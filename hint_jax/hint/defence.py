"""HINT (Algorithms 1-3) as pure functions over a state.

``Hint`` holds what does not change during a run (the model, the
configuration, the received and validation images); what does is its
*state*, a dict that ``init`` returns and ``before_epoch`` / ``update``
take and return (the optax shape), so a checkpoint keeps it like any other
data (`hint_jax.pipeline.checkpoint.save`'s ``defence_state``):

* ``"hint_selected"``: the rows HINT noises (int32, sorted), None before
  the first update;
* ``"hint_delta"``: their accumulated noise (float32, [0, 1] units), None
  before the first update;
* ``"hint_scores"``: every training example's I_up (float32), None before
  the first update and when r = 1 (no scoring);
* ``"hint"``: one JSON-ready `HintUpdate` record per update so far.

``hint_jax.train.DefenceHook(hint)`` carries the state between the epochs
of ``hint_jax.train.fit``. At every scheduled epoch HINT

1. computes s_test = (H + lambda I)^-1 grad_theta_top L(D_val) over
   precomputed penultimate features (closed-form top-layer Hessian; CG by
   default, the fixed point of the authors' LiSSA; LiSSA as an option),
2. at the first update only, scores every training example by
   I_up = -<grad_theta_top l(z), s_test> (closed form) and keeps the
   ceil(r n) largest |I_up| for good (r = 1: everything, no scoring),
3. computes I_pert = -grad_x <grad_theta_top l(x_cur, y), s_test> for all
   selected examples at their current noised images, as one batched reverse
   pass through the network per chunk, and
4. updates delta = clip(delta + gamma I_pert, +-beta) and writes
   clip(x_orig - delta, 0, 1) into the training images as uint8.

Every pass runs the network in inference mode, so examples are independent.
The work is timed by phase (`HintUpdate`); nothing is printed.
"""

import dataclasses
import math
import os
import pathlib
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.hint.passes import passes_for
from hint_jax.errors import ConfigError, DataError
from hint_jax.hint.config import HintConfig, num_selected
from hint_jax.hint.noise import (noise_write, noised_images, random_like_norm,
                                 random_signs, select_top, with_signs_of)
from hint_jax.models import TOP_LAYER

_noised_jit = xla_options.jit(noised_images, static_argnames=("rounding",))

# Examples per call between two progress reports (a multiple of chunk_size).
_REPORT_EVERY = 10
# fold_in streams of the controls' draws (apart from LiSSA's per-epoch key).
_SELECTION_STREAM = 1_000_001
_DIRECTION_STREAM = 1_000_002
_RANDOM_STEST_STREAM = 1_000_003


@xla_options.jit
def _loss_input_grad(logits_fn, x, y):
  """grad_x of each example's cross-entropy in inference mode (examples are
  independent there, so the gradient of the sum is per example)."""
  def total(xx):
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(
        logits_fn(xx), y))
  return jax.grad(total)(x)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
  """cos(a, b) over all entries; nan if either is zero."""
  a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


@dataclasses.dataclass
class HintUpdate:
  """What one scheduled update did and how long each phase took (seconds).

  ``selection_seconds`` is the first update's scoring work (features of the
  whole training set, s_test, I_up, top-k) and 0 afterwards;
  ``s_test_seconds`` is the s_test work of the later updates (features of
  the Hessian's images, the solve) and 0 at the first, so that
  ``selection + s_test + pert + write`` is the update's total.

  Diagnostics: ``solver_iterations`` / ``solver_residual`` of the s_test
  solve (CG's relative residual; LiSSA reports its own), ``s_test_norm``,
  ``pert_abs_mean`` (mean |I_pert| over the selected pixels),
  ``delta_abs_mean`` and ``at_bound_fraction`` (of the accumulated noise,
  [0, 1] units), ``pixels_changed_fraction`` (selected pixels whose stored
  grey level differs from the received one).

  With the clean images known (``Hint(x_clean=...)``), for the selected
  poisons (rows whose received image differs from its clean one):
  ``poisons_selected``, and how far the noise so far moved them back toward
  their clean images, the cosine of ``x_noised - x_poisoned`` with
  ``x_clean - x_poisoned`` over all their pixels together:
  ``restore_cosine`` with the images as stored (uint8),
  ``restore_cosine_float`` with the float noise ``-delta``. 1 is straight
  back, 0 unrelated, -1 further away.

  ``step_cosine``: the cosine of the step this update took with HINT's own
  step gamma * I_pert over all selected pixels (1 for HINT; for a
  ``direction`` control, how far its direction is from HINT's).
  """
  epoch: int
  step_size: float
  num_selected: int
  selection_seconds: float = 0.0
  s_test_seconds: float = 0.0
  pert_seconds: float = 0.0
  write_seconds: float = 0.0
  solver_iterations: int = 0
  solver_residual: float = float("nan")
  s_test_norm: float = float("nan")
  pert_abs_mean: float = float("nan")
  delta_abs_mean: float = float("nan")
  at_bound_fraction: float = float("nan")
  pixels_changed_fraction: float = float("nan")
  poisons_selected: int = 0
  restore_cosine: float = float("nan")
  restore_cosine_float: float = float("nan")
  step_cosine: float = float("nan")

  @property
  def seconds(self) -> float:
    return (self.selection_seconds + self.s_test_seconds + self.pert_seconds
            + self.write_seconds)


def _features_in_blocks(passes, model, params, model_state, x_u8, chunk,
                        report):
  """phi of uint8 images in blocks of ``_REPORT_EVERY`` chunks, reporting
  progress between blocks."""
  n, block = len(x_u8), chunk * _REPORT_EVERY
  out = []
  for start in range(0, n, block):
    out.append(passes.features(model, params, model_state,
                               x_u8[start:start + block], chunk))
    report(min(start + block, n), n)
  return jnp.concatenate(out) if out else jnp.zeros((0,))


class Hint:
  """The HINT defence for one training run.

  Args:
    model: a ``hint_jax.models.Model`` whose top layer is ``head``.
    config: a `HintConfig` (validated here against ``epochs`` if given).
    x_orig: the training images as received (uint8 NHWC); delta is bounded
      relative to these.
    y_train: their labels.
    x_val, y_val: the clean validation set (uint8 images, labels).
    epochs: the run's epoch count, to check the schedule against.
    on_progress: optional ``(stage, done, total)`` callback, with stage
      "features", "validation" or "perturbation"; for progress bars.
    x_clean: optional clean counterparts of ``x_orig`` (same shape; equal
      rows where the example is not poisoned): the updates then record how
      the noise moves the poisons relative to their clean images.
    mesh: optional data-parallel mesh (``hint_jax.parallel
      .make_data_mesh``): the feature, s_test (validation gradient and every
      Hessian product), I_up and I_pert passes split their rows across its
      devices (``hint_jax.parallel.influence``); the result equals the
      one-device result up to float reassociation. One process only: the
      defence keeps the whole training set on the host.

  ``init()`` is the state before any update; ``before_epoch(state, epoch,
  train_state, x_train)`` returns ``(state, x_train, seconds)``;
  ``images(state)`` the training images with the state's noise written in;
  ``summary(state)`` and ``updates(state)`` what the updates did; ``check``
  validates a state read back from a checkpoint. None of them changes the
  object.
  """

  def __init__(self, model, config: HintConfig, x_orig: np.ndarray,
               y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
               epochs: Optional[int] = None,
               on_progress: Optional[Callable[[str, int, int], None]] = None,
               x_clean: Optional[np.ndarray] = None, mesh=None):
    self.config = config.validate(epochs)
    if mesh is not None and jax.process_count() > 1:
      raise ConfigError("HINT over several processes is not supported: the "
                        "defence scores and perturbs the whole training set "
                        "from one host (use one process with all its "
                        "devices)")
    self.passes = passes_for(mesh)
    x_orig, y_train = np.asarray(x_orig), np.asarray(y_train)
    if x_orig.dtype != np.uint8 or x_orig.ndim != 4:
      raise DataError(f"HINT needs uint8 NHWC training images, got "
                      f"{x_orig.dtype} {x_orig.shape}")
    if len(y_train) != len(x_orig):
      raise DataError(f"{len(x_orig)} training images but {len(y_train)} "
                      f"labels")
    if len(x_val) != len(y_val) or (len(x_val) and np.shape(x_val)[1:]
                                     != x_orig.shape[1:]):
      raise DataError(f"validation set {np.shape(x_val)} with {len(y_val)} "
                      f"labels does not match training images "
                      f"{x_orig.shape[1:]}")
    if len(x_val) == 0:
      raise ConfigError("HINT needs a clean validation set (s_test is the "
                        "inverse Hessian times its loss gradient); hold out "
                        "validation images (num_val > 0, --num-val)")
    if x_clean is not None and np.shape(x_clean) != x_orig.shape:
      raise DataError(f"clean images {np.shape(x_clean)} do not match the "
                      f"training images {x_orig.shape}")
    self.model = model
    self.x_orig, self.y_train = x_orig, y_train
    self.x_clean = None if x_clean is None else np.asarray(x_clean)
    self.x_val, self.y_val = np.asarray(x_val), np.asarray(y_val)
    self.on_progress = on_progress
    std = getattr(model.module, "std", None)
    self._grad_scale = (None if std is None or config.grad_space == "pixel"
                        else jnp.asarray(std, jnp.float32))

  # ----------------------------------------------------------------- state
  def init(self) -> Dict[str, Any]:
    """The state before any update (its keys: the module docstring)."""
    return {"hint_selected": None, "hint_delta": None, "hint_scores": None,
            "hint": []}

  def check(self, state: Dict[str, Any]) -> Dict[str, Any]:
    """``state`` (e.g. read back from a checkpoint, where absent keys mean
    None) with its arrays typed, after checking it fits this training set.

    Raises:
      DataError: it does not.
    """
    selected, delta = state.get("hint_selected"), state.get("hint_delta")
    scores = state.get("hint_scores")
    out = {"hint_selected": None, "hint_delta": None, "hint_scores": None,
           "hint": [dataclasses.asdict(HintUpdate(**u))
                    for u in state.get("hint") or []]}
    if selected is None:
      return out
    selected = np.asarray(selected, np.int32)
    delta = np.asarray(delta, np.float32)
    n = len(self.x_orig)
    if (selected.ndim != 1
        or delta.shape != (len(selected),) + self.x_orig.shape[1:]
        or (len(selected) and (selected.min() < 0 or selected.max() >= n))
        or (scores is not None and np.shape(scores) != (n,))):
      raise DataError("HINT checkpoint does not match the training set")
    out.update(hint_selected=selected, hint_delta=jnp.asarray(delta),
               hint_scores=None if scores is None else np.asarray(scores))
    return out

  @staticmethod
  def updates(state) -> List["HintUpdate"]:
    """The state's update records as `HintUpdate`s."""
    return [HintUpdate(**u) for u in state["hint"]]

  # ------------------------------------------------------------------ hook
  def before_epoch(self, state, epoch: int, train_state,
                   x_train: np.ndarray):
    """At a scheduled epoch, updates the noise; otherwise changes nothing.
    Returns ``(state, x_train, seconds)``."""
    if epoch not in self.config.schedule:
      return state, x_train, 0.0
    state, x_new, update = self.update(state, epoch, train_state.params,
                                       train_state.model_state, x_train)
    return state, x_new, update.seconds

  def images(self, state, x_train: Optional[np.ndarray] = None):
    """The training images with the state's noise written in: a copy of
    ``x_train`` (default: the received images) whose selected rows are
    ``noised_images(x_orig, delta)``. Deterministic in (x_orig, delta), so a
    resumed run rebuilds exactly the images it had."""
    x = np.array(self.x_orig if x_train is None else x_train)
    selected = state["hint_selected"]
    if selected is not None and len(selected):
      x[selected] = np.asarray(_noised_jit(
          jnp.asarray(self.x_orig[selected]), state["hint_delta"],
          self.config.rounding))
    return x

  # ---------------------------------------------------------------- update
  def _report(self, stage):
    if self.on_progress is None:
      return lambda done, total: None
    return lambda done, total: self.on_progress(stage, done, total)

  def _s_test(self, top, params, model_state, phi_hessian, key):
    cfg = self.config
    phi_val = _features_in_blocks(self.passes, self.model, params,
                                  model_state, self.x_val, cfg.chunk_size,
                                  self._report("validation"))
    options = {"method": cfg.solver, "damping": cfg.damping}
    if cfg.solver == "cg":
      options["tol"] = cfg.cg_tol
    elif cfg.solver == "lissa":
      options.update(key=key, depth=cfg.lissa_depth,
                     batch_size=cfg.lissa_batch_size, scale=cfg.lissa_scale)
    return self.passes.s_test(top, phi_hessian, phi_val,
                              jnp.asarray(self.y_val), **options)

  def _select(self, top, phi, s) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(selected, scores)``: the rows HINT noises (sorted int32): every
    row at r = 1 (no scoring pass, scores None), else the top-k by I_up (or
    k at random for the "random" selection control)."""
    cfg = self.config
    n = len(self.x_orig)
    k = num_selected(n, cfg.ratio)
    if k == n:
      return np.arange(n, dtype=np.int32), None
    scores = self.passes.up_scores(top, phi, jnp.asarray(self.y_train), s)
    if cfg.selection == "random":   # control: same size, by chance
      return np.sort(np.asarray(jax.random.choice(
          jax.random.fold_in(jax.random.key(cfg.seed), _SELECTION_STREAM),
          n, (k,), replace=False))).astype(np.int32), np.asarray(scores)
    return np.asarray(select_top(scores, k)), np.asarray(scores)

  def update(self, state, epoch: int, params: Any, model_state: Any,
             x_train: np.ndarray):
    """Runs one scheduled update at the given parameters.

    Args:
      state: the state so far (``init()`` before the first update).
      epoch: the (0-based) epoch it runs before; sets the step size and
        LiSSA's key.
      params, model_state: the model now.
      x_train: the current training images (uint8), i.e. the received ones
        with the noise so far written in (``images(state)``).

    Returns:
      ``(state, x_new, record)``: the new state, a copy of ``x_train`` with
      the new noise written into the selected rows, and the update's
      `HintUpdate` (also appended to the state's records).
    """
    cfg = self.config
    if x_train.shape != self.x_orig.shape:
      raise DataError(f"training images changed shape: {x_train.shape} vs "
                      f"{self.x_orig.shape}")
    top = params[TOP_LAYER]
    key = jax.random.fold_in(jax.random.key(cfg.seed), epoch)
    step = cfg.step_size(epoch)
    selected, delta = state["hint_selected"], state["hint_delta"]
    scores = state["hint_scores"]
    record = HintUpdate(epoch=epoch, step_size=step, num_selected=0)

    # 1-2. s_test, and at the first update the selection.
    t0 = time.perf_counter()
    if selected is None:
      phi = _features_in_blocks(self.passes, self.model, params,
                                model_state, self.x_orig, cfg.chunk_size,
                                self._report("features"))
      s, info = self._s_test(top, params, model_state, phi, key)
      selected, scores = self._select(top, phi, s)
      del phi
      delta = jnp.zeros((len(selected),) + self.x_orig.shape[1:],
                        jnp.float32)
      jax.block_until_ready(delta)
      record.selection_seconds = time.perf_counter() - t0
    else:
      hess_images = (x_train[selected] if cfg.hessian_from == "selected"
                     else x_train)
      phi = _features_in_blocks(self.passes, self.model, params,
                                model_state, hess_images, cfg.chunk_size,
                                self._report("features"))
      s, info = self._s_test(top, params, model_state, phi, key)
      jax.block_until_ready(s)
      del phi
      record.s_test_seconds = time.perf_counter() - t0
    record.num_selected = len(selected)
    record.solver_iterations = int(info.iterations)
    record.solver_residual = float(info.residual)
    record.s_test_norm = float(math.sqrt(sum(
        float(jnp.sum(v.astype(jnp.float32) ** 2))
        for v in jax.tree.leaves(s))))

    # 3. I_pert at the current (noised) images of the selected examples.
    t0 = time.perf_counter()
    x_cur, y_sel = x_train[selected], self.y_train[selected]
    infl = self._pert(params, model_state, top, s, x_cur, y_sel)
    hint_step = infl
    infl = self._control_direction(epoch, params, model_state, top, s, x_cur,
                                   y_sel, infl)
    jax.block_until_ready(infl)
    record.pert_seconds = time.perf_counter() - t0

    # 4. delta and the uint8 images. noise_write donates the noise it is
    # given: the input state's is copied first, so that state stays valid.
    t0 = time.perf_counter()
    x_orig_sel = self.x_orig[selected]
    if delta is state["hint_delta"]:
      delta = jnp.array(delta, copy=True)
    delta, x_new = noise_write(
        jnp.asarray(x_orig_sel), delta, infl,
        jnp.float32(step), jnp.float32(cfg.beta), sign=cfg.sign,
        rounding=cfg.rounding)
    x_sel = np.asarray(x_new)
    x_out = np.array(x_train)
    x_out[selected] = x_sel
    record.write_seconds = time.perf_counter() - t0

    if len(selected):
      self._record_noise(record, infl, hint_step, x_sel, x_orig_sel,
                         selected, delta)
    state = {"hint_selected": selected, "hint_delta": delta,
             "hint_scores": scores,
             "hint": list(state["hint"]) + [dataclasses.asdict(record)]}
    return state, x_out, record

  def _record_noise(self, record, infl, hint_step, x_sel, x_orig_sel,
                    selected, delta):
    """Fills the record's noise diagnostics (see `HintUpdate`)."""
    record.step_cosine = (1.0 if infl is hint_step else _cosine(
        np.asarray(infl), np.asarray(hint_step)))
    record.pert_abs_mean = float(jnp.mean(jnp.abs(infl)))
    record.delta_abs_mean = float(jnp.mean(jnp.abs(delta)))
    record.at_bound_fraction = float(jnp.mean(
        jnp.abs(delta) >= self.config.beta))
    record.pixels_changed_fraction = float(np.mean(x_sel != x_orig_sel))
    if self.x_clean is not None:
      self._record_restoration(record, x_sel, x_orig_sel, selected, delta)

  def _record_restoration(self, record, x_sel, x_orig_sel, selected, delta):
    """Fills the record's poison fields (see `HintUpdate`)."""
    clean = self.x_clean[selected]
    poison = np.any((clean != x_orig_sel).reshape(len(clean), -1), axis=1)
    record.poisons_selected = int(poison.sum())
    if not poison.any():
      return
    toward_clean = (clean[poison].astype(np.int16)
                    - x_orig_sel[poison].astype(np.int16))
    record.restore_cosine = _cosine(
        x_sel[poison].astype(np.int16) - x_orig_sel[poison].astype(np.int16),
        toward_clean)
    record.restore_cosine_float = _cosine(
        -np.asarray(delta)[poison] * 255.0, toward_clean)

  def _control_direction(self, epoch, params, model_state, top, s, x_cur,
                         y_sel, infl):
    """The step's direction field: ``infl`` (I_pert) for HINT, else the
    ``direction`` control's (see `HintConfig`), with infl's per-pixel
    magnitudes."""
    cfg = self.config
    if cfg.direction == "influence":
      return infl
    key = jax.random.fold_in(jax.random.key(cfg.seed), epoch)
    if cfg.direction == "random_sign":
      return random_signs(jax.random.fold_in(jax.random.fold_in(
          jax.random.key(cfg.seed), _DIRECTION_STREAM), epoch), infl)
    if cfg.direction == "negative":
      return -infl
    if cfg.direction == "random_stest":
      norm = jnp.sqrt(sum(jnp.sum(v.astype(jnp.float32) ** 2)
                          for v in jax.tree.leaves(s)))
      s_rand = random_like_norm(
          jax.random.fold_in(key, _RANDOM_STEST_STREAM), s, norm)
      return with_signs_of(self._pert(params, model_state, top, s_rand,
                                      x_cur, y_sel), infl)
    if cfg.direction == "train_loss":
      return with_signs_of(self._loss_grad(params, model_state, x_cur,
                                           y_sel), infl)
    raise ConfigError(f"unknown HINT direction {cfg.direction!r}")

  def _loss_grad(self, params, model_state, x_cur, y_sel):
    """grad_x of the selected examples' own training loss at their current
    images (inference mode), in padded chunks of ``chunk_size``."""
    cfg = self.config
    logits_fn = self.model.logits_fn(params, model_state)
    k, chunk = len(x_cur), cfg.chunk_size
    out = []
    for start in range(0, k, chunk):
      xb = np.asarray(x_cur[start:start + chunk], np.float32) / 255.0
      yb = np.asarray(y_sel[start:start + chunk])
      m = len(xb)
      if m < chunk:
        xb = np.concatenate([xb, np.zeros((chunk - m,) + xb.shape[1:],
                                          xb.dtype)])
        yb = np.concatenate([yb, np.zeros((chunk - m,), yb.dtype)])
      out.append(_loss_input_grad(logits_fn, jnp.asarray(xb),
                                  jnp.asarray(yb))[:m])
    return (jnp.concatenate(out) if out
            else jnp.zeros((0,) + self.x_orig.shape[1:], jnp.float32))

  def _pert(self, params, model_state, top, s, x_cur, y_sel):
    """I_pert for the selected examples at their current images ``x_cur``
    (uint8, labels ``y_sel``), in blocks of ``_REPORT_EVERY`` chunks (one
    batched reverse pass per chunk)."""
    cfg = self.config
    features_fn = self.model.features_fn(params, model_state)
    k, block = len(x_cur), cfg.chunk_size * _REPORT_EVERY
    report = self._report("perturbation")
    out = []
    for start in range(0, k, block):
      xb = jnp.asarray(x_cur[start:start + block], jnp.float32) / 255.0
      yb = jnp.asarray(y_sel[start:start + block])
      out.append(self.passes.pert(features_fn, top, xb, yb, s,
                                  cfg.chunk_size))
      report(min(start + block, k), k)
    infl = (jnp.concatenate(out) if out
            else jnp.zeros((0,) + self.x_orig.shape[1:], jnp.float32))
    if self._grad_scale is not None:
      # Authors' CIFAR code: the gradient w.r.t. the normalised input,
      # d/dx_norm = std * d/dx_pixel, added in pixel space.
      infl = infl * self._grad_scale
    return infl

  # ---------------------------------------------------------------- record
  def summary(self, state) -> dict:
    """Totals by phase and the per-update records, JSON-ready."""
    ups = self.updates(state)
    selected = state["hint_selected"]
    return {
        "num_selected": None if selected is None else len(selected),
        "selection_seconds": sum(u.selection_seconds for u in ups),
        "s_test_seconds": sum(u.s_test_seconds for u in ups),
        "pert_seconds": sum(u.pert_seconds for u in ups),
        "write_seconds": sum(u.write_seconds for u in ups),
        "seconds": sum(u.seconds for u in ups),
        "updates": [dataclasses.asdict(u) for u in ups],
    }

  def save_noise(self, state, path,
                 train_idx: Optional[np.ndarray] = None) -> None:
    """Writes the selected examples' received and noised images, delta,
    labels, indices and scores to an ``.npz`` file (atomically).

    Keys: ``selected`` (indices into the training split), ``x_orig``,
    ``x_noised`` (uint8), ``delta`` (float32, [0, 1] units), ``y``,
    ``scores`` (I_up of every training example; empty when r = 1),
    ``dataset_index`` (the selected examples' indices in the dataset's
    training set, when ``train_idx`` is given), ``beta``.
    """
    path = pathlib.Path(path)
    sel, scores = state["hint_selected"], state["hint_scores"]
    sel = sel if sel is not None else np.zeros((0,), np.int32)
    delta = (np.asarray(state["hint_delta"]) if len(sel)
             else np.zeros((0,) + self.x_orig.shape[1:], np.float32))
    arrays = {
        "selected": sel, "x_orig": self.x_orig[sel],
        "x_noised": self.images(state)[sel], "delta": delta,
        "y": self.y_train[sel],
        "scores": (scores if scores is not None
                   else np.zeros((0,), np.float32)),
        "beta": np.float32(self.config.beta),
    }
    if train_idx is not None:
      arrays["dataset_index"] = np.asarray(train_idx)[sel]
    tmp = path.with_name(path.name + ".tmp.npz")
    try:
      np.savez_compressed(tmp, **arrays)
      os.replace(tmp, path)
    except BaseException:   # a full disk or a kill: no part file is left
      tmp.unlink(missing_ok=True)
      raise
