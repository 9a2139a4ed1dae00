"""The library's job API (`hint_jax.pipeline`) against the command line, the
defence protocol, and the package's import graph."""

import ast
import json
import pathlib

import numpy as np
import pytest

from hint_jax import defences, pipeline
from hint_jax.cli.main import main
from hint_jax.errors import ConfigError

PACKAGE = pathlib.Path(pipeline.__file__).resolve().parents[1]

# result.json entries that differ between two identical runs: wall times,
# and the poison file's absolute path.
_TIMES = ("seconds",)


def _comparable(result: dict) -> dict:
  out = {}
  for k, v in result.items():
    if any(t in k for t in _TIMES):
      continue
    if isinstance(v, dict):
      v = _comparable(v)
    elif isinstance(v, list) and v and isinstance(v[0], dict):
      v = [_comparable(r) for r in v]
    out[k] = v
  return out


@pytest.fixture(scope="module")
def poison_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("poison") / "p.npz"
  assert main(["poison", "--dataset", "digits", "--attacks", "pgd",
               "--ratio", "0.5", "--pgd-steps", "3", "--victim-epochs", "2",
               "--out", str(path), "--no-progress"]) == 0
  return path


def test_python_job_gives_the_command_lines_result(tmp_path, poison_file):
  """The dozen lines of the README's library section, against `hint-jax
  train` with the same settings: identical metrics, noise and result
  (wall times aside). Both are deterministic, so equality is exact."""
  cli_out, lib_out = tmp_path / "cli", tmp_path / "lib"
  assert main(["train", "--dataset", "digits", "--epochs", "4", "--poison",
               str(poison_file), "--defence", "hint", "--schedule", "1,3",
               "--out", str(cli_out), "--no-progress"]) == 0

  job = pipeline.TrainJob(
      data=pipeline.DataSpec("digits"),
      train=pipeline.TrainSpec(epochs=4),
      defence=pipeline.HintSpec(schedule=(1, 3)),
      poison=str(poison_file))
  result = pipeline.run_train(job, lib_out)

  on_disk = json.loads((lib_out / "result.json").read_text())
  assert _comparable(on_disk) == _comparable(json.loads(json.dumps(result)))
  cli_result = json.loads((cli_out / "result.json").read_text())
  assert _comparable(on_disk) == _comparable(cli_result)
  assert result["hint"]["poisons"]["count"] > 0
  strip = lambda path: [{k: v for k, v in json.loads(ln).items()  # pylint: disable=g-long-lambda
                         if "seconds" not in k}
                        for ln in path.read_text().splitlines()]
  assert strip(lib_out / "metrics.jsonl") == strip(cli_out / "metrics.jsonl")
  a, b = (np.load(d / pipeline.NOISE_FILE) for d in (cli_out, lib_out))
  assert sorted(a.files) == sorted(b.files)
  for k in a.files:
    np.testing.assert_array_equal(a[k], b[k])


def test_python_job_resumes_and_reports(tmp_path):
  """A job called again after it finished reloads its last checkpoint and
  returns the same result; the reporter hears the epochs."""

  class Notes(pipeline.Reporter):
    def __init__(self):
      self.lines = []

    def note(self, text):
      self.lines.append(text)

  job = pipeline.TrainJob(pipeline.DataSpec("digits", subset=300),
                          pipeline.TrainSpec(epochs=2))
  first_notes, again_notes = Notes(), Notes()
  first = pipeline.run_train(job, tmp_path / "r", reporter=first_notes)
  again = pipeline.run_train(job, tmp_path / "r", reporter=again_notes)
  assert [ln.split(":")[0] for ln in first_notes.lines
          if ln.startswith("epoch")] == ["epoch 1/2", "epoch 2/2"]
  assert any(ln.startswith("resuming") for ln in again_notes.lines)
  assert again["test_accuracy"] == first["test_accuracy"]


@pytest.mark.parametrize("spec,name", [
    (None, "none"), (pipeline.HintSpec(), "hint"), (pipeline.EpicSpec(),
                                                     "epic"),
    (defences.FriendsConfig(), "friends"), (defences.AtdaConfig(), "atda")])
