"""The estimator interface, its registry, and the block-streamed scorer.

Every estimator here scores a training example z_i for a test example z by
a bilinear form of per-example *features*, summed or averaged over the
state's members m (one model, checkpoints or an ensemble):

    score(z, z_i) = w_i · reduce_m ⟨u_m(z), v_m(z_i)⟩

so ``scores`` streams: for each block of test examples it computes U
(members × block × D), then for each block of training examples V and the
block of scores; memory is bounded by the block sizes and D (the number of
parameters, or a projection's dimension), never by n_train × P.

Sign and scale, the same for every estimator: **positive means the
training example helps the test example** (it lowers the test function:
the test loss, or for TRAK raises the margin). For the influence functions
score = ∇f(z)ᵀ (C + λI)⁻¹ ∇ℓ(z_i), which is n times the first-order
increase of f(z) when z_i is removed from n training examples (−I_up of
Koh & Liang); Grad-Dot and TracIn are the decrease of f(z) per unit step
of SGD on z_i.
"""

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hint_jax import xla_options
from hint_jax.attribution.state import AttributionState, make_state
from hint_jax.errors import ConfigError, DataError
from hint_jax.influence._closure import as_pytree_callable


@dataclasses.dataclass(frozen=True)
class Estimator:
  """One entry of the registry.

  Attributes:
    name: registry name (``--estimator``).
    summary: one line for listings.
    defaults: every setting with its default value.
    prepare: ``(apply, members, train, key, settings) -> arrays``: the
      preparation phase (curvature, eigenvectors, kernels); ``members`` the
      parameter pytrees, ``train`` ``(x, y)``, ``settings`` complete.
    test_features: ``(state, extras, apply, x, y) -> (M, t, D)``.
    train_features: ``(state, extras, apply, x, y) -> (M, b, D)``.
    reduce: "sum" or "mean" over the members.
    train_weights: optional ``(state, extras, apply, x, y) -> (b,)``
      multiplying each training example's scores (TRAK's 1 − p_i).
    expand: optional ``(state) -> extras``, large arrays rebuilt from the
      state once per scoring call instead of stored (TRAK's projections).
    multi_member: whether several members make sense (TracIn, TRAK).
    nullable: settings with a numeric default that also take None (TRAK's
      ``proj_dim``: no projection; LiSSA's ``batch_size``: full batch).
    host_test_features: optional un-jitted version of ``test_features``
      for `scores`, whose iterations run from Python (`_host`); it must
      compute the same values.
  """
  name: str
  summary: str
  defaults: dict
  prepare: Callable
  test_features: Callable
  train_features: Callable
  reduce: str = "sum"
  train_weights: Optional[Callable] = None
  expand: Optional[Callable] = None
  multi_member: bool = False
  host_test_features: Optional[Callable] = None
  nullable: frozenset = frozenset()


ESTIMATORS: dict = {}


def register(est: Estimator) -> Estimator:
  ESTIMATORS[est.name] = est
  return est


def get(name: str) -> Estimator:
  if name not in ESTIMATORS:
    raise ConfigError(f"unknown estimator {name!r}; choose one of "
                      f"{', '.join(sorted(ESTIMATORS))}")
  return ESTIMATORS[name]


def _settings(est: Estimator, settings: dict) -> dict:
  unknown = sorted(set(settings) - set(est.defaults))
  if unknown:
    raise ConfigError(f"{est.name} has no setting {', '.join(unknown)}; its "
                      f"settings: {', '.join(sorted(est.defaults)) or 'none'}")
  out = dict(est.defaults)
  for k, v in settings.items():
    default = est.defaults[k]
    numeric = isinstance(default, (int, float)) and not isinstance(
        default, bool)
    if v is None and k in est.nullable:
      out[k] = None
      continue
    if numeric and not (isinstance(v, (int, float))
                        and not isinstance(v, bool)):
      raise ConfigError(f"{est.name}: {k} must be a number, got {v!r}")
    if isinstance(default, str) and not isinstance(v, str):
      raise ConfigError(f"{est.name}: {k} must be a word, got {v!r}")
    out[k] = tuple(v) if isinstance(v, list) else v
  return out


def _check_data(data, what):
  try:
    x, y = data
  except (TypeError, ValueError):
    raise DataError(f"{what} must be a pair (x, y)") from None
  x, y = jnp.asarray(x), jnp.asarray(y)
  if x.ndim < 1 or y.shape != x.shape[:1] or not len(x):
    raise DataError(f"{what}: {x.shape[:1]} inputs but labels of shape "
                    f"{y.shape}")
  return x, y


def prepare(name: str, apply: Callable, params: Any, train, *,
            key: Optional[jax.Array] = None, members=None,
            **settings) -> AttributionState:
  """Runs estimator ``name``'s preparation phase.

  Args:
    name: a key of ``ESTIMATORS``.
    apply: ``apply(params, x) -> logits`` (inference mode, pure).
    params: the parameter pytree of the model to attribute.
    train: ``(x_train, y_train)``.
    key: PRNG key of the estimator's own randomness (subsamples, starting
      vectors, projections); default ``jax.random.key(0)``.
    members: for TracIn (checkpoints) and TRAK (an ensemble): the parameter
      pytrees, instead of ``params`` alone.
    **settings: the estimator's settings (see its ``defaults``).

  Returns:
    An `AttributionState` (a pytree; `save_state` writes it).
  """
  est = get(name)
  opts = _settings(est, settings)
  members = (params,) if members is None else tuple(members)
  if not members:
    raise ConfigError("members must hold at least one parameter pytree")
  if len(members) > 1 and not est.multi_member:
    raise ConfigError(f"{name} takes one model, got {len(members)} members")
  structure = jax.tree.structure(members[0])
  if any(jax.tree.structure(m) != structure for m in members[1:]):
    raise ConfigError("every member must have the same parameter structure")
  train = _check_data(train, "train")
  key = jax.random.key(0) if key is None else key
  arrays = est.prepare(as_pytree_callable(apply), members, train, key, opts)
  return make_state(name, opts, members, arrays)


