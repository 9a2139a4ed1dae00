"""Training-data attribution for any classifier: which training examples
make a test prediction what it is.

One interface for every estimator: a preparation phase that returns a
pytree state (curvature, eigenvectors, kernels), and a scoring phase that
streams over blocks of training and test examples::

    from hint_jax import attribution
    state = attribution.prepare("cg", apply, params, (x_train, y_train),
                                key=jax.random.key(0), damping=0.01)
    s = attribution.scores(state, apply, (x_train, y_train),
                           (x_test, y_test))       # (n_test, n_train)
    attribution.save_state("cg.npz", state)

``apply(params, x) -> logits`` is the model in inference mode as a pure
function of its parameters (`hint_jax.models.adapt` makes one of any linen
or nnx model: ``lambda p, x: model.apply_eval(p, model_state, x)``).
Estimators (``ESTIMATORS``): ``explicit``, ``cg``, ``lissa`` (influence
functions with Hessian or Gauss-Newton curvature), ``arnoldi``, ``kfac``
and ``ekfac`` (over the Dense and convolution layers; ``apply`` from
`hint_jax.models.capture.tapped_apply`), ``trak``, ``tracin``,
``grad_dot``, ``grad_cos``.

**Sign and scale, the same for all**: a positive score means the training
example helps the test example (see `core`): for the influence functions
it is n times the first-order rise of the test loss if the example were
left out.

The maths here is plain JAX (no Flax): `functions` (losses, per-example
gradients, curvature products), `core` (interface, registry, streaming),
`state` (the state and its file).
"""

from hint_jax.attribution import gradient as _gradient  # registers
from hint_jax.attribution import inverse as _inverse  # registers
from hint_jax.attribution import kfac as _kfac  # registers
from hint_jax.attribution import trak as _trak  # registers
from hint_jax.attribution.core import ESTIMATORS
from hint_jax.attribution.core import Estimator
from hint_jax.attribution.core import get
from hint_jax.attribution.core import prepare
from hint_jax.attribution.core import score_block
from hint_jax.attribution.core import scores
from hint_jax.attribution.inverse import lanczos
from hint_jax.attribution.state import AttributionState
from hint_jax.attribution.state import load_state
from hint_jax.attribution.state import save_state

__all__ = ["ESTIMATORS", "AttributionState", "Estimator", "get", "lanczos",
           "load_state", "prepare", "save_state", "score_block", "scores"]
