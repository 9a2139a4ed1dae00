"""The functional train state and the jitted train / eval steps."""

from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import optax

from hint_jax import xla_options

# Sub-streams of the state's root key; each use folds in its own counter.
_SHUFFLE_STREAM = 1
_AUGMENT_STREAM = 2
_ADVERSARY_STREAM = 3


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree.

  Attributes:
    params: model parameters.
    model_state: BatchNorm running statistics (``{}`` when the model has none).
    opt_state: optax state.
    step: number of optimizer steps taken.
    key: root PRNG key of this run; per-step and per-epoch keys are derived
      with ``jax.random.fold_in``, so the state alone fixes all randomness.
  """
  params: Any
  model_state: Any
  opt_state: Any
  step: jax.Array
  key: jax.Array


def create_train_state(model, optimizer, key) -> TrainState:
  """Initialises the model from ``key`` and returns a fresh state."""
  init_key, run_key = jax.random.split(key)
  params, model_state = model.init(init_key)
  return TrainState(params=params, model_state=model_state,
                    opt_state=optimizer.init(params),
                    step=jnp.zeros((), jnp.int32), key=run_key)


def shuffle_key(state: TrainState, epoch: int):
  return jax.random.fold_in(jax.random.fold_in(state.key, _SHUFFLE_STREAM),
                            epoch)


def to_float(x_u8):
  """uint8 images -> float32 in [0, 1]."""
  return x_u8.astype(jnp.float32) / 255.0


def cross_entropy(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def make_train_step(model, optimizer,
                    augment: Optional[Callable] = None,
                    adversary: Optional[Callable] = None) -> Callable:
  """Returns the pure step ``(state, x_u8, y) -> (state, metrics)``.

  ``augment(key, x)`` transforms the float batch; then ``adversary(params,
  model_state, key, x, y)`` (adversarial training) replaces it by inputs
  crafted against the current model.

  ``metrics`` holds the batch's mean loss and its number of correct
  predictions (in train mode, before the update).
  """

  def loss_fn(params, model_state, x, y):
    logits, new_model_state = model.apply_train(params, model_state, x)
    loss = jnp.mean(cross_entropy(logits, y))
    return loss, (new_model_state, logits)

  def train_step(state: TrainState, x_u8, y):
    x = to_float(x_u8)
    if augment is not None:
      key = jax.random.fold_in(
          jax.random.fold_in(state.key, _AUGMENT_STREAM), state.step)
      x = augment(key, x)
    if adversary is not None:
      key = jax.random.fold_in(
          jax.random.fold_in(state.key, _ADVERSARY_STREAM), state.step)
      x = adversary(state.params, state.model_state, key, x, y)
    (loss, (model_state, logits)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params, state.model_state, x, y)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    correct = jnp.sum(jnp.argmax(logits, -1) == y)
    new_state = state.replace(params=params, model_state=model_state,
                              opt_state=opt_state, step=state.step + 1)
    return new_state, {"loss": loss, "correct": correct}

  return train_step


def make_train_steps(train_step: Callable) -> Callable:
  """Returns ``(state, images_u8, labels, batch_idx) -> (state, metrics)``
  that runs ``len(batch_idx)`` steps, gathering each batch
  ``images_u8[batch_idx[i]]`` on device inside one jitted step.

  The steps are dispatched one by one from Python (asynchronously: nothing
  waits for the device until the caller reads a result). A ``lax.scan`` over
  the steps would save the dispatch (~0.1 ms a step) but XLA:CPU compiles the
  convolutions inside a loop body about ten times slower than at top level,
  so the loop stays in Python. The images are an argument, so the caller may
  change them between calls (HINT writes noise into them between epochs).
  Metrics are summed over the steps (``loss_sum``, ``correct``).
  """

  def one(state, images_u8, labels, idx):
    return train_step(state, images_u8[idx], labels[idx])

  step = xla_options.jit(one, donate_argnums=0)

  def run(state, images_u8, labels, batch_idx):
    loss_sum, correct = jnp.zeros(()), jnp.zeros((), jnp.int32)
    for idx in batch_idx:
      state, m = step(state, images_u8, labels, idx)
      loss_sum = loss_sum + m["loss"]
      correct = correct + m["correct"]
    return state, {"loss_sum": loss_sum, "correct": correct}

  run.step = step
  return run


def make_sharded_train_step(train_step: Callable, mesh) -> Callable:
  """Returns the jitted ``(state, x_u8, y) -> (state, metrics)`` for a batch
  split by rows over ``mesh`` (``hint_jax.parallel.make_data_mesh``), the
  state replicated. XLA partitions the step: every device runs the network
  on its rows, and the mean loss's gradient and the BatchNorm batch
  statistics are reduced across devices, so the step computes what one
  device would, up to float reassociation. Donates the input state.
  """
  repl = NamedSharding(mesh, PartitionSpec())
  rows = NamedSharding(mesh, PartitionSpec("data"))
  return xla_options.jit(train_step, donate_argnums=0,
                 in_shardings=(repl, rows, rows),
                 out_shardings=(repl, repl))


def make_eval_batch(model) -> Callable:
  """Jitted ``(params, model_state, x_u8, y, mask) -> (loss_sum, correct)``
  in inference mode; ``mask`` zeroes padded rows."""

  @xla_options.jit
  def eval_batch(params, model_state, x_u8, y, mask):
    logits = model.apply_eval(params, model_state, to_float(x_u8))
    loss = jnp.sum(cross_entropy(logits, y) * mask)
    correct = jnp.sum((jnp.argmax(logits, -1) == y) * mask)
    return loss, correct

  return eval_batch