def _reduce(est, terms):
  return jnp.sum(terms, 0) if est.reduce == "sum" else jnp.mean(terms, 0)


def _score_from_features(est, state, extras, apply, u, x_train, y_train):
  v = est.train_features(state, extras, apply, x_train, y_train)
  s = _reduce(est, jnp.einsum("mtd,mbd->mtb", u, v))
  if est.train_weights is not None:
    s = s * est.train_weights(state, extras, apply, x_train, y_train)[None]
  return s


def score_block(state: AttributionState, apply: Callable, x_test, y_test,
                x_train, y_train) -> jax.Array:
  """Scores (n_test, n_train) of one block of each: pure and jittable
  (``apply`` a pytree callable or a function closed over), and vmappable
  over test examples (give each with a batch axis of one)."""
  est = get(state.estimator)
  extras = est.expand(state) if est.expand is not None else {}
  u = est.test_features(state, extras, apply, x_test, y_test)
  return _score_from_features(est, state, extras, apply, u, x_train,
                              y_train)


@xla_options.jit
def _test_features_jit(state, extras, apply, x, y):
  return get(state.estimator).test_features(state, extras, apply, x, y)


@xla_options.jit
def _scores_jit(state, extras, apply, u, x, y):
  return _score_from_features(get(state.estimator), state, extras, apply, u,
                              x, y)


@xla_options.jit
def _expand_jit(state):
  est = get(state.estimator)
  return est.expand(state) if est.expand is not None else {}


def _blocks(n, size):
  size = n if size is None else max(1, int(size))
  return [(s, min(n, s + size)) for s in range(0, n, size)]


def _pad(a, size):
  """``a`` padded with copies of its first row to ``size`` rows, so every
  block compiles once."""
  m = a.shape[0]
  if m == size:
    return a
  return jnp.concatenate([a, jnp.repeat(a[:1], size - m, 0)])


def scores(state: AttributionState, apply: Callable, train, test, *,
           train_block: Optional[int] = 512, test_block: Optional[int] = 256,
           out: Optional[np.ndarray] = None,
           on_progress: Optional[Callable[[int, int], None]] = None
           ) -> np.ndarray:
  """The (n_test, n_train) score matrix, streamed over blocks.

  Args:
    state: from `prepare` (or `load_state`).
    apply: the same ``apply`` as at preparation.
    train: ``(x_train, y_train)``; blocks are moved to the device one at a
      time, so host arrays (even memory-mapped) work.
    test: ``(x_test, y_test)``.
    train_block, test_block: examples per block (None: all at once). The
      test features of a block are computed once and kept while every
      training block streams past, so large test blocks pay the costly
      test side (solves) once and small ones bound memory.
    out: optional array (n_test, n_train) to fill (e.g. a float32
      ``np.memmap``); otherwise a new one of the scores' dtype (the
      parameters').
    on_progress: called with ``(blocks_done, blocks_total)``.

  Returns:
    ``out``: the scores; the sign convention is the module's.
  """
  x_tr, y_tr = train
  x_te, y_te = test
  n_tr, n_te = len(x_tr), len(x_te)
  if len(y_tr) != n_tr or len(y_te) != n_te or not n_tr or not n_te:
    raise DataError(f"train ({n_tr} inputs, {len(y_tr)} labels) and test "
                    f"({n_te}, {len(y_te)}) must be non-empty and match")
  if out is not None and out.shape != (n_te, n_tr):
    raise DataError(f"out has shape {out.shape}, not {(n_te, n_tr)}")
  apply = as_pytree_callable(apply)
  extras = _expand_jit(state)
  test_blocks, train_blocks = _blocks(n_te, test_block), _blocks(n_tr,
                                                                  train_block)
  tb = test_blocks[0][1] - test_blocks[0][0]
  bb = train_blocks[0][1] - train_blocks[0][0]
  total, done = len(test_blocks) * len(train_blocks), 0
  host = get(state.estimator).host_test_features
  for t0, t1 in test_blocks:
    xb, yb = (_pad(jnp.asarray(x_te[t0:t1]), tb),
              _pad(jnp.asarray(y_te[t0:t1]), tb))
    u = (_test_features_jit(state, extras, apply, xb, yb) if host is None
         else host(state, extras, apply, xb, yb))
    for b0, b1 in train_blocks:
      block = _scores_jit(state, extras, apply, u,
                          _pad(jnp.asarray(x_tr[b0:b1]), bb),
                          _pad(jnp.asarray(y_tr[b0:b1]), bb))
      if out is None:
        out = np.zeros((n_te, n_tr), block.dtype)
      out[t0:t1, b0:b1] = np.asarray(block)[:t1 - t0, :b1 - b0]
      done += 1
      if on_progress is not None:
        on_progress(done, total)
  return out


def num_parameters(params) -> int:
  return int(sum(math.prod(jnp.shape(a)) for a in jax.tree.leaves(params)))