def test_every_defence_resolves_behind_one_protocol(spec, name,
                                                    digits_convnet,
                                                    digits_splits):
  assert pipeline.defence_name(spec) == name
  cfg = pipeline.resolve_defence(spec, "digits", 20)
  model, _ = digits_convnet
  d = pipeline.make_defence(cfg, model, digits_splits, epochs=20)
  assert isinstance(d, pipeline.JobDefence) and d.name == name
  # Every defence answers the same questions, over a state that is a dict
  # of arrays and JSON-ready data (what the checkpoint keeps).
  state = d.init()
  assert isinstance(state, dict)
  for value in state.values():
    assert isinstance(value, np.ndarray) or json.dumps(value)
  assert d.check(dict(state)).keys() == state.keys()
  assert isinstance(d.record(state), dict)


def test_defence_settings_are_checked_against_the_run():
  with pytest.raises(ConfigError, match="warm-up"):
    pipeline.resolve_defence(pipeline.EpicSpec(warmup=9), "digits", 5)
  with pytest.raises(ConfigError, match="begin epoch"):
    pipeline.resolve_defence(defences.FriendsConfig(begin_epoch=5),
                             "digits", 5)
  with pytest.raises(ConfigError, match="defence must be"):
    pipeline.defence_name("hint")


# -------------------------------------------------------------- structure
def _imports(path: pathlib.Path, module: str, modules=()):
  """The hint_jax modules ``path`` imports (at any depth of the file).
  ``from P import M`` of a module ``P.M`` (one of ``modules``) counts as
  an import of ``P.M`` only; of anything else, as one of ``P``."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:   # relative
        base = ".".join(module.split(".")[:-node.level] + [base]).strip(".")
      for a in node.names:
        sub = f"{base}.{a.name}"
        found.add(sub if sub in modules else base)
  return {m for m in found if m.startswith("hint_jax")}


def _graph():
  modules = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    modules[name] = path
  graph = {}
  for name, path in modules.items():
    graph[name] = _imports(path, name, modules) & set(modules)
    graph[name].discard(name)
  return graph


def test_the_package_has_no_import_cycles():
  graph = _graph()
  state = {}

  def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        cycle = stack[stack.index(nxt):] + [nxt]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])


def test_the_library_never_imports_the_command_line():
  graph = _graph()
  for name, deps in graph.items():
    if not name.startswith("hint_jax.cli"):
      assert not {d for d in deps if d.startswith("hint_jax.cli")}, name
  for script in (PACKAGE.parent / "experiments").rglob("*.py"):
    assert not {m for m in _imports(script, "experiments")
                if m.startswith("hint_jax.cli")}, script


# (table2_mnist_cpu and table3_cifar10_cpu hold cells of earlier settings:
# the published DeepConfuse generator and the scaled schedule changed the
# profiles, and with them the ids.)
@pytest.mark.parametrize("table,folder", [
    ("controls", "controls_cpu"), ("controls_targeted", "controls_cpu")])
def test_committed_cells_still_resolve_to_their_folders(table, folder):
  """A cell's id is a digest of its settings: the committed results of the
  current cpu profiles are found by the runner as finished (a change that
  altered ids without altering settings would orphan them)."""
  from hint_jax.cli.experiment_cmd import flags  # pylint: disable=g-import-not-at-top
  from hint_jax.experiment import runner  # pylint: disable=g-import-not-at-top
  out = PACKAGE.parent / "experiments" / "results" / folder
  outcome = runner.run(runner.RunOptions(table, "cpu", str(out),
                                         dry_run=True), flags())
  done = {cell_id for status, cell_id in outcome.statuses
          if status == "done"}
  manifest = json.loads((out / f"experiment_{table}_cpu.json").read_text())
  committed = {c["id"] for c in manifest["cells"]
               if (out / c["dir"] / "result.json").exists()}
  assert committed and committed <= done


def test_defences_declare_whether_they_need_the_whole_training_set():
  """The multi-host refusal reads each defence's own declaration (HINT,
  EPIC and FRIENDS score or rewrite the whole training set; ATDA and no
  defence train on each process's rows)."""
  from hint_jax.pipeline import defences  # pylint: disable=g-import-not-at-top
  whole = {name: defences.get(name).whole_training_set
           for name in ("none", "hint", "epic", "friends", "atda")}
  assert whole == {"none": False, "hint": True, "epic": True,
                   "friends": True, "atda": False}
  with pytest.raises(ConfigError, match="unknown defence"):
    defences.get("prayer")
