"""The scripts in examples/ run as a user would run them (each in its own
process, on the embedded digits) and print what their docstrings say."""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _run(name):
  proc = subprocess.run([sys.executable, str(EXAMPLES / name)],
                        capture_output=True, text=True, timeout=900,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


@pytest.mark.slow
def test_influence_example_ranks_the_training_images():
  out = _run("influence_own_linen_model.py")
  assert "converged True" in out
  assert "most harmful training examples:" in out
  assert "I_pert of the most harmful example: shape (1, 8, 8, 1)" in out


@pytest.mark.slow
def test_hint_example_trains_without_and_with_hint():
  out = _run("hint_on_numpy_arrays.py").splitlines()
  assert out[0].startswith("no defence: test accuracy ")
  assert out[1].startswith("HINT: test accuracy ")
  assert "examples noised, 2 updates" in out[1]


@pytest.mark.slow
def test_nnx_influence_example_ranks_the_training_images():
  out = _run("influence_own_nnx_model.py")
  assert "converged True" in out
  assert "most harmful training examples:" in out
  assert "I_pert of the most harmful example: shape (1, 8, 8, 1)" in out


@pytest.mark.slow
def test_influence_accuracy_study_example(tmp_path):
  proc = subprocess.run([sys.executable,
                         str(EXAMPLES / "influence_accuracy_study.py"),
                         str(tmp_path / "study")], capture_output=True,
                        text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  # Logistic regression: influence predicts leave-one-out closely.
  loo = float(lines[0].split("Pearson ")[1].split()[0])
  assert loo > 0.9, lines
  assert lines[1].startswith("input perturbation: Pearson ")
  assert (tmp_path / "study" / "influence_accuracy.json").is_file()


@pytest.mark.slow
def test_attribution_example_scores_with_three_estimators(tmp_path):
  proc = subprocess.run([sys.executable,
                         str(EXAMPLES / "attribution_three_estimators.py"),
                         str(tmp_path / "agree.png")], capture_output=True,
                        text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  for name in ("cg", "trak", "grad_dot"):
    assert f"{name}: scores (40, 1297)" in out
  assert out.count("Spearman ") == 3
  assert (tmp_path / "agree.png").stat().st_size > 1000


@pytest.mark.slow
def test_own_defence_example_runs_from_python_and_the_command_line():
  out = _run("own_defence.py").splitlines()
  assert out[0].startswith("from Python: defence squeeze {'config': "
                           "{'bits': 3}}, test accuracy ")
  assert out[1].startswith("from the command line: digits/convnet_small "
                           "with bit-depth squeezing: test accuracy ")
  # The same run both ways: training is deterministic.
  assert out[0].split("test accuracy ")[1] == out[1].split(
      "test accuracy ")[1].split()[0]


@pytest.mark.slow
def test_own_attack_example_runs_from_python_and_the_command_line():
  out = _run("own_attack.py").splitlines()
  assert out[0].startswith("from Python: {'clean': 0, 'fgsm': 649, "
                           "'durp': 648}, largest change ")
  assert out[1].startswith("from the command line: wrote ")
  # The same images both ways: crafting is deterministic.
  assert out[1].endswith("same images as from Python: True")
