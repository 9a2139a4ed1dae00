"""The ``hint-jax`` command."""

import sys

from hint_jax import plugins
from hint_jax.cli import common
from hint_jax.errors import HintJaxError


def build_parser():
  parser = common.OneLineParser(
      prog="hint-jax", description="HINT defence against data poisoning, "
      "in JAX.")
  parser.add_argument(
      "--plugin", action="append", default=[], metavar="FILE.py|MODULE",
      help="load a plug-in (a file or module that registers a defence) "
      "before the command; repeatable; also $HINT_JAX_PLUGINS")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                              parser_class=common.OneLineParser)
  sub.required = True
  # Imported here so `hint-jax --help` stays fast.
  from hint_jax.cli import attribute_cmd, bench_cmd, demo_cmd, experiment_cmd, figure_cmd, groundtruth_cmd, influence_cmd, poison_cmd, report_cmd, target_poison_cmd, train_cmd  # pylint: disable=g-import-not-at-top
  train_cmd.register(sub)
  demo_cmd.register(sub)
  bench_cmd.register(sub)
  influence_cmd.register(sub)
  attribute_cmd.register(sub)
  groundtruth_cmd.register(sub)
  figure_cmd.register(sub)
  poison_cmd.register(sub)
  target_poison_cmd.register(sub)
  experiment_cmd.register(sub)
  report_cmd.register(sub)
  return parser


def _plugin_args(argv):
  """The ``--plugin`` values before the command (they must be loaded
  before the parser is built: a plug-in adds names and options)."""
  found, i = [], 0
  while i < len(argv) and argv[i].startswith("-"):
    if argv[i] == "--plugin" and i + 1 < len(argv):
      found.append(argv[i + 1])
      i += 2
      continue
    if argv[i].startswith("--plugin="):
      found.append(argv[i].split("=", 1)[1])
    i += 1
  return found


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    plugins.load_all(plugins.from_environment() + _plugin_args(argv))
    parser = build_parser()   # a plug-in's options are added here
  except HintJaxError as e:
    print(f"hint-jax: error: {e}", file=sys.stderr)
    return 2
  args = parser.parse_args(argv)
  try:
    return int(args.func(args) or 0)
  except HintJaxError as e:
    print(f"hint-jax: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("hint-jax: interrupted; finished epochs are saved - run the same "
          "command again to resume", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
