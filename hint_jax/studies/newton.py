"""L2-regularised softmax regression over fixed features, solved exactly.

The influence-accuracy study needs the minimiser of a strictly convex
objective, and of hundreds of slightly modified copies of it, to machine
precision. With augmented features φ̃_j = [1, φ_j] (D = d + 1) and
parameters Θ of shape (D, K) (row 0 the bias, rows 1.. the kernel: the
`ravel_pytree` order of θ_top = {"bias", "kernel"}), the objective is

  R(Θ) = (1/n) Σ_j ℓ(φ̃_j, y_j; Θ) + (l2/2)‖Θ‖²,   ℓ = softmax cross-entropy,

which is `top_layer_objective(top, φ, y, l2=l2, l2_bias=True)`: the bias is
penalised too, since softmax is invariant to adding one constant to every
logit and an unpenalised bias would leave H singular along that direction.

A *modified* objective adds a few weighted terms (`Mods`):

  R_m(Θ) = R(Θ) + (1/n) Σ_r c_r ℓ(ψ_r, t_r; Θ).

c = −1 on a training point gives it weight 0 while keeping the 1/n
normalisation (leave-one-out retraining; this matches the first-order
influence formula exactly), and (−1 at φ̃(x_i), +1 at φ̃(x_i + δ)) replaces a
training input by a perturbed copy.

Minimisers are found by Newton's method whose linear systems are solved by
preconditioned conjugate gradients: the preconditioner is a Cholesky factor of
the dense Hessian of R at a reference point (built once, in float32 blocks),
corrected for each modified objective by a Woodbury update with the
modification's exact rank-K Hessian terms. Near the reference point that is
almost the exact Hessian, so each Newton step takes one to three CG
iterations. Gradients are exact (closed form, in the working precision,
float64 in the study); the Hessian-vector products inside the CG solves use
float32 data (an inexact Newton matrix). Convergence is judged by the exact
gradient norm only, so neither the preconditioner nor the float32 products
affect the answer, only the number of steps.

Everything here is pure JAX; batched functions take a leading axis B over
independent problems that share the training features (so full-data products
are single (n, D) × (D, B·K) matrix products).
"""

import functools

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from hint_jax import xla_options

_HIGHEST = jax.lax.Precision.HIGHEST


class Problem(NamedTuple):
  """The training set of the objective.

  Attributes:
    phi_aug: augmented features (n, D), column 0 all ones, in the working
      precision (float64 for the study).
    phi_lo: the same in float32, for Hessian-vector products inside the
      inner CG solves (an inexact Newton matrix changes the speed of
      convergence, not the solution, which is fixed by the exact gradient).
    y: integer labels (n,).
    l2: the L2 coefficient (scalar array).
  """
  phi_aug: jax.Array
  phi_lo: jax.Array
  y: jax.Array
  l2: jax.Array


def make_problem(phi: jax.Array, y, l2: float) -> Problem:
  """`Problem` from features (n, d) (their dtype is the working one)."""
  phi_aug = augment(jnp.asarray(phi))
  return Problem(phi_aug, phi_aug.astype(jnp.float32),
                 jnp.asarray(y, jnp.int32), jnp.asarray(l2, phi_aug.dtype))


class Mods(NamedTuple):
  """Extra weighted terms (1/n) Σ_r c_r ℓ(ψ_r, t_r) of a modified objective.

  Attributes:
    psi: augmented features (R, D) (leading batch axis B when batched).
    labels: integer labels (R,).
    coef: weights c_r (R,); 0 makes a term inactive.
  """
  psi: jax.Array
  labels: jax.Array
  coef: jax.Array


def augment(phi: jax.Array) -> jax.Array:
  """Prepends a column of ones (the bias input) to features (..., d)."""
  return jnp.concatenate([jnp.ones_like(phi[..., :1]), phi], axis=-1)


def to_top(theta: jax.Array) -> dict:
  """Θ (D, K) -> {"kernel": (d, K), "bias": (K,)}."""
  return {"kernel": theta[1:], "bias": theta[0]}


def from_top(top: dict) -> jax.Array:
  """{"kernel": (d, K), "bias": (K,)} -> Θ (D, K)."""
  return jnp.concatenate([top["bias"][None], top["kernel"]], axis=0)


