"""LiSSA: a stochastic Neumann-series estimate of (H + λI)⁻¹ v.

The recursion (the authors' settings as defaults) is

  h_0 = v,   h_j = v + (1 − damp) h_{j−1} − H_{B_j} h_{j−1} / scale,

with B_j a batch drawn with replacement at every step, and the estimate is
h_J / scale. In expectation its fixed point is (H + scale·damp·I)⁻¹ v. It is
a Richardson iteration with the random operator A_j = (1 − damp)I − H_{B_j} /
scale, so it converges when every batch Hessian's eigenvalues μ satisfy
−damp·scale < μ < (2 − damp)·scale; then ‖A_j‖ ≤ 1 − damp and
‖h_j‖ ≤ ‖v‖ (1 − (1 − damp)^{j+1}) / damp. A λ_max(H_B) above about
2·scale makes it blow up geometrically. `lissa_solve` watches ‖h_j‖ against
that bound (times a margin), stops and flags; `lissa` then raises
`NumericalError` with a power-iteration estimate of λ_max and a safe scale.

Larger scales are safer but slower: the error contracts by (1 − damp −
μ/scale) per step, at least by 1 − damp, so about 1/damp · log(1/tol) steps
are needed. With scale·damp = λ fixed (as `solve` does), the number of steps
grows in proportion to scale/λ.
"""

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from hint_jax import xla_options
from hint_jax.errors import ConfigError, NumericalError
from hint_jax.influence import _chunks
from hint_jax.influence._closure import as_pytree_callable
from hint_jax.influence.info import SolveInfo, make_info
from hint_jax.influence.spectrum import batch_lambda_max

BatchHvp = Callable[[Any, Any], Any]

SAFE_SCALE_FACTOR = 1.1


def lissa_solve(batch_hvp: BatchHvp, v: Any, data: Any, key: jax.Array, *,
                batch_size: int | None = 50, depth: int = 980,
                damping: float | jax.Array = 0.01,
                scale: float | jax.Array = 50.0, repeats: int = 1,
                blowup: float | jax.Array = 10.0) -> tuple[Any, SolveInfo]:
  """Runs the LiSSA recursion; pure and jittable, never raises.

  Each repeat runs the recursion in a `lax.while_loop` that stops early when
  ‖h_j‖ is non-finite or exceeds `blowup` times the bound ‖v‖(1 − (1 −
  damp)^{depth+1})/damp of a convergent recursion. Repeats use independent
  keys and are averaged.

  Args:
    batch_hvp: `batch_hvp(batch, w) -> H_B w` for a batch gathered from
      `data` by example index (e.g. `HessianOperator.batch_hvp`).
    v: right-hand side pytree.
    data: pytree of arrays with a leading example axis n.
    key: PRNG key; step j of repeat r draws its batch from
      `fold_in(split(key, repeats)[r], j)`.
    batch_size: examples per step, drawn with replacement (static); None
      for the whole of `data` at every step (deterministic).
    depth: recursion steps per repeat (static).
    damping: damp, in [0, 1].
    scale: scale > 0.
    repeats: independent runs averaged (static).
    blowup: margin over the convergent-recursion bound before a run is
      declared divergent.

  Returns:
    `(x, info)`: x ≈ (H + scale·damp·I)⁻¹ v, a pytree like `v`, or zeros if
    any repeat diverged (then `info.diverged` is set).

  References:
    Agarwal, Bullins & Hazan, "Second-order stochastic optimization for
    machine learning in linear time", JMLR 2017. Koh & Liang, "Understanding
    black-box predictions via influence functions", ICML 2017.
  """
  n = _chunks.num_examples(data)
  dtype = jnp.result_type(*jax.tree.leaves(v))
  damping = jnp.asarray(damping, dtype)
  scale = jnp.asarray(scale, dtype)
  steps_bound = jnp.where(
      damping > 0, -jnp.expm1((depth + 1) * jnp.log1p(-damping)) / damping,
      depth + 1.0)
  bound = blowup * optax.tree.norm(v) * steps_bound

  def one_repeat(key):
    def cond(state):
      step, _, diverged, _ = state
      return (step < depth) & ~diverged

    def body(state):
      step, h, _, _ = state
      if batch_size is None:
        batch = data
      else:
        idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,),
                                 0, n)
        batch = jax.tree.map(lambda a: a[idx], data)
      h_new = optax.tree.add_scale(
          optax.tree.add_scale(v, 1.0 - damping, h), -1.0 / scale,
          batch_hvp(batch, h))
      h_norm = optax.tree.norm(h_new)
      diverged = ~jnp.isfinite(h_norm) | (h_norm > bound)
      change = optax.tree.norm(optax.tree.sub(h_new, h)) / jnp.where(
          h_norm > 0, h_norm, 1.0)
      return step + 1, h_new, diverged, change

    init = (jnp.asarray(0, jnp.int32), v, jnp.asarray(False),
            jnp.asarray(jnp.inf, dtype))
    return jax.lax.while_loop(cond, body, init)

  def accumulate(carry, key):
    total, min_steps, any_diverged, max_change = carry
    steps, h, diverged, change = one_repeat(key)
    safe_h = jax.tree.map(lambda a: jnp.where(diverged, 0.0, a), h)
    return (optax.tree.add(total, safe_h), jnp.minimum(min_steps, steps),
            any_diverged | diverged, jnp.maximum(max_change, change)), None

  init = (optax.tree.zeros_like(v), jnp.asarray(depth, jnp.int32),
          jnp.asarray(False), jnp.asarray(0.0, dtype))
  (total, steps, diverged, change), _ = jax.lax.scan(
      accumulate, init, jax.random.split(key, repeats))
  x = optax.tree.scale(jnp.where(diverged, 0.0, 1.0 / (scale * repeats)),
                       total)
  info = make_info(dtype, iterations=steps, residual=change,
                   converged=~diverged, diverged=diverged,
                   damping=scale * damping, scale=scale)
  return x, info


