"""Influence scores: s_test, I_up, I_pert and the leave-one-out prediction.

Conventions (Koh & Liang 2017; HINT Eqs. 8-9). The training objective is
R(θ) = (1/n) Σ_i ℓ(z_i, θ) (+ an optional L2 term), θ̂ its minimiser and H
its Hessian at θ̂ (damped: H + λI). L_val is the MEAN loss over the validation
set D_val. Then

  s_test = (H + λI)⁻¹ ∇_θ L_val(θ̂),
  I_up(z)   = −∇_θ L_valᵀ H⁻¹ ∇_θ ℓ(z)   = −⟨∇_θ ℓ(z), s_test⟩,
  I_pert(z) = −∇_x ⟨∇_θ ℓ(z), s_test⟩     (shape of x; s_test held fixed).

Up-weighting z by ε (R + ε ℓ(z)) changes L_val at rate I_up(z); removing z
from the training set is ε = −1/n, so

  ΔL_val(remove z_i) ≈ −I_up(z_i)/n = (1/n)⟨∇_θ ℓ(z_i), s_test⟩

(`predicted_loo_change`; retraining keeps the 1/n normalisation and any L2
term). HINT ranks by |I_up|, so sign and 1/n do not matter there, and its
noise step uses I_pert without 1/n.

References:
  Koh & Liang, "Understanding black-box predictions via influence
  functions", ICML 2017. HINT: Healthy Influential-Noise based Training
  (docs/paper-hint.txt), Eqs. 8-9 and Algorithms 1-3.
"""

from typing import Any, Callable

import jax

from hint_jax import xla_options
from hint_jax.influence import grads
from hint_jax.influence._closure import as_pytree_callable
from hint_jax.influence.info import SolveInfo
from hint_jax.influence.operator import HessianOperator
from hint_jax.influence.solve import solve

Loss = Callable[..., jax.Array]

_mean_grad_jit = xla_options.jit(grads.mean_grad, static_argnames=("chunk_size",))
_grad_dot_jit = xla_options.jit(grads.per_example_grad_dot,
                        static_argnames=("chunk_size",))
_mixed_jit = xla_options.jit(grads.mixed_input_grad, static_argnames=("chunk_size",))


def s_test(hessian: HessianOperator, loss_one: Loss, params: Any,
           x_val: Any, y_val: Any, *, chunk_size: int | None = None,
           **solver_options: Any) -> tuple[Any, SolveInfo]:
  """Returns s_test = (H + λI)⁻¹ ∇_θ L_val and the solver's diagnostics.

  Args:
    hessian: H of the training objective w.r.t. the same `params`:
      `loss_hessian(loss_top, top, x_train, y_train)` (autodiff) or
      `top_layer_hessian(top, phi_train)` (closed form over features).
    loss_one: per-example loss of `params` (`restrict_loss(...)` for θ_top,
      or `top_loss_one` with features as x).
    params: the (selected) parameters θ.
    x_val: validation inputs (or features), leading axis n_val.
    y_val: validation labels (n_val,).
    chunk_size: examples per chunk for the validation gradient.
    **solver_options: forwarded to `solve` (method, damping, key, tol,
      maxiter, batch_size, depth, scale, repeats, check).

  Returns:
    `(s, info)`: s a pytree like `params`, info a `SolveInfo`.

  Raises:
    ConfigError, NumericalError: see `solve`.

  References:
    Koh & Liang, ICML 2017, Sec. 2.2 (s_test); HINT Eqs. 8-9.

  Example:
    >>> op = top_layer_hessian(top, phi_train)
    >>> s, info = s_test(op, top_loss_one, top, phi_val, y_val,
    ...                  method="lissa", key=jax.random.key(0))
  """
  g_val = _mean_grad_jit(as_pytree_callable(loss_one), params, x_val, y_val,
                         chunk_size=chunk_size)
  return solve(hessian, g_val, **solver_options)


def influence_up(loss_one: Loss, params: Any, x: Any, y: Any, s: Any, *,
                 chunk_size: int | None = None) -> jax.Array:
  """Returns I_up(z_i) = −⟨∇_θ ℓ(z_i), s_test⟩ for every example.

  Forward mode (`per_example_grad_dot`): no per-example gradient is formed.

  Args:
    loss_one: per-example loss of `params`.
    params: the (selected) parameters θ.
    x: inputs (or features), leading axis n.
    y: labels (n,).
    s: s_test, a pytree like `params`.
    chunk_size: examples per vmapped chunk.

  Returns:
    Array (n,).

  References:
    Koh & Liang, ICML 2017, Eq. 2 (I_up,loss); HINT Eq. 8.
  """
  return -_grad_dot_jit(as_pytree_callable(loss_one), params, x, y, s,
                        chunk_size=chunk_size)


def predicted_loo_change(up: jax.Array, n_train: int) -> jax.Array:
  """Predicted change of the mean validation loss when z_i is removed.

  Args:
    up: I_up values (from `influence_up` or `top_layer_up_scores`).
    n_train: n, the size of the training set the objective averages over.

  Returns:
    ΔL_val ≈ −I_up / n = (1/n)⟨∇_θ ℓ(z_i), s_test⟩, shaped like `up`.
  """
  return -up / n_train


def influence_pert(loss_one: Loss, params: Any, x: jax.Array, y: Any, s: Any,
                   *, chunk_size: int | None = None) -> jax.Array:
  """Returns I_pert(z_i) = −∇_x ⟨∇_θ ℓ(z_i), s_test⟩ for every example.

  With θ = θ_top and `loss_one = restrict_loss(full_loss, rebuild)`, ∇_x runs
  through the whole network while ∇_θ is w.r.t. θ_top only (HINT Eq. 9).
  This is the authors' `infl` noise direction (no 1/n).

  Args:
    loss_one: per-example loss of `params`, differentiable in x.
    params: the (selected) parameters θ.
    x: floating-point inputs, leading axis n.
    y: labels (n,).
    s: s_test, a pytree like `params` (treated as a constant).
    chunk_size: examples per vmapped chunk.

  Returns:
    Array shaped like `x`.

  References:
    Koh & Liang, ICML 2017, Sec. 2.2 (I_pert,loss); HINT Eq. 9.
  """
  return -_mixed_jit(as_pytree_callable(loss_one), params, x, y,
                     jax.lax.stop_gradient(s), chunk_size=chunk_size)