def no_mods(num_terms: int, dim: int, dtype) -> Mods:
  """`num_terms` inactive terms (an unmodified objective)."""
  return Mods(jnp.zeros((num_terms, dim), dtype),
              jnp.zeros((num_terms,), jnp.int32),
              jnp.zeros((num_terms,), dtype))


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def objective(theta: jax.Array, problem: Problem, mods: Mods) -> jax.Array:
  """R_m(Θ) for one problem."""
  n = problem.phi_aug.shape[0]
  data = jnp.sum(_ce(jnp.matmul(problem.phi_aug, theta, precision=_HIGHEST),
                     problem.y))
  extra = jnp.sum(mods.coef * _ce(mods.psi @ theta, mods.labels))
  return (data + extra) / n + 0.5 * problem.l2 * jnp.sum(theta ** 2)


def gradient(theta: jax.Array, problem: Problem, mods: Mods):
  """∇R_m(Θ) (D, K) in closed form, and the data probabilities (n, K).

  ∇R_m = (1/n) [Φ̃ᵀ (P − Y) + Σ_r c_r ψ_r (p_r − e_{t_r})ᵀ] + l2 Θ.
  """
  n, k = problem.phi_aug.shape[0], theta.shape[1]
  probs = jax.nn.softmax(
      jnp.matmul(problem.phi_aug, theta, precision=_HIGHEST), axis=-1)
  resid = probs - jax.nn.one_hot(problem.y, k, dtype=probs.dtype)
  g = jnp.matmul(problem.phi_aug.T, resid, precision=_HIGHEST)
  p_mod = jax.nn.softmax(mods.psi @ theta, axis=-1)
  r_mod = (p_mod - jax.nn.one_hot(mods.labels, k, dtype=p_mod.dtype))
  g = g + mods.psi.T @ (mods.coef[:, None] * r_mod)
  return g / n + problem.l2 * theta, probs


def _jac_t_jac(p, u):
  """(diag(p) − p pᵀ) u for each row."""
  return p * (u - jnp.sum(p * u, axis=-1, keepdims=True))


def hvp(theta: jax.Array, probs: jax.Array, problem: Problem, mods: Mods,
        v: jax.Array) -> jax.Array:
  """∇²R_m(Θ) v for v (D, K).

  ∇²R_m v = (1/n) [Φ̃ᵀ J(Φ̃ v) + Σ_r c_r ψ_r J_r(ψ_rᵀ v)] + l2 v, with J the
  per-row softmax Jacobian diag(p) − p pᵀ and `probs` = softmax(Φ̃ Θ). The
  data part runs in the dtype of `probs`: float32 probabilities use
  `problem.phi_lo` (fast, for Newton directions), float64 ones
  `problem.phi_aug` (exact, for s_test).
  """
  n = problem.phi_aug.shape[0]
  phi = problem.phi_lo if probs.dtype == jnp.float32 else problem.phi_aug
  u = jnp.matmul(phi, v.astype(probs.dtype), precision=_HIGHEST)
  hv = jnp.matmul(phi.T, _jac_t_jac(probs, u),
                  precision=_HIGHEST).astype(v.dtype)
  p_mod = jax.nn.softmax(mods.psi @ theta, axis=-1)
  r_mod = _jac_t_jac(p_mod, mods.psi @ v) * mods.coef[:, None]
  return (hv + mods.psi.T @ r_mod) / n + problem.l2 * v


@functools.partial(xla_options.jit, static_argnames=("dtype",))
def dense_hessian(theta: jax.Array, problem: Problem,
                  dtype=jnp.float32) -> jax.Array:
  """The dense Hessian of the unmodified R at Θ, shape (D·K, D·K).

  Block (k, l) is (1/n) Φ̃ᵀ diag(c_kl) Φ̃ with c_kl = p_k δ_kl − p_k p_l: the
  K(K+1)/2 distinct blocks cost as many (D, n) × (n, D) products, computed
  in `dtype` (float32 by default: this is a preconditioner). Rows and
  columns are in the order of `Θ.ravel()`.
  """
  phi = problem.phi_aug.astype(dtype)
  n, dim = phi.shape
  k = theta.shape[1]
  probs = jax.nn.softmax(
      jnp.matmul(problem.phi_aug, theta, precision=_HIGHEST), -1).astype(dtype)
  pairs = [(a, b) for a in range(k) for b in range(a, k)]
  rows = jnp.asarray([a for a, _ in pairs])
  cols = jnp.asarray([b for _, b in pairs])

  def block(pair):
    a, b = pair
    c = probs[:, a] * ((a == b).astype(dtype) - probs[:, b])
    return jnp.matmul(phi.T, phi * (c / n)[:, None], precision=_HIGHEST)

  blocks = jax.lax.map(block, (rows, cols))
  full = jnp.zeros((k, k, dim, dim), dtype)
  full = full.at[rows, cols].set(blocks).at[cols, rows].set(
      jnp.swapaxes(blocks, 1, 2))
  h = jnp.transpose(full, (2, 0, 3, 1)).reshape(dim * k, dim * k)
  return h + problem.l2.astype(dtype) * jnp.eye(dim * k, dtype=dtype)


