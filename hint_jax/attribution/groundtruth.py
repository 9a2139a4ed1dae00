"""Ground truth for attribution: many models retrained at once.

Each model is named by a *mask* over the training set (which examples it
trains on) and a *seed*; `train_models` trains a stack of them as one
compiled program (``vmap`` over models, ``lax.scan`` over the steps of an
epoch), and `test_losses` evaluates them. `subset_masks` draws the LDS
subsets, `loo_masks` the leave-one-out sets.

Training contract (PyTorch's ``DataLoader(shuffle=True)`` + SGD, as
dattri's benchmark models are trained): each epoch visits the model's k
training examples once in a random order, in ceil(k / batch_size) steps of
``batch_size`` (the last one smaller when batch_size does not divide k);
each step takes the mean loss over its examples, adds ``weight_decay · θ``
to the gradient and applies SGD with ``momentum`` (PyTorch's form:
v ← μ v + g, θ ← θ − η v).

Randomness, all from ``key`` and the model's seed s (k_s = fold_in(key, s)):
the initial parameters from fold_in(k_s, 0); epoch e's order from
fold_in(fold_in(k_s, 1), e): a permutation of the *whole* training set
with the examples outside the mask dropped, the rest kept in that order;
the loss's own randomness (dropout) at step t of epoch e from
fold_in(fold_in(k_s, 2), e · steps + t). So models with the same seed share
their initialisation and visit the examples they share in the same order:
the leave-one-out model of example i sees the full model's sequence with i
removed ("retrain with the same seed"), and a random subset's order is a
uniform random order of that subset.

All masks of one call must hold the same number of examples k (so their
steps line up under ``vmap``); a model trained alone and the same model in
a stack agree to float32 rounding (the batched matrix products may sum in
another order; the tests bound the difference).

Models with state (BatchNorm's running statistics; ``stateful=True``):
``init(key) -> (params, state)`` and the loss
``(params, state, x, y, key) -> (losses, new_state)``; the state follows
the steps, the optimizer sees only ``params``, and the result is the stack
of ``(params, state)``. Such a model's batches must all be full
(``batch_size`` divides k): a padded batch would enter the batch
statistics.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from hint_jax import xla_options
from hint_jax.errors import ConfigError, DataError

# (params, x, y, key) -> per-example losses (b,); key drives dropout (the
# loss may ignore it).
TrainLoss = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]
# (params, x, y) -> per-example test losses (b,), in inference mode
# (params: a stateful model's (params, state)).
EvalLoss = Callable[[Any, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """How each model trains (see the module docstring)."""
  epochs: int
  batch_size: int
  learning_rate: float
  momentum: float = 0.0
  weight_decay: float = 0.0

  def __post_init__(self):
    if self.epochs < 1 or self.batch_size < 1:
      raise ConfigError("TrainSpec: epochs and batch_size must be positive, "
                        f"got {self.epochs} and {self.batch_size}")
    if not self.learning_rate > 0 or not 0 <= self.momentum < 1:
      raise ConfigError("TrainSpec: learning_rate must be positive and "
                        f"momentum in [0, 1), got {self.learning_rate} and "
                        f"{self.momentum}")
    if self.weight_decay < 0:
      raise ConfigError(f"TrainSpec: weight_decay {self.weight_decay} < 0")

  def optimizer(self) -> optax.GradientTransformation:
    chain = []
    if self.weight_decay:
      chain.append(optax.add_decayed_weights(self.weight_decay))
    chain.append(optax.sgd(self.learning_rate,
                           momentum=self.momentum or None))
    return optax.chain(*chain)


def subset_masks(key: jax.Array, n: int, num_subsets: int,
                 fraction: float) -> np.ndarray:
  """(num_subsets, n) booleans: subset j holds int(fraction · n) examples
  drawn without replacement with fold_in(key, j) (dattri's size rule)."""
  if not 0 < fraction <= 1:
    raise ConfigError(f"subset fraction must be in (0, 1], got {fraction}")
  k = int(n * fraction)
  if k < 1 or num_subsets < 1:
    raise ConfigError(f"{num_subsets} subsets of {k} examples: need at "
                      "least one of each")
  draw = jax.jit(jax.vmap(lambda j: jax.random.choice(
      jax.random.fold_in(key, j), n, (k,), replace=False)))
  idx = np.asarray(draw(jnp.arange(num_subsets)))
  masks = np.zeros((num_subsets, n), bool)
  masks[np.arange(num_subsets)[:, None], idx] = True
  return masks


def loo_masks(n: int, removed) -> np.ndarray:
  """(len(removed), n) booleans: row j holds every example but removed[j]."""
  removed = np.asarray(removed, np.int64).reshape(-1)
  if removed.size and (removed.min() < 0 or removed.max() >= n):
    raise DataError(f"loo_masks: indices must be in [0, {n})")
  masks = np.ones((removed.size, n), bool)
  masks[np.arange(removed.size), removed] = False
  return masks


def _order(key, mask, k, steps, batch_size):
  """One epoch's batches for one model: (steps, batch) indices and weights
  (1 for a real example, 0 for the padding of the last batch)."""
  perm = jax.random.permutation(key, mask.shape[0])
  kept = perm[jnp.argsort(~mask[perm], stable=True)][:k]
  pad = steps * batch_size - k
  idx = jnp.concatenate([kept, jnp.zeros((pad,), kept.dtype)])
  w = jnp.concatenate([jnp.ones((k,), jnp.float32),
                       jnp.zeros((pad,), jnp.float32)])
  return idx.reshape(steps, batch_size), w.reshape(steps, batch_size)


def _epoch_fn(loss: TrainLoss, spec: TrainSpec, k: int, stateful: bool,
              step_loop: str = "scan"):
  """``(params, state, opt_state, masks, model_keys, epoch, x, y) ->
  (params, state, opt_state)``: one epoch of every model of a stack."""
  steps = -(-k // spec.batch_size)
  opt = spec.optimizer()

  def order(mask, model_key, epoch):
    return _order(jax.random.fold_in(jax.random.fold_in(model_key, 1),
                                     epoch), mask, k, steps, spec.batch_size)

  def step(params, state, opt_state, bi, bw, model_key, epoch, t, x, y):
    key = jax.random.fold_in(jax.random.fold_in(model_key, 2),
                             epoch * steps + t)

    def objective(p):
      if stateful:
        losses, new_state = loss(p, state, x[bi], y[bi], key)
      else:
        losses, new_state = loss(p, x[bi], y[bi], key), state
      return jnp.sum(losses * bw) / jnp.sum(bw), new_state

    grads, state = jax.grad(objective, has_aux=True)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state, opt_state

  if step_loop == "host":
    orders = jax.jit(jax.vmap(order, in_axes=(0, 0, None)))
    batched_step = xla_options.jit(jax.vmap(
        step, in_axes=(0, 0, 0, 0, 0, 0, None, None, None, None)))

    def epoch_on_host(params, state, opt_state, mask, model_key, epoch, x,
                      y):
      idx, w = orders(mask, model_key, epoch)
      for t in range(steps):
        params, state, opt_state = batched_step(
            params, state, opt_state, idx[:, t], w[:, t], model_key, epoch,
            jnp.asarray(t, jnp.int32), x, y)
      return params, state, opt_state
    return epoch_on_host
  if step_loop != "scan":
    raise ConfigError(f"step_loop must be 'scan' or 'host', got "
                      f"{step_loop!r}")

  def one(params, state, opt_state, mask, model_key, epoch, x, y):
    idx, w = order(mask, model_key, epoch)

    def scan_step(carry, t):
      return step(*carry, idx[t], w[t], model_key, epoch, t, x, y), None

    carry, _ = jax.lax.scan(scan_step, (params, state, opt_state),
                            jnp.arange(steps))
    return carry

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None, None, None)))


