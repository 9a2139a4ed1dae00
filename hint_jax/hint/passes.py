"""The influence passes one HINT update runs, on one device or split over a
mesh: the same five operations either way, so the defence never asks
which (`passes_for`).

Both give the same numbers up to float reassociation (tests/test_parallel.py
checks a whole update against one device).
"""

from hint_jax import influence
from hint_jax.parallel import influence as sharded


class LocalPasses:
  """On the default device."""

  mesh = None

  def features(self, model, params, model_state, x_u8, batch_size):
    """phi of uint8 images in batches of ``batch_size``."""
    return model.features_of_images(params, model_state, x_u8, batch_size)

  def s_test(self, top, phi_hessian, phi_val, y_val, **options):
    """s_test over the top-layer Hessian of ``phi_hessian``."""
    op = influence.top_layer_hessian(top, phi_hessian)
    return influence.s_test(op, influence.top_loss_one, top, phi_val, y_val,
                            **options)

  def up_scores(self, top, phi, y, s):
    return influence.top_layer_up_scores(top, phi, y, s)

  def pert(self, features_fn, top, x, y, s, chunk_size):
    return influence.top_layer_pert(features_fn, top, x, y, s,
                                    chunk_size=chunk_size)


class MeshPasses:
  """Every pass split by rows over a data mesh (`hint_jax.parallel`)."""

  def __init__(self, mesh):
    self.mesh = mesh

  def features(self, model, params, model_state, x_u8, batch_size):
    return sharded.features_of_images(model, params, model_state, x_u8,
                                      self.mesh, batch_size=batch_size)

  def s_test(self, top, phi_hessian, phi_val, y_val, **options):
    op = sharded.top_layer_hessian(top, phi_hessian, self.mesh)
    return sharded.s_test(op, influence.top_loss_one, top, phi_val, y_val,
                          self.mesh, **options)

  def up_scores(self, top, phi, y, s):
    return sharded.top_layer_up_scores(top, phi, y, s, self.mesh)

  def pert(self, features_fn, top, x, y, s, chunk_size):
    # The chunk is per device: the same examples per device as one device
    # would take per chunk.
    return sharded.top_layer_pert(features_fn, top, x, y, s, self.mesh,
                                  chunk_size=max(1, chunk_size
                                                 // self.mesh.size))


def passes_for(mesh):
  """`LocalPasses` for ``mesh`` None, else `MeshPasses`."""
  return LocalPasses() if mesh is None else MeshPasses(mesh)