_lissa_jit = xla_options.jit(lissa_solve,
                     static_argnames=("batch_size", "depth", "repeats"))
_lambda_max_jit = xla_options.jit(batch_lambda_max,
                          static_argnames=("batch_size", "num_batches",
                                           "num_iters"))


def lissa_auto_scale(batch_hvp: BatchHvp, data: Any, like: Any,
                     key: jax.Array, *, batch_size: int | None = 50,
                     num_batches: int = 4, num_iters: int = 30,
                     factor: float = SAFE_SCALE_FACTOR
                     ) -> tuple[float, float]:
  """Picks a safe LiSSA scale from a power-iteration estimate of λ_max(H_B).

  The estimate is the largest over `num_batches` batches of `batch_size`
  drawn as LiSSA draws them (`batch_lambda_max`), and the scale is `factor`
  times it. Convergence needs λ_max(H_B) < (2 − damp)·scale for every batch;
  scale = 1.1 λ̂_max leaves a margin of about 1.8× for the batches not
  sampled and for power iteration's underestimate.

  That margin assumes the sampled batches are typical. Batch curvature
  can be heavy-tailed, set by a few training examples: on dattri's MNIST
  MLP one image's own Gauss-Newton eigenvalue is 3301 against a median of
  0.002, so 8 sampled batches of 64 gave at most 0.96 while 1 batch in 78
  holds that image (λ_max ≥ 52) and the recursion diverged
  (``experiments/results/influence_bench_cpu/``). Sample many batches
  (hundreds) or bound the tail per example before trusting the scale.

  Args:
    batch_hvp: `batch_hvp(batch, w) -> H_B w`.
    data: pytree with a leading example axis.
    like: pytree like the right-hand side.
    key: PRNG key.
    batch_size: examples per batch; None for all of `data`.
    num_batches: batches to sample.
    num_iters: power iterations per batch.
    factor: safety factor over the estimate.

  Returns:
    `(scale, lambda_max)` as Python floats.

  Raises:
    NumericalError: if the estimate is not finite and positive.
  """
  lam = float(_lambda_max_jit(as_pytree_callable(batch_hvp), data, like, key,
                              batch_size=batch_size, num_batches=num_batches,
                              num_iters=num_iters))
  if not math.isfinite(lam) or lam <= 0:
    raise NumericalError(
        f"cannot pick a LiSSA scale: the power-iteration estimate of the "
        f"largest batch-Hessian eigenvalue is {lam:.4g} (it must be finite "
        "and positive); pass a numeric scale")
  return factor * lam, lam


def _check_args(batch_size, depth, damping, scale, repeats):
  if batch_size is not None and batch_size < 1:
    raise ConfigError(f"batch_size must be positive or None, got {batch_size}")
  if depth < 1 or repeats < 1:
    raise ConfigError(f"depth and repeats must be positive, got depth={depth},"
                      f" repeats={repeats}")
  if not 0.0 <= float(damping) <= 1.0:
    raise ConfigError(f"LiSSA damping must lie in [0, 1], got {damping}")
  if isinstance(scale, str) and scale != "auto":
    raise ConfigError(f"LiSSA scale must be a number or 'auto', got {scale!r}")
  if not isinstance(scale, str) and not float(scale) > 0:
    raise ConfigError(f"LiSSA scale must be positive or 'auto', got {scale}")


