"""``hint-jax bench defenses`` on the embedded digits: one line per
defence, ratios to the undefended run, bad lists refused."""

import json

import pytest

from hint_jax.cli.main import main


@pytest.mark.slow


def test_bench_defenses_writes_ratios(tmp_path, capsys):
  out = tmp_path / "b.json"
  assert main(["bench", "defenses", "--dataset", "digits", "--epochs", "7",
               "--defenses", "none,friends,epic", "--no-progress",
               "--json", str(out)]) == 0
  fig = json.loads(out.read_text())
  d = fig["defenses"]
  assert set(d) == {"none", "friends", "epic"}
  assert d["none"]["ratio"] == 1.0
  for name in ("friends", "epic"):
    assert d[name]["ratio"] > 0 and len(d[name]["seconds"]) == 1
    assert 0.0 <= d[name]["test_accuracy"][0] <= 1.0
  printed = capsys.readouterr().out
  assert "friends" in printed and "1.52x" in printed


def test_bench_defenses_needs_none_first():
  assert main(["bench", "defenses", "--dataset", "digits",
               "--defenses", "hint,none"]) == 2
  assert main(["bench", "defenses", "--dataset", "digits",
               "--defenses", "none,foo"]) == 2
