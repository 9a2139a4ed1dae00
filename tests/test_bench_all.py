"""``hint-jax bench all``: every part runs through the command line and
the JSON records the device, versions and compiler options beside the
figures (a smoke run: no figure here is a timing claim)."""

import json

import pytest

from hint_jax.bench import suite
from hint_jax.cli.main import main


@pytest.mark.slow
def test_bench_all_quick_writes_every_part(tmp_path, monkeypatch, capsys):
  # Two estimators keep the attribution part short; the others run as a
  # user's --quick runs them.
  monkeypatch.setattr(suite, "ATTRIBUTION", suite.ATTRIBUTION[:2])
  out = tmp_path / "all.json"
  assert main(["bench", "all", "--quick", "--no-torch", "--json",
               str(out)]) == 0, capsys.readouterr().err
  record = json.loads(out.read_text())
  assert record["quick"] is True
  assert sorted(record["parts"]) == sorted(suite.PARTS)
  env = record["environment"]
  assert env["backend"] and env["devices"] and env["versions"]["jax"]
  assert "xla_options" in env and "compiler_options" in env
  train = record["parts"]["train"]["results"]
  assert [r["model"] for r in train] == ["convnet", "resnet_tiny"]
  assert all(f["images_per_second"] > 0 for r in train
             for f in r["figures"].values())
  assert record["parts"]["hint"]["settings"]["quick"]["time_ratio"] > 0
  assert record["parts"]["influence"]["dataset"] == "digits"
  est = record["parts"]["attribution"]["estimators"]
  assert sorted(est) == ["grad_dot", "trak"]
  assert all(e["scores_s"] > 0 for e in est.values())
  printed = capsys.readouterr().out
  assert "bench all --quick on cpu" in printed


def test_bench_all_refuses_an_unknown_part(capsys):
  assert main(["bench", "all", "--parts", "train,magic"]) == 2
  err = capsys.readouterr().err.strip()
  assert err == ("hint-jax: error: --parts: unknown magic; choose from "
                 "train, hint, influence, attribution")


def test_the_full_hint_part_makes_one_noise_update(data_dir):
  """The shortened MNIST setting keeps an update inside its epochs: the
  setting's own schedule {9} is trimmed away at 3 epochs."""
  from hint_jax.bench import hint as bench  # pylint: disable=g-import-not-at-top
  spec = suite.hint_spec(str(data_dir), quick=False)
  _, _, _, cfg, hcfg = bench._setting("mnist", spec)  # pylint: disable=protected-access
  assert cfg.epochs == suite.HINT_EPOCHS == 3
  assert hcfg.schedule == (2,)
  plain = bench.HintBench(data_dir=str(data_dir), epochs=suite.HINT_EPOCHS)
  assert bench._setting("mnist", plain)[4].schedule == ()  # pylint: disable=protected-access
