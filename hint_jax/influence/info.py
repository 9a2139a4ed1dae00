"""Diagnostics returned by every inverse-HVP solver."""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SolveInfo(NamedTuple):
  """What a solver of (H + λI) x = v reports; a pytree of scalar arrays.

  Attributes:
    iterations: CG iterations; LiSSA recursion steps run (the fewest over
      repeats, so the step at which a divergence was caught); 0 for direct.
    residual: CG and direct: the relative residual ‖(H + λI)x − v‖ / ‖v‖,
      recomputed at exit. LiSSA: the relative size of the last update,
      ‖h_J − h_{J−1}‖ / ‖h_J‖ (largest over repeats); with sampled batches it
      measures batch noise as much as convergence.
    converged: CG: the residual met `tol`; LiSSA: ran its full depth without
      blowing up; direct: the result is finite.
    diverged: non-finite values, a norm blow-up (LiSSA) or a non-positive
      curvature p·(H + λI)p ≤ 0 (CG). The returned solution is then not to be
      used (LiSSA returns zeros).
    damping: the λ of the system actually solved (LiSSA: scale · damp).
    scale: LiSSA's scale; NaN for other solvers.
    lambda_max: power-iteration estimate of the largest batch-Hessian
      eigenvalue where one was computed (LiSSA with scale="auto", or after a
      divergence); NaN otherwise.
  """
  iterations: jax.Array
  residual: jax.Array
  converged: jax.Array
  diverged: jax.Array
  damping: jax.Array
  scale: jax.Array
  lambda_max: jax.Array


def make_info(dtype, *, iterations=0, residual=jnp.nan, converged=True,
              diverged=False, damping=0.0, scale=jnp.nan,
              lambda_max=jnp.nan) -> SolveInfo:
  """Builds a `SolveInfo` with the given fields as arrays of fixed dtypes."""
  return SolveInfo(
      iterations=jnp.asarray(iterations, jnp.int32),
      residual=jnp.asarray(residual, dtype),
      converged=jnp.asarray(converged, bool),
      diverged=jnp.asarray(diverged, bool),
      damping=jnp.asarray(damping, dtype),
      scale=jnp.asarray(scale, dtype),
      lambda_max=jnp.asarray(lambda_max, dtype))
