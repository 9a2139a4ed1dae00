"""The defence and attack registries and plug-in loading: built-ins
registered from their own modules, a defence or attack of one's own added
without touching the package, and every failure of a plug-in said in one
line."""

import dataclasses
import pathlib
import re
import textwrap

import numpy as np
import pytest

from hint_jax import attacks, pipeline, plugins
from hint_jax.cli import main as cli_main
from hint_jax.errors import ConfigError
from hint_jax.pipeline import defences
from hint_jax.pipeline import poisons
from hint_jax.pipeline.defences import base
from hint_jax.pipeline.poisons import base as poisons_base

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "hint_jax"


@pytest.fixture
def restore_registry():
  kinds = dict(base._KINDS)  # pylint: disable=protected-access
  yield
  base._KINDS.clear()  # pylint: disable=protected-access
  base._KINDS.update(kinds)  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class _Spec:
  level: int = 1


def _kind(name="mine", spec_type=_Spec):
  return defences.DefenceKind(
      name=name, label="Mine", spec_type=spec_type,
      resolve=lambda spec, dataset, epochs, schedule: spec,
      build=lambda config, model, splits, **_: defences.JobDefence(config))


def test_the_built_in_defences_are_registered_in_the_command_lines_order():
  assert defences.names() == ("none", "hint", "epic", "friends", "atda")
  assert defences.kind_of(None).name == "none"
  assert defences.kind_of(pipeline.HintSpec()).name == "hint"
  assert defences.get("hint").trial_seed_flag == "--hint-seed"


def test_register_refuses_a_taken_name_or_spec_type(restore_registry):
  defences.register(_kind())
  assert defences.names()[-1] == "mine"
  assert defences.kind_of(_Spec(2)).name == "mine"
  with pytest.raises(ConfigError, match="named 'mine' is registered"):
    defences.register(_kind())
  with pytest.raises(ConfigError, match="_Spec belongs to another"):
    defences.register(_kind(name="other"))
  defences.register(dataclasses.replace(_kind(), label="Mine 2"),
                    replace=True)
  assert defences.get("mine").label == "Mine 2"


def test_an_unregistered_spec_or_name_is_one_line():
  with pytest.raises(ConfigError, match="registered defence's spec .*"
                     "got _Spec"):
    pipeline.defence_name(_Spec())
  with pytest.raises(ConfigError, match="unknown defence 'prayer'; choose "
                     "one of none, hint"):
    defences.get("prayer")
  with pytest.raises(ConfigError, match="no registered defence takes a "
                     "_Spec"):
    pipeline.make_defence(_Spec(), None, None, epochs=1)


def test_a_defence_must_build_a_jobdefence_of_its_own_name(
    restore_registry):
  defences.register(_kind())   # builds a plain JobDefence, named "none"
  with pytest.raises(ConfigError, match="'mine' built a JobDefence named "
                     "'none'"):
    pipeline.make_defence(_Spec(), None, None, epochs=1)


def test_a_registered_defences_options_reach_the_command_line(
    restore_registry):
  from hint_jax.pipeline.options import Option, whole_number  # pylint: disable=g-import-not-at-top
  from hint_jax.cli.train_cmd import defence_spec, parse_train  # pylint: disable=g-import-not-at-top
  defences.register(dataclasses.replace(
      _kind(), options=(Option("--mine-level", "level", whole_number(1), 1,
                               help="how much"),)))
  args = parse_train(["--dataset", "digits", "--out", "x", "--defence",
                      "mine", "--mine-level", "3"])
  assert defence_spec(args) == _Spec(level=3)
  with pytest.raises(SystemExit):
    parse_train(["--dataset", "digits", "--out", "x", "--defence", "mine",
                 "--mine-level", "0"])


def _plugin(tmp_path, stem, body):
  path = tmp_path / f"{stem}.py"
  path.write_text(textwrap.dedent(body))
  return str(path)