def divergence_message(info: SolveInfo, lam: float, damping: float,
                       scale: float) -> str:
  """Explains a LiSSA divergence and names a safe scale."""
  head = (f"LiSSA diverged after {int(info.iterations)} steps "
          f"(scale={scale:.4g}, damp={damping:.4g}): the norm of the "
          "recursion became non-finite or exceeded its bound ‖v‖/damp.")
  if lam > 0 and lam < (2 - damping) * scale:
    return (f"{head} The largest batch-Hessian eigenvalue, about {lam:.4g} "
            "(power iteration), is inside the stable range (2 − damp)·scale ="
            f" {(2 - damping) * scale:.4g}, so the blow-up most likely comes "
            "from negative eigenvalues below −damp·scale = "
            f"{-damping * scale:.4g} (a non-convex loss) or from batches "
            "with a larger λ_max than those sampled: increase damping, use a "
            f"scale ≥ {SAFE_SCALE_FACTOR * lam:.4g} with margin, or restrict "
            "to a convex subset such as the top layer.")
  if lam > 0:
    safe = SAFE_SCALE_FACTOR * lam
    return (f"{head} The largest batch-Hessian eigenvalue is about λ_max ≈ "
            f"{lam:.4g} (power iteration over sampled batches). The recursion"
            " converges only if every batch Hessian's eigenvalues lie below "
            f"(2 − damp)·scale = {(2 - damping) * scale:.4g}, i.e. scale > "
            f"λ_max/(2 − damp) ≈ {lam / (2 - damping):.4g}; use a safe scale ≥"
            f" {safe:.4g} (1.1·λ_max, leaving margin for batches not sampled"
            " and power iteration's underestimate), or scale='auto'. The "
            "fixed point is (H + scale·damp·I)⁻¹v: lower damp to keep "
            "scale·damp.")
  return (f"{head} The dominant batch-Hessian eigenvalue is about {lam:.4g} "
          "(power iteration): a negative eigenvalue below −damp·scale = "
          f"{-damping * scale:.4g} makes the recursion diverge (non-convex "
          "loss); increase damping so that scale·damp > −λ_min, or restrict "
          "to a convex subset such as the top layer.")


def lissa(batch_hvp: BatchHvp, v: Any, data: Any, key: jax.Array, *,
          batch_size: int | None = 50, depth: int = 980,
          damping: float = 0.01, scale: float | str = 50.0, repeats: int = 1,
          power_batches: int = 4, power_iters: int = 30
          ) -> tuple[Any, SolveInfo]:
  """LiSSA with checks: `lissa_solve` compiled once, divergence raised.

  Runs the jitted `lissa_solve` (the batch-HVP callable is passed as a pytree
  argument, so new parameter values do not recompile). With `scale="auto"`
  the scale is first set by `lissa_auto_scale`. On divergence, estimates
  λ_max(H_B) by power iteration and raises with a safe scale.

  Args:
    batch_hvp: `batch_hvp(batch, w) -> H_B w`; a pytree callable (e.g. from
      `HessianOperator`) avoids recompiling for new parameters.
    v: right-hand side pytree.
    data: pytree of arrays with a leading example axis.
    key: PRNG key (split between the scale estimate and the recursion).
    batch_size: examples per step, with replacement; None for all of `data`.
    depth: recursion steps per repeat.
    damping: damp, in [0, 1].
    scale: scale > 0, or "auto".
    repeats: independent runs averaged.
    power_batches: batches for power iteration (auto scale, diagnostics).
    power_iters: power iterations per batch.

  Returns:
    `(x, info)`: x ≈ (H + scale·damp·I)⁻¹ v; info a `SolveInfo`.

  Raises:
    ConfigError: for impossible arguments.
    NumericalError: if the recursion diverges; the message gives the
      estimated λ_max and a safe scale.

  Example:
    >>> op = top_layer_hessian(top, phi_train)
    >>> s, info = lissa(op.batch_hvp, g_val, op.data, jax.random.key(0))
  """
  _check_args(batch_size, depth, damping, scale, repeats)
  batch_hvp = as_pytree_callable(batch_hvp)
  key_run, key_power = jax.random.split(key)
  power_args = dict(batch_size=batch_size, num_batches=power_batches,
                    num_iters=power_iters)
  lam = float("nan")
  if isinstance(scale, str):
    scale, lam = lissa_auto_scale(batch_hvp, data, v, key_power, **power_args)
  x, info = _lissa_jit(batch_hvp, v, data, key_run, batch_size=batch_size,
                       depth=depth, damping=damping, scale=scale,
                       repeats=repeats)
  if bool(info.diverged):
    if math.isnan(lam):
      lam = float(_lambda_max_jit(batch_hvp, data, v, key_power, **power_args))
    raise NumericalError(divergence_message(info, lam, float(damping),
                                            float(scale)))
  return x, info._replace(lambda_max=jnp.asarray(lam, info.residual.dtype))
