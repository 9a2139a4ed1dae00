"""The batched top-layer I_pert equals the generic mixed derivative, on real
Flax models (BatchNorm in inference mode included)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hint_jax import influence as infl
from hint_jax.models import get_model


@pytest.mark.parametrize("name,shape", [("convnet_small", (8, 8, 1)),
                                        ("mlp", (8, 8, 1))])
def test_top_layer_pert_equals_generic(name, shape):
  model = get_model(name, 10, shape)
  params, state = model.init(jax.random.key(0))
  # Non-trivial BatchNorm statistics, so inference mode matters.
  x = jax.random.uniform(jax.random.key(1), (37,) + shape)
  _, state = model.apply_train(params, state, x)
  y = jnp.arange(37) % 10
  s = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape),
                   params["head"])
  loss_top = model.top_example_loss(params, state)
  want = infl.influence_pert(loss_top, params["head"], x, y, s)
  got = infl.top_layer_pert(model.features_fn(params, state), params["head"],
                            x, y, s, chunk_size=16)  # 3 chunks, last padded
  assert got.shape == x.shape
  # Same derivative by two float32 routes (forward-over-reverse vs one
  # reverse pass): agreement to float32 rounding of O(1) values.
  np.testing.assert_allclose(got, want, rtol=2e-4,
                             atol=2e-5 * float(jnp.max(jnp.abs(want))))
