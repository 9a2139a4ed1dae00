"""``hint-jax bench defences`` on the embedded digits: one line per
defence, ratios to the undefended run, bad lists refused; ``hint-jax figure
bench-defences`` draws a saved record."""

import json

import pytest

from hint_jax.cli.main import main


@pytest.mark.slow
def test_bench_defences_writes_ratios(tmp_path, capsys):
  out = tmp_path / "b.json"
  assert main(["bench", "defences", "--dataset", "digits", "--epochs", "7",
               "--defences", "none,friends,epic", "--no-progress",
               "--json", str(out), "--plot", str(tmp_path / "b.png")]) == 0
  assert (tmp_path / "b.png").stat().st_size > 1000
  fig = json.loads(out.read_text())
  d = fig["defences"]
  assert set(d) == {"none", "friends", "epic"}
  assert d["none"]["ratio"] == 1.0
  for name in ("friends", "epic"):
    assert d[name]["ratio"] > 0 and len(d[name]["seconds"]) == 1
    assert 0.0 <= d[name]["test_accuracy"][0] <= 1.0
  printed = capsys.readouterr().out
  assert "friends" in printed and "1.52x" in printed


def test_bench_defences_needs_none_first():
  assert main(["bench", "defences", "--dataset", "digits",
               "--defences", "hint,none"]) == 2
  assert main(["bench", "defences", "--dataset", "digits",
               "--defences", "none,foo"]) == 2


def test_figure_bench_defences_draws_a_saved_record(tmp_path, capsys):
  record = {"backend": "cpu", "paper_table_v": {"hint": 1.52},
            "defences": {"none": {"seconds": [10.0, 12.0]},
                         "hint": {"seconds": [11.0, 12.0]}}}
  src = tmp_path / "bench.json"
  src.write_text(json.dumps(record))
  assert main(["figure", "bench-defences", "--json", str(src)]) == 0
  assert (tmp_path / "bench.png").stat().st_size > 1000   # beside the JSON
  assert "hint 1.05x" in capsys.readouterr().out          # 11.5 / 11
  src.write_text(json.dumps({"defences": {"hint": {"seconds": [1.0]}}}))
  assert main(["figure", "bench-defences", "--json", str(src),
               "--out", str(tmp_path / "x.png")]) == 2
  assert "needs 'defences' with 'none'" in capsys.readouterr().err
