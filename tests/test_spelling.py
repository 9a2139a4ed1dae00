"""One spelling, "defence", in modules, identifiers, flags and JSON keys;
the old spelling ("defense") stays readable: the flags parse, the modules
import, old records are read, and committed cells keep their ids."""

import json

import pytest

from hint_jax.cli.main import build_parser, main
from hint_jax.experiment import configs, results
from hint_jax.experiment.figures import defence_bench_figure


def test_the_old_defence_flag_parses_to_the_same_setting():
  parser = build_parser()
  new = parser.parse_args(["train", "--dataset", "digits", "--defence",
                           "hint", "--out", "x"])
  old = parser.parse_args(["train", "--dataset", "digits", "--defense",
                           "hint", "--out", "x"])
  assert new.defence == old.defence == "hint"
  assert not hasattr(old, "defense")


@pytest.mark.parametrize("argv", [
    ["bench", "defenses", "--defenses", "none,hint"],
    ["bench", "defences", "--defences", "none,hint"]])
def test_bench_defences_takes_either_spelling(argv):
  args = build_parser().parse_args(argv)
  assert args.defences == "none,hint"
  assert args.func.__name__ == "bench_defences"


def test_the_old_module_names_are_the_same_modules():
  import hint_jax.defences  # pylint: disable=g-import-not-at-top
  import hint_jax.defenses  # pylint: disable=g-import-not-at-top
  import hint_jax.defenses.epic  # pylint: disable=g-import-not-at-top
  from hint_jax.hint import defence, defense  # pylint: disable=g-import-not-at-top
  assert hint_jax.defenses.epic is hint_jax.defences.epic
  assert hint_jax.defenses.AtdaConfig is hint_jax.defences.AtdaConfig
  assert defense.Hint is defence.Hint


def test_old_records_are_read():
  old = {"result": {"train_seconds": 2.0, "defense_seconds": 0.5}}
  new = {"result": {"train_seconds": 2.0, "defence_seconds": 0.5}}
  assert results.cell_seconds(old) == results.cell_seconds(new) == 2.5


def test_an_old_bench_record_is_drawn(tmp_path):
  record = {"defenses": {"none": {"seconds": [10.0]},
                         "hint": {"seconds": [12.0]}}}
  ratios = defence_bench_figure(record, tmp_path / "old.png")
  assert ratios == pytest.approx({"none": 1.0, "hint": 1.2})
  src = tmp_path / "old.json"
  src.write_text(json.dumps(record))
  assert main(["figure", "bench-defenses", "--json", str(src)]) == 0


def test_cells_run_the_new_flag_and_keep_their_ids():
  """A cell's command spells ``--defence``; its key (and so its id) keeps
  the spelling it was first computed with, so committed cells stay found
  (`test_pipeline.test_committed_cells_still_resolve_to_their_folders`
  checks the committed folders themselves)."""
  cell = configs.get_profile("controls", "cpu").cells()[0]
  assert "--defence" in cell.train_flags()
  assert "--defense" not in cell.train_flags()
  assert "--defense" in cell.key()["train"]
  assert "--defence" not in cell.key()["train"]
  assert cell.method.defense == cell.method.defence   # old attribute


def test_a_checkpoint_of_the_old_spelling_loads(tmp_path):
  """A run folder written when the settings said "defense" resumes under
  "defence" (and still refuses other settings)."""
  import jax  # pylint: disable=g-import-not-at-top
  from hint_jax.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from hint_jax.models import get_model  # pylint: disable=g-import-not-at-top
  from hint_jax.pipeline import checkpoint  # pylint: disable=g-import-not-at-top
  from hint_jax.train import Trainer  # pylint: disable=g-import-not-at-top
  from hint_jax.train.presets import preset  # pylint: disable=g-import-not-at-top
  trainer = Trainer(get_model("logreg", 10, (8, 8, 1)), preset("digits"), 64)
  state = trainer.init_state(jax.random.key(0))
  checkpoint.save(tmp_path, state, 0, {"defense": "hint", "seed": 0}, [])
  _, done, _, _ = checkpoint.load(tmp_path, state,
                                  {"defence": "hint", "seed": 0})
  assert done == 1
  settings, _, _ = checkpoint.read_final(tmp_path)
  assert settings == {"defence": "hint", "seed": 0}
  with pytest.raises(ConfigError, match="defence"):
    checkpoint.load(tmp_path, state, {"defence": "none", "seed": 0})
