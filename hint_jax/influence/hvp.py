"""Hessian-vector products by forward-over-reverse autodiff."""

from typing import Any, Callable

import jax
import optax

from hint_jax.influence._closure import as_pytree_callable, closure


def hvp(loss_fn: Callable[..., jax.Array], params: Any, v: Any,
        *args: Any) -> Any:
  """Returns the Hessian-vector product ∇²_θ loss_fn(θ, *args) · v.

  Computed forward-over-reverse, `jvp(grad(loss_fn), (θ,), (v,))`: one
  forward-mode pass through the gradient, about the cost of two gradients,
  and the Hessian is never formed.

  Args:
    loss_fn: scalar function `loss_fn(params, *args)`.
    params: parameter pytree θ at which the Hessian is taken.
    v: pytree with the structure of `params` (cast to its dtypes).
    *args: further arguments of `loss_fn` (e.g. a batch `x, y`).

  Returns:
    H v, a pytree like `params`.

  References:
    Pearlmutter, "Fast exact multiplication by the Hessian", Neural
    Computation 1994.
  """
  grad_fn = lambda p: jax.grad(loss_fn)(p, *args)
  return jax.jvp(grad_fn, (params,), (optax.tree.cast_like(v, params),))[1]


def _hvp_at(loss_fn, params, args, v):
  return hvp(loss_fn, params, v, *args)


def make_hvp(loss_fn: Callable[..., jax.Array], params: Any,
             *args: Any) -> Callable[[Any], Any]:
  """Returns the linear operator `v -> hvp(loss_fn, params, v, *args)`.

  The operator is a pytree callable holding `params` and `args` as leaves,
  so solvers jitted with it as an argument do not retrace for new values.

  Args:
    loss_fn: scalar function `loss_fn(params, *args)`.
    params: parameter pytree at which the Hessian is taken.
    *args: further arguments of `loss_fn`.

  Returns:
    `matvec(v) -> H v`.
  """
  return closure(_hvp_at, as_pytree_callable(loss_fn), params, args)