@xla_options.jit
def cholesky(h: jax.Array) -> jax.Array:
  """Lower Cholesky factor of a dense Hessian (in its dtype)."""
  return jnp.linalg.cholesky(h)


class Woodbury(NamedTuple):
  """Per-problem low-rank correction of the Cholesky preconditioner.

  For M = H₀ + V C Vᵀ: M⁻¹ r = H₀⁻¹ r − Z C S⁻¹ Zᵀ r with Z = H₀⁻¹ V and
  S = I + Vᵀ Z C (no C⁻¹, so inactive terms with c = 0 are allowed).
  """
  z: jax.Array       # (P, R·K)
  c: jax.Array       # (R·K,)
  s_inv: jax.Array   # (R·K, R·K)


def _cho(chol, r):
  return jax.scipy.linalg.cho_solve((chol, True),
                                    r.astype(chol.dtype)).astype(r.dtype)


def woodbury(chol: jax.Array, theta: jax.Array, mods: Mods,
             n: int) -> Woodbury:
  """The exact Hessian of the modification terms at Θ, as a `Woodbury`.

  Term r contributes (c_r/n) (ψ_r ψ_rᵀ) ⊗ (diag(p) − p pᵀ) = (c_r/n) U Uᵀ
  with U = ψ_r ⊗ B (D·K, K), B = diag(√p) − p √pᵀ (B Bᵀ = diag(p) − p pᵀ).
  """
  k = theta.shape[1]
  p = jax.nn.softmax(mods.psi @ theta, axis=-1)              # (R, K)
  sq = jnp.sqrt(p)
  b = (jnp.eye(k, dtype=p.dtype)[None] - p[:, :, None]) * sq[:, None, :]
  u = mods.psi[:, :, None, None] * b[:, None, :, :]          # (R, D, K, K)
  v = jnp.transpose(u, (1, 2, 0, 3)).reshape(-1, u.shape[0] * k)
  c = jnp.repeat(mods.coef / n, k)
  z = _cho(chol, v)
  s = jnp.eye(c.size, dtype=v.dtype) + (v.T @ z) * c[None, :]
  return Woodbury(z, c, jnp.linalg.inv(s))


@functools.partial(xla_options.jit, static_argnames=("n",))
def woodbury_batch(chol: jax.Array, theta: jax.Array, mods: Mods,
                   n: int) -> Woodbury:
  """`woodbury` for a batch of `Mods` (leading axis B) at one Θ."""
  return jax.vmap(woodbury, (None, None, 0, None))(chol, theta, mods, n)


def _precondition(chol: jax.Array, wb: Woodbury, r: jax.Array) -> jax.Array:
  """M_b⁻¹ r_b for a batch r (B, P): one Cholesky solve with B columns."""
  z0 = _cho(chol, r.T).T
  zr = jnp.einsum("bpr,bp->br", wb.z, r)
  corr = jnp.einsum("brs,bs->br", wb.s_inv, zr) * wb.c
  return z0 - jnp.einsum("bpr,br->bp", wb.z, corr)