def test_a_plugin_file_registers_its_defence_for_the_command(
    tmp_path, restore_registry, capsys):
  path = _plugin(tmp_path, "plugin_gentle", """
      import dataclasses
      from hint_jax import pipeline
      from hint_jax.pipeline.options import Option, number

      @dataclasses.dataclass(frozen=True)
      class GentleSpec:
        amount: float = 0.5

      pipeline.register_defence(pipeline.DefenceKind(
          name="gentle", label="Gentle", spec_type=GentleSpec,
          resolve=lambda spec, dataset, epochs, schedule: spec,
          build=lambda config, model, splits, **_:
              pipeline.JobDefence(config),
          options=(Option("--gentle-amount", "amount", number, 0.5,
                          help="how gentle"),),
          help="gentle (a test plug-in)"))
      """)
  with pytest.raises(SystemExit) as e:
    cli_main.main(["--plugin", path, "train", "--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  assert "--gentle-amount" in text and "gentle (a test plug-in)" in text
  assert re.search(r"--defence \{none,hint,epic,friends,atda,gentle\}",
                   text)
  assert plugins.load(path) is plugins.load(path)   # imported once


@pytest.mark.parametrize("body,message", [
    (None, "no such file"),
    ("raise RuntimeError('boom')\n", "failed to load: RuntimeError: boom"),
    ("import not_a_module_anywhere\n", "No module named "
     "'not_a_module_anywhere'"),
])
def test_a_broken_plugin_is_one_line_and_exit_2(tmp_path, capsys, body,
                                                 message):
  path = (str(tmp_path / "plugin_missing.py") if body is None
          else _plugin(tmp_path, f"plugin_broken_{len(body)}", body))
  assert cli_main.main(["--plugin", path, "train", "--dataset", "digits",
                        "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f"hint-jax: error: plug-in {path}") and message in err
  assert len(err.splitlines()) == 1
  assert not (tmp_path / "out").exists()


def test_a_plugin_option_that_clashes_is_one_line(tmp_path, capsys,
                                                   restore_registry):
  from hint_jax.pipeline.options import Option, whole_number  # pylint: disable=g-import-not-at-top
  defences.register(dataclasses.replace(
      _kind(), options=(Option("--seed", "level", whole_number(1), 1),)))
  assert cli_main.main(["train", "--dataset", "digits", "--out",
                        str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("hint-jax: error: defence mine: option --seed "
                        "cannot be added")
  assert len(err.splitlines()) == 1


def test_plugins_from_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv(plugins.ENV_VAR, f"a.py{plugins.os.pathsep}b")
  assert plugins.from_environment() == ["a.py", "b"]
  with pytest.raises(ConfigError, match="plug-in not_a_module_anywhere_2: "):
    plugins.load("not_a_module_anywhere_2")


# A name or isinstance chain over the built-in defences outside their own
# modules (the registry is the only place that knows them all).
_CHAIN = re.compile(
    r"""(==|!=)\s*["'](hint|epic|friends|atda)["']"""
    r"""|["'](hint|epic|friends|atda)["']\s*(==|!=)"""
    r"|isinstance\([^)]*(HintConfig|EpicConfig|FriendsConfig|AtdaConfig"
    r"|HintSpec|EpicSpec)")


def test_no_defence_name_or_type_chains_outside_the_defences_modules():
  found = []
  for path in PACKAGE.rglob("*.py"):
    if path.parent.name == "defences" and path.parent.parent.name == (
        "pipeline"):
      continue
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if _CHAIN.search(line):
        found.append(f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}")
  assert not found, "\n".join(found)


# ------------------------------------------------------------- attacks
@pytest.fixture
def restore_attacks():
  untargeted = dict(poisons_base._UNTARGETED)  # pylint: disable=protected-access
  targeted = dict(poisons_base._TARGETED)  # pylint: disable=protected-access
  yield
  poisons_base._UNTARGETED.clear()  # pylint: disable=protected-access
  poisons_base._UNTARGETED.update(untargeted)  # pylint: disable=protected-access
  poisons_base._TARGETED.clear()  # pylint: disable=protected-access
  poisons_base._TARGETED.update(targeted)  # pylint: disable=protected-access


@dataclasses.dataclass(frozen=True)
class _ShiftSpec:
  levels: int = 1


def _shift_kind(name="shift", spec_type=_ShiftSpec, dtype=np.uint8):
  """An attack adding ``levels`` grey levels (within the budget)."""
  def craft(c, x, y, chunk, report):
    del y, chunk, report
    return np.minimum(x.astype(int) + c.config.levels, 255).astype(dtype)
  return pipeline.AttackKind(
      name=name, label="Shift", spec_type=spec_type,
      resolve=lambda spec, ctx: spec, craft=craft)


def test_the_built_in_attacks_are_registered_in_order():
  assert poisons.attack_names()[:4] == ("pgd", "dap", "durp", "dc")
  assert poisons.targeted_names()[:4] == ("gm", "mp", "bp", "fc")
  assert {poisons.get_targeted(n).scenario for n in ("bp", "fc")} == {
      "transfer"}


def test_register_attack_refuses_a_taken_name_or_spec_type(restore_attacks):
  with pytest.raises(ConfigError, match="'pgd' is registered already"):
    pipeline.register_attack(_shift_kind(name="pgd"))
  with pytest.raises(ConfigError, match="'gm' is registered already"):
    pipeline.register_attack(_shift_kind(name="gm"))   # a targeted name
  with pytest.raises(ConfigError, match="PgdSpec belongs to another"):
    pipeline.register_attack(_shift_kind(spec_type=pipeline.PgdSpec))
  with pytest.raises(ConfigError, match="scenario must be one of"):
    pipeline.register_targeted(pipeline.TargetedKind(
        "mine", "Mine", "sideways", 0.1, 1, craft=lambda c: None))


@pytest.mark.parametrize("item,message", [
    ("nope", "attacks: unknown attack 'nope'; choose from pgd, dap"),
    ("gm", r"unknown attack 'gm' \(a targeted attack: hint-jax "
     r"target-poison\)"),
    (_Spec(), "an attack must be a registered name or spec .*got _Spec"),
])
def test_an_unregistered_attack_is_one_line(tmp_path, item, message):
  spec = pipeline.PoisonSpec(attacks=(item,))
  with pytest.raises(ConfigError, match=message):
    pipeline.run_poison(pipeline.DataSpec("digits"), spec,
                        tmp_path / "p.npz")
  assert not list(tmp_path.iterdir())   # refused before anything is written
  with pytest.raises(ConfigError, match="an untargeted attack: hint-jax "
                     "poison"):
    pipeline.run_target_poison(pipeline.DataSpec("digits"),
                               pipeline.TargetSpec("dap"), tmp_path / "t.npz")


def test_a_registered_attack_crafts_its_share(tmp_path, restore_attacks):
  pipeline.register_attack(_shift_kind())
  spec = pipeline.PoisonSpec(attacks=(_ShiftSpec(levels=3), "durp"),
                             ratio=0.5)
  ps = pipeline.run_poison(pipeline.DataSpec("digits"), spec,
                           tmp_path / "p.npz")
  clean = pipeline.load_splits(pipeline.DataSpec("digits"))[1].x_train
  rows = ps.attack_id == 0
  assert ps.counts()["shift"] == rows.sum() > 0
  np.testing.assert_array_equal(
      ps.x[rows], np.minimum(clean[rows].astype(int) + 3, 255))
  np.testing.assert_array_equal(ps.x[ps.attack_id < 0],
                                clean[ps.attack_id < 0])
  assert ps.meta["attacks"][0] == {"name": "shift", "eps": 0.3,
                                   "count": int(rows.sum()), "levels": 3}
  assert ps.meta["victim"] is None   # no attack asked for the victim
  assert not (tmp_path / "p.npz.work").exists()


def test_an_attack_returning_other_images_is_one_line(tmp_path,
                                                      restore_attacks):
  pipeline.register_attack(_shift_kind(dtype=np.float32))
  with pytest.raises(ConfigError, match="attack 'shift' returned float32 "
                     "images of shape"):
    pipeline.run_poison(pipeline.DataSpec("digits"),
                        pipeline.PoisonSpec(attacks=("shift",)),
                        tmp_path / "p.npz")


def test_a_plugin_file_registers_its_attack_for_the_command(
    tmp_path, restore_attacks, capsys):
  path = _plugin(tmp_path, "plugin_attack_shift", """
      import dataclasses
      import numpy as np
      from hint_jax import pipeline
      from hint_jax.pipeline.options import Option, whole_number

      @dataclasses.dataclass(frozen=True)
      class ShiftSpec:
        levels: int = 1

      def craft(c, x, y, chunk, report):
        return np.minimum(x.astype(int) + c.config.levels, 255).astype(
            np.uint8)

      pipeline.register_attack(pipeline.AttackKind(
          name="shift", label="Shift", spec_type=ShiftSpec,
          resolve=lambda spec, ctx: spec, craft=craft,
          options=(Option("--shift-levels", "levels", whole_number(1), 1,
                          help="grey levels added"),),
          help="shift (a test plug-in)"))
      """)
  with pytest.raises(SystemExit) as e:
    cli_main.main(["--plugin", path, "poison", "--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  assert "--shift-levels" in text and "shift (a test plug-in)" in text
  out = tmp_path / "p.npz"
  assert cli_main.main(["--plugin", path, "poison", "--dataset", "digits",
                        "--attacks", "shift", "--shift-levels", "2",
                        "--no-progress", "--out", str(out)]) == 0
  ps = attacks.load_poisoned(out)
  assert ps.meta["attacks"] == [{"name": "shift", "eps": 0.3,
                                 "count": len(ps.x), "levels": 2}]


# A name chain over the built-in attacks outside their own modules (the
# registries in pipeline/poisons are the only place that knows them all;
# hint_jax/attacks holds the algorithms).
_ATTACK_CHAIN = re.compile(
    r"""(==|!=)\s*["'](pgd|dap|durp|dc|gm|mp|bp|fc)["']"""
    r"""|["'](pgd|dap|durp|dc|gm|mp|bp|fc)["']\s*(==|!=|in\b)"""
    r"""|\bin\s*\(["'](pgd|dap|durp|dc|gm|mp|bp|fc)["']""")


def test_no_attack_name_chains_outside_the_attack_modules():
  found = []
  for path in PACKAGE.rglob("*.py"):
    rel = path.relative_to(PACKAGE)
    if rel.parts[:2] == ("pipeline", "poisons") or rel.parts[0] == "attacks":
      continue
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if _ATTACK_CHAIN.search(line):
        found.append(f"{rel}:{i}: {line.strip()}")
  assert not found, "\n".join(found)
