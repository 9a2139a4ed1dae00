"""Influence functions in pure JAX: derivatives, inverse-HVP solvers, scores.

Everything here is a function of parameter pytrees and per-example losses
`loss_one(params, x, y) -> scalar`; nothing imports Flax. Typical use for
HINT, with θ_top the final Dense layer:

  top, rebuild = restrict(params, select_top)
  loss_top = restrict_loss(loss_one, rebuild)        # body closed over
  op = top_layer_hessian(top, phi_train)             # or loss_hessian(...)
  s, info = s_test(op, top_loss_one, top, phi_val, y_val, method="cg")
  up = top_layer_up_scores(top, phi_train, y_train, s)   # I_up, all i
  noise_dir = influence_pert(loss_top, top, x_sel, y_sel, s)  # I_pert
"""

from hint_jax.influence.cg import cg_solve
from hint_jax.influence.direct import dense_from_matvec
from hint_jax.influence.direct import dense_hessian
from hint_jax.influence.direct import direct_solve
from hint_jax.influence.direct import direct_solve_dense
from hint_jax.influence.grads import mean_grad
from hint_jax.influence.grads import mixed_input_grad
from hint_jax.influence.grads import per_example_grad_dot
from hint_jax.influence.grads import per_example_grads
from hint_jax.influence.hvp import hvp
from hint_jax.influence.hvp import make_hvp
from hint_jax.influence.info import SolveInfo
from hint_jax.influence.lissa import lissa
from hint_jax.influence.lissa import lissa_auto_scale
from hint_jax.influence.lissa import lissa_solve
from hint_jax.influence.operator import HessianOperator
from hint_jax.influence.operator import loss_hessian
from hint_jax.influence.pert import top_layer_pert
from hint_jax.influence.scores import influence_pert
from hint_jax.influence.scores import influence_up
from hint_jax.influence.scores import predicted_loo_change
from hint_jax.influence.scores import s_test
from hint_jax.influence.selection import path_names
from hint_jax.influence.selection import restrict
from hint_jax.influence.selection import restrict_loss
from hint_jax.influence.solve import solve
from hint_jax.influence.spectrum import batch_lambda_max
from hint_jax.influence.spectrum import power_iteration
from hint_jax.influence.top_layer import top_layer_dense_hessian
from hint_jax.influence.top_layer import top_layer_hessian
from hint_jax.influence.top_layer import top_layer_hvp
from hint_jax.influence.top_layer import top_layer_objective
from hint_jax.influence.top_layer import top_layer_up_scores
from hint_jax.influence.top_layer import top_logits
from hint_jax.influence.top_layer import top_loss_one

__all__ = [
    "HessianOperator", "SolveInfo", "batch_lambda_max", "cg_solve",
    "dense_from_matvec", "dense_hessian", "direct_solve", "direct_solve_dense",
    "hvp", "influence_pert", "influence_up", "lissa", "lissa_auto_scale",
    "lissa_solve", "loss_hessian", "make_hvp", "mean_grad",
    "mixed_input_grad", "path_names", "per_example_grad_dot",
    "per_example_grads", "power_iteration", "predicted_loo_change",
    "restrict", "restrict_loss", "s_test", "solve", "top_layer_dense_hessian",
    "top_layer_hessian", "top_layer_hvp", "top_layer_objective",
    "top_layer_pert",
    "top_layer_up_scores", "top_logits", "top_loss_one",
]