def _pcg(matvec, precond, rhs, tol, maxiter):
  """Flexible preconditioned CG on a batch of flat systems (B, P).

  Runs until every row has ‖r‖ ≤ tol_b·‖rhs_b‖ (tol of shape (B,)) or
  `maxiter` iterations. β is Polak-Ribière, which tolerates a slightly
  inexact (float32) preconditioner.
  Returns (x, relative residuals, iterations).
  """
  dot = lambda a, b: jnp.sum(a * b, axis=-1)
  rhs_norm = jnp.linalg.norm(rhs, axis=-1)
  target = tol * jnp.where(rhs_norm > 0, rhs_norm, 1.0)
  x = jnp.zeros_like(rhs)
  z = precond(rhs)
  state = (x, rhs, z, z, dot(rhs, z), jnp.asarray(0))

  def cond(state):
    _, r, _, _, _, it = state
    return (it < maxiter) & jnp.any(jnp.linalg.norm(r, axis=-1) > target)

  def body(state):
    x, r, z, p, rz, it = state
    active = (jnp.linalg.norm(r, axis=-1) > target)[:, None]
    ap = matvec(p)
    alpha = rz / jnp.where(active[:, 0], dot(p, ap), 1.0)
    x_new = x + alpha[:, None] * p
    r_new = r - alpha[:, None] * ap
    z_new = precond(r_new)
    rz_new = dot(r_new, z_new)
    beta = dot(r_new - r, z_new) / jnp.where(active[:, 0], rz, 1.0)  # P-R
    p_new = z_new + beta[:, None] * p
    keep = lambda old, new: jnp.where(active, new, old)
    return (keep(x, x_new), keep(r, r_new), keep(z, z_new), keep(p, p_new),
            jnp.where(active[:, 0], rz_new, rz), it + 1)

  x, r, _, _, _, it = jax.lax.while_loop(cond, body, state)
  rel = jnp.linalg.norm(r, axis=-1) / jnp.where(rhs_norm > 0, rhs_norm, 1.0)
  return x, rel, it


@xla_options.jit
def evaluate(theta: jax.Array, problem: Problem, mods: Mods):
  """Batched `gradient`: (grads (B, D, K), float32 probs (B, n, K), norms)."""
  grads, probs = jax.vmap(gradient, (0, None, 0))(theta, problem, mods)
  norms = jnp.linalg.norm(grads.reshape(len(grads), -1), axis=-1)
  return grads, probs.astype(jnp.float32), norms


@functools.partial(xla_options.jit, static_argnames=("maxiter",))
def solve_hessian(theta: jax.Array, problem: Problem, chol: jax.Array,
                  rhs: jax.Array, *, tol: float = 1e-13, maxiter: int = 200):
  """Solves ∇²R(Θ) s = v for a batch of right-hand sides, in float64.

  The unmodified objective's Hessian at one Θ, with exact (working-precision)
  products; used for s_test.

  Args:
    theta: (D, K).
    problem: the training set.
    chol: Cholesky factor of a reference dense Hessian (preconditioner).
    rhs: (B, D, K).
    tol: relative residual target.
    maxiter: CG iteration cap.

  Returns:
    (s (B, D, K), relative residuals (B,), iterations).
  """
  b = rhs.shape[0]
  mods = no_mods(1, theta.shape[0], theta.dtype)
  _, probs = gradient(theta, problem, mods)
  matvec = lambda v: jax.vmap(hvp, (None, None, None, None, 0))(
      theta, probs, problem, mods, v.reshape(rhs.shape)).reshape(b, -1)
  precond = lambda r: _cho(chol, r.T).T
  s, rel, iters = _pcg(matvec, precond, rhs.reshape(b, -1),
                       jnp.full((b,), tol, rhs.dtype), maxiter)
  return s.reshape(rhs.shape), rel, iters


@functools.partial(xla_options.jit, static_argnames=("maxiter",))
def newton_direction(theta, grads, probs_lo, problem: Problem, mods: Mods,
                     chol: jax.Array, wb: "Woodbury", tol: jax.Array, *,
                     maxiter: int):
  """Solves ∇²R_m Δ = −∇R_m for a batch by preconditioned CG.

  Args:
    theta: (B, D, K) current iterates.
    grads, probs_lo: `evaluate(theta, ...)`.
    problem: the shared training set.
    mods: batched `Mods`.
    chol: Cholesky factor of a reference dense Hessian (P, P).
    wb: batched `Woodbury` corrections for `mods`.
    tol: (B,) relative residual targets.
    maxiter: CG iteration cap.

  Returns:
    (Δ (B, D, K), relative residuals (B,), CG iterations).
  """
  b, dim, k = theta.shape

  def matvec(v_flat):
    v = v_flat.reshape(b, dim, k)
    hv = jax.vmap(hvp, (0, 0, None, 0, 0))(theta, probs_lo, problem, mods, v)
    return hv.reshape(b, -1)

  step, rel, iters = _pcg(matvec, lambda r: _precondition(chol, wb, r),
                          -grads.reshape(b, -1), tol, maxiter)
  return step.reshape(theta.shape), rel, iters


