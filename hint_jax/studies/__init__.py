"""Studies that check the library against ground truth on real data.

* `influence_accuracy`: influence-function predictions of leave-one-out and
  input-perturbation effects vs retraining (`hint-jax influence-accuracy`).
* `newton`: exact minimisation of L2-regularised softmax regression over
  fixed features, and of many slightly modified copies of it.
* `report`: NumPy Pearson/Spearman and the scatter plots.
"""
