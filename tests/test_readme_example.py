"""The README's library example (on the embedded digits, for speed)."""

import jax
import numpy as np

from hint_jax import data, influence as infl, models, train


def test_readme_library_example_runs_and_scores_are_consistent():
  splits = data.split_train_val(data.load_dataset("digits"))
  model = models.get_model("convnet_small", 10, (8, 8, 1))
  trainer = train.Trainer(model, train.presets.preset("digits", epochs=3),
                          len(splits.x_train))
  state, _, _ = train.fit(trainer, trainer.init_state(jax.random.key(0)),
                          splits)
  params, model_state = state.params, state.model_state
  top = params["head"]
  phi = model.features_of_images(params, model_state, splits.x_train)
  phi_val = model.features_of_images(params, model_state, splits.x_val)
  op = infl.top_layer_hessian(top, phi)
  s, info = infl.s_test(op, infl.top_loss_one, top, phi_val, splits.y_val,
                        method="cg", damping=0.5)
  assert bool(info.converged)
  i_up = infl.top_layer_up_scores(top, phi, splits.y_train, s)
  x_sel = splits.x_train[:50] / 255.0
  i_pert = infl.top_layer_pert(model.features_fn(params, model_state), top,
                               x_sel, splits.y_train[:50], s)
  assert i_up.shape == (len(splits.x_train),)
  assert i_pert.shape == x_sel.shape
  # The closed form over features equals the autodiff path through the
  # network (features computed in batches of 1000 vs per example): float32.
  loss_top = model.top_example_loss(params, model_state)
  i_up_net = infl.influence_up(loss_top, top, x_sel, splits.y_train[:50], s)
  np.testing.assert_allclose(i_up[:50], i_up_net, rtol=1e-3,
                             atol=1e-4 * float(np.max(np.abs(i_up_net))))
