"""One entry point for (H + λI)⁻¹ v by CG, LiSSA or a direct solve."""

import math
from typing import Any

import jax
import jax.numpy as jnp

from hint_jax import xla_options
from hint_jax.errors import ConfigError, NumericalError
from hint_jax.influence.cg import cg_solve
from hint_jax.influence.direct import direct_solve_dense
from hint_jax.influence.info import SolveInfo
from hint_jax.influence.lissa import lissa, lissa_auto_scale
from hint_jax.influence.operator import HessianOperator

METHODS = ("cg", "lissa", "direct")


def _cg(hessian, v, damping, tol, *, maxiter):
  return cg_solve(hessian.matvec, v, damping, tol=tol, maxiter=maxiter)


def _direct(hessian, v, damping):
  return direct_solve_dense(hessian.dense(), v, damping)


_cg_jit = xla_options.jit(_cg, static_argnames=("maxiter",))
_direct_jit = xla_options.jit(_direct)


def solve(hessian: HessianOperator, v: Any, *, method: str = "cg",
          damping: float = 0.5, key: jax.Array | None = None,
          tol: float = 1e-6, maxiter: int | None = None,
          batch_size: int | None = 50, depth: int = 980,
          scale: float | str = 50.0, repeats: int = 1,
          check: bool = True) -> tuple[Any, SolveInfo]:
  """Returns x ≈ (H + λI)⁻¹ v by the chosen method, compiled once per shape.

  `damping` is the λ of the system for every method, so switching methods
  changes only how the same x is found. For LiSSA the per-step damp is
  λ / scale (the authors' damp = 0.01 at scale = 50 is λ = 0.5, the default);
  with `scale="auto"` the scale is max(1.1·λ̂_max(H_B), λ), keeping damp ≤ 1.
  That is the smallest safe scale: fastest contraction, but each step then
  weighs a single batch heavily, so with sampled batches the estimate is
  noisier than with a larger scale (the authors' scale = 50, λ = 0.5, depth
  980 averages over many batches and leaves a bias of (1 − 0.01)^980 ≈ 5e-5).

  Args:
    hessian: a `HessianOperator` (`loss_hessian` or `top_layer_hessian`).
    v: right-hand side pytree.
    method: "cg" (deterministic, `hessian.matvec`), "lissa" (stochastic,
      `hessian.batch_hvp` on batches of `hessian.data`) or "direct" (dense
      Cholesky of `hessian.dense()`; small parameter subsets only).
    damping: λ > 0 for LiSSA, ≥ 0 otherwise.
    key: PRNG key; required for LiSSA.
    tol: CG relative residual tolerance.
    maxiter: CG iteration cap (None: 10 × unknowns).
    batch_size: LiSSA batch size (None: full data each step).
    depth: LiSSA recursion steps.
    scale: LiSSA scale, or "auto".
    repeats: LiSSA repeats.
    check: raise `NumericalError` if the solve diverged or CG did not reach
      `tol`; with False, inspect `info` instead (LiSSA always raises on
      divergence).

  Returns:
    `(x, info)`: x a pytree like `v`, info a `SolveInfo`.

  Raises:
    ConfigError: for an unknown method or impossible arguments.
    NumericalError: as described under `check`.
  """
  if method not in METHODS:
    raise ConfigError(f"unknown solver {method!r}; choose one of {METHODS}")
  if not damping >= 0:
    raise ConfigError(f"damping must be non-negative, got {damping}")
  if method == "cg":
    x, info = _cg_jit(hessian, v, damping, tol, maxiter=maxiter)
  elif method == "direct":
    x, info = _direct_jit(hessian, v, damping)
  else:
    if key is None:
      raise ConfigError("LiSSA needs a PRNG key (key=jax.random.key(...))")
    if not damping > 0:
      raise ConfigError("LiSSA needs damping > 0")
    lam = float("nan")
    if isinstance(scale, str):
      if scale != "auto":
        raise ConfigError(f"scale must be a number or 'auto', got {scale!r}")
      key, key_scale = jax.random.split(key)
      scale, lam = lissa_auto_scale(hessian.batch_hvp, hessian.data, v,
                                    key_scale, batch_size=batch_size)
      scale = max(scale, damping)
    elif not float(scale) >= damping:
      raise ConfigError(f"LiSSA needs scale ≥ damping (damp = λ/scale ≤ 1); "
                        f"got scale={scale}, damping={damping}")
    x, info = lissa(hessian.batch_hvp, v, hessian.data, key,
                    batch_size=batch_size, depth=depth,
                    damping=damping / float(scale), scale=scale,
                    repeats=repeats)
    if not math.isnan(lam):
      info = info._replace(lambda_max=jnp.asarray(lam, info.residual.dtype))
  if check:
    _raise_on_failure(method, info, tol)
  return x, info


def _raise_on_failure(method: str, info: SolveInfo, tol: float) -> None:
  if bool(info.diverged):
    hint = {"cg": "H + λI is not positive definite or produced non-finite "
                  "values (increase damping or check the loss)",
            "direct": "the dense solve produced non-finite values"}
    raise NumericalError(f"{method} solve failed after "
                         f"{int(info.iterations)} iterations: "
                         f"{hint.get(method, 'diverged')}")
  if method == "cg" and not bool(info.converged):
    raise NumericalError(
        f"CG did not reach relative residual {tol:g} in {int(info.iterations)}"
        f" iterations (residual {float(info.residual):.3g}); raise maxiter or "
        "damping, or loosen tol")