class NewtonInfo(NamedTuple):
  """Diagnostics of `newton`.

  Attributes:
    grad_norm: final ‖∇R_m‖ per problem (B,).
    initial_grad_norm: ‖∇R_m‖ at the start (B,).
    max_grad_norms: the largest gradient norm after each step.
    cg_iterations: inner CG iterations of each step.
    converged: every final gradient norm ≤ gtol.
  """
  grad_norm: jax.Array
  initial_grad_norm: jax.Array
  max_grad_norms: list
  cg_iterations: list
  converged: bool


def newton(theta0: jax.Array, problem: Problem, mods: Mods, chol: jax.Array,
           wb: "Woodbury", *, gtol: float = 1e-14, max_steps: int = 10,
           cg_tol: float = 1e-4, cg_maxiter: int = 100):
  """Newton's method on a batch of modified objectives, to ‖∇R_m‖ ≤ gtol.

  Steps are full (no line search): the objectives are strictly convex and
  the iterates start close to their optima (warm starts), where Newton
  converges quadratically. The inner CG tolerance is min(1e-3, ‖∇R_m‖)
  (quadratic forcing). A step is kept for a problem only if it lowers that
  problem's gradient norm; iteration stops when every norm is ≤ gtol, when
  no norm above gtol decreased (the float64 rounding floor), or after
  `max_steps`.

  Args:
    theta0: (B, D, K) starting points.
    problem: the shared training set.
    mods: batched `Mods`.
    chol: reference Cholesky factor (`cholesky(dense_hessian(...))`).
    wb: batched `Woodbury` (`woodbury_batch`).
    gtol: absolute gradient-norm target.
    max_steps: Newton step cap.
    cg_maxiter: inner CG iteration cap.

  Returns:
    (theta, NewtonInfo).
  """
  theta = theta0
  grads, probs, norms = evaluate(theta, problem, mods)
  first, max_norms, cg_iters = norms, [], []
  for _ in range(max_steps):
    if float(jnp.max(norms)) <= gtol:
      break
    tol = jnp.full_like(norms, cg_tol)
    step, _, iters = newton_direction(theta, grads, probs, problem, mods,
                                      chol, wb, tol, maxiter=cg_maxiter)
    new_grads, new_probs, new_norms = evaluate(theta + step, problem, mods)
    improved = new_norms < norms
    keep = lambda old, new: jnp.where(
        improved.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
    theta, grads, probs = (keep(theta, theta + step), keep(grads, new_grads),
                           keep(probs, new_probs))
    cg_iters.append(int(iters))
    progressed = bool(jnp.any(improved & (norms > gtol)))
    norms = jnp.minimum(norms, new_norms)
    max_norms.append(float(jnp.max(norms)))
    if not progressed:
      break
  return theta, NewtonInfo(norms, first, max_norms, cg_iters,
                           bool(jnp.max(norms) <= gtol))


def lbfgs(theta0: jax.Array, problem: Problem, *, max_iter: int = 500,
          gtol: float = 1e-6, dtype=jnp.float32):
  """L-BFGS warm start of the unmodified objective, in `dtype`.

  Returns:
    (theta in the dtype of theta0, iterations, final gradient norm).
  """
  prob = problem._replace(phi_aug=problem.phi_aug.astype(dtype),
                          l2=problem.l2.astype(dtype))
  mods = no_mods(1, prob.phi_aug.shape[1], dtype)
  fun = lambda t: objective(t, prob, mods)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  @xla_options.jit
  def run(theta):
    def step(carry):
      theta, state, _, it = carry
      value, grad = value_and_grad(theta, state=state)
      updates, state = opt.update(grad, state, theta, value=value, grad=grad,
                                  value_fn=fun)
      theta = optax.apply_updates(theta, updates)
      return theta, state, optax.tree.norm(grad), it + 1

    def cond(carry):
      _, _, norm, it = carry
      return (it < max_iter) & (norm > gtol)

    init = (theta, opt.init(theta), jnp.asarray(jnp.inf, dtype),
            jnp.asarray(0))
    theta, _, _, it = jax.lax.while_loop(cond, step, init)
    return theta, it, optax.tree.norm(gradient(theta, prob, mods)[0])

  theta, it, norm = run(theta0.astype(dtype))
  return theta.astype(theta0.dtype), int(it), float(norm)