def _check(masks, seeds, x, y):
  masks = np.asarray(masks, bool)
  seeds = np.asarray(seeds, np.int64).reshape(-1)
  if masks.ndim != 2 or masks.shape[1] != len(x) or len(x) != len(y):
    raise DataError(f"masks {masks.shape} must be (models, n) with n = "
                    f"{len(x)} training examples ({len(y)} labels)")
  if seeds.shape[0] != masks.shape[0]:
    raise DataError(f"{seeds.shape[0]} seeds for {masks.shape[0]} masks")
  counts = masks.sum(axis=1)
  if counts.size == 0 or counts.min() != counts.max() or counts[0] == 0:
    raise DataError("every mask of one call must hold the same, positive "
                    f"number of examples; got {sorted(set(counts.tolist()))}")
  return masks, seeds, int(counts[0])


def train_models(init: Callable[[jax.Array], Any], loss: TrainLoss,
                 x, y, masks, seeds, spec: TrainSpec, key: jax.Array, *,
                 stateful: bool = False, step_loop: str = "scan",
                 on_epoch: Optional[Callable[[int], None]] = None) -> Any:
  """Trains one model per (mask, seed) row; returns their parameters
  stacked on a leading axis (``stateful``: the stack of
  ``(params, state)``).

  Args:
    init: ``key -> params``, the initial parameters (``stateful``:
      ``key -> (params, state)``).
    loss: ``(params, x, y, key) -> (b,)`` per-example training losses
      (``stateful``: ``(params, state, x, y, key) -> ((b,), new_state)``).
    x, y: the whole training set (every mask indexes into it).
    masks: (models, n) booleans, each with the same count k.
    seeds: (models,) ints: the model's seed (see the module docstring).
    spec: the training settings.
    key: the base key.
    stateful: the model carries state (see the module docstring).
    step_loop: "scan" runs an epoch's steps in one compiled ``lax.scan``;
      "host" calls one compiled step per step from Python. Same steps,
      same keys, the same models up to float32 rounding (tested). On
      XLA:CPU a convolution inside a scan runs far slower than alone
      (the MNIST ConvNet's 20 steps: 52 s in a scan, 3.2 s as separate
      calls, 2-core CPU, jaxlib 0.10.2), so convolutional models train
      with "host" there; small dense models are quicker in a scan.
    on_epoch: called with the number of epochs done (progress).

  Raises:
    DataError: masks, seeds and data disagree.
    ConfigError: a stateful model whose batch size does not divide k.
  """
  masks, seeds, k = _check(masks, seeds, x, y)
  if stateful and k % spec.batch_size:
    raise ConfigError(f"a model with batch statistics needs full batches: "
                      f"batch_size {spec.batch_size} must divide the "
                      f"{k} examples of each model")

  # One compiled initialisation per distinct seed, stacked: a vmapped
  # initialisation compiles several times slower than the models train.
  init_one = jax.jit(lambda mk: init(jax.random.fold_in(mk, 0)))
  firsts = {}
  for s in seeds.tolist():
    if s not in firsts:
      mk = jax.random.fold_in(key, s)
      firsts[s] = (mk, init_one(mk))
  model_keys = jnp.stack([firsts[s][0] for s in seeds.tolist()])
  stacked = jax.tree.map(lambda *a: jnp.stack(a),
                         *[firsts[s][1] for s in seeds.tolist()])
  params, state = stacked if stateful else (stacked, jnp.zeros(len(seeds)))
  opt_state = jax.vmap(spec.optimizer().init)(params)
  epoch = _epoch_fn(loss, spec, k, stateful, step_loop)
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  mask_arr = jnp.asarray(masks)
  for e in range(spec.epochs):
    params, state, opt_state = epoch(params, state, opt_state, mask_arr,
                                     model_keys, jnp.asarray(e, jnp.int32),
                                     x, y)
    if on_epoch is not None:
      jax.block_until_ready(params)
      on_epoch(e + 1)
  return (params, state) if stateful else params


def evaluate_losses(eval_loss: EvalLoss, params: Any, x, y,
                chunk_size: int = 1000) -> np.ndarray:
  """(models, n_test) float32 test losses of stacked parameters, evaluated
  ``chunk_size`` test examples at a time."""
  run = jax.jit(jax.vmap(eval_loss, in_axes=(0, None, None)))
  out = [np.asarray(run(params, jnp.asarray(x[i:i + chunk_size]),
                        jnp.asarray(y[i:i + chunk_size])))
         for i in range(0, len(x), chunk_size)]
  return np.concatenate(out, axis=1).astype(np.float32)


def unstack(params: Any, i: int) -> Any:
  """Model i's parameters from a stack."""
  return jax.tree.map(lambda a: a[i], params)
