"""The defence registry and plug-in loading: built-ins registered from
their own modules, a defence of one's own added without touching the
package, and every failure of a plug-in said in one line."""

import dataclasses
import pathlib
import re
import textwrap

import pytest

from hint_jax import pipeline, plugins
from hint_jax.cli import main as cli_main
from hint_jax.errors import ConfigError
from hint_jax.pipeline import defences
from hint_jax.pipeline.defences import base

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
  args = parse_train(["--dataset", "digits", "--out", "x", "--defense",
                      "mine", "--mine-level", "3"])
  assert defence_spec(args) == _Spec(level=3)
  with pytest.raises(SystemExit):
    parse_train(["--dataset", "digits", "--out", "x", "--defense", "mine",
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
  assert re.search(r"--defense \{none,hint,epic,friends,atda,gentle\}",
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
