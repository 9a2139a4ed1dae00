"""How accurate are influence functions? The study, from Python.

Runs `hint_jax.studies.influence_accuracy.study_job` at a tiny setting on
the embedded digits (no download): logistic regression (theta = all of
its parameters), 2 test points; for each it removes the most influential
training points and some random ones, retrains exactly (Newton), and
compares the true change of the test loss with influence's prediction
(and the same for input perturbations along I_pert). Prints the Pearson
correlations and writes influence_accuracy.json and two scatter plots to
the folder given (default: a new temporary folder). About a minute on a
laptop CPU; `hint-jax influence-accuracy` runs the full study on MNIST.

  python examples/influence_accuracy_study.py [OUT_FOLDER]
"""

import sys
import tempfile

from hint_jax.studies.influence_accuracy import StudyConfig, study_job


def main():
  out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(
      prefix="influence_study_")
  config = StudyConfig(num_test=2, num_top=10, num_random=5, num_pert=4,
                       l2=0.01, seed=0)
  result = study_job("digits", "logreg", out, config, quick=True)
  loo, pert = result["loo"], result["pert"]
  print(f"leave-one-out: Pearson {loo['pearson']:.4f} over "
        f"{loo['count']} retrainings")
  print(f"input perturbation: Pearson {pert['pearson']:.4f} over "
        f"{pert['count']} retrainings")
  print("wrote", out)


if __name__ == "__main__":
  main()
