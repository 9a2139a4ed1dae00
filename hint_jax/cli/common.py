"""Shared command-line plumbing: one-line errors, progress bars, files."""

import argparse
import sys
import time

from hint_jax.errors import ConfigError
from hint_jax.pipeline import files, options


def check_out(path):
  """`hint_jax.pipeline.files.check_out` of an ``--out`` argument."""
  return files.check_out(path, "--out")


def check_out_file(path):
  """An ``--out`` file name of a crafting job (not a folder; its ``.work``
  folder beside it): `hint_jax.pipeline.files.check_file`."""
  return files.check_file(path, "--out", sibling=".work")


write_json_atomic = files.write_json_atomic


class OneLineParser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line (no usage dump)."""

  def error(self, message):
    self.exit(2, f"hint-jax: error: {message} (see {self.prog} --help)\n")


def command_parser(*registers):
  """A ``hint-jax`` parser with only the commands whose ``register``
  functions are given (a command that runs others parses their argv with
  it, without importing the whole command line)."""
  parser = OneLineParser(prog="hint-jax")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                              parser_class=OneLineParser)
  sub.required = True
  for register in registers:
    register(sub)
  return parser


def _argument_type(read):
  """A library reader (raises ValueError) as an argparse type."""
  def parse(text):
    try:
      return read(text)
    except ValueError as e:
      raise argparse.ArgumentTypeError(str(e)) from None
  parse.__name__ = getattr(read, "__name__", "value")
  return parse


positive_int = _argument_type(options.whole_number(1))
nonneg_int = _argument_type(options.whole_number(0))
finite_float = _argument_type(options.number)
positive_float = _argument_type(options.positive_number)


def add_option(group, option: options.Option):
  """Adds a plug-in's declared `Option` to an argparse group."""
  if option.read is None:
    group.add_argument(option.flag, dest=option.dest,
                       action="store_const", const=option.switch,
                       default=option.default, help=option.help or None)
    return
  group.add_argument(option.flag, dest=option.dest,
                     type=_argument_type(option.read),
                     default=option.default, choices=option.choices,
                     metavar=option.metavar, help=option.help or None)


def add_kind_options(p, kinds, what: str):
  """Each registered kind's (a defence's, an attack's) `Option`s in an
  argument group of its own; an option that clashes with another is one
  line naming ``what`` and the kind."""
  for kind in kinds:
    if not kind.options:
      continue
    group = p.add_argument_group(kind.help or kind.label)
    for option in kind.options:
      try:
        add_option(group, option)
      except argparse.ArgumentError as e:
        raise ConfigError(f"{what} {kind.name}: option {option.flag} cannot "
                          f"be added ({e})") from None


# Without a terminal (a log file, nohup), progress is written as plain
# lines, at most one per LOG_INTERVAL seconds per bar, so a long run shows
# it is alive without flooding its log.
LOG_INTERVAL = 60.0


class _LogLines:
  """Progress as occasional plain lines on stderr (no terminal)."""

  def __init__(self, interval=LOG_INTERVAL, clock=time.monotonic):
    self.interval = interval
    self.clock = clock
    self.last = clock()

  def __call__(self, text):
    now = self.clock()
    if now - self.last >= self.interval:
      self.last = now
      info(text)


class Progress:
  """A tqdm bar over training steps when stderr is a terminal (or
  ``enabled=True``); a plain line at most every `LOG_INTERVAL` seconds when
  it is not (``enabled=None``); silent with ``enabled=False``. Used as the
  loop's ``on_progress`` callback."""

  def __init__(self, enabled=None, desc="train"):
    self.lines = None
    if enabled is None:
      enabled = sys.stderr.isatty()
      if not enabled:
        self.lines = _LogLines()
    self.enabled = enabled
    self.desc = desc
    self.bar = None
    self.epoch = None

  def __call__(self, epoch, done, total, mean_loss):
    if self.lines is not None:
      self.lines(f"{self.desc} epoch {epoch + 1}: {done}/{total} steps, "
                 f"loss {mean_loss:.4f}")
      return
    if not self.enabled:
      return
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    if self.epoch != epoch:
      self.close()
      self.bar = tqdm(total=total, desc=f"{self.desc} epoch {epoch + 1}",
                      unit="step", leave=False, file=sys.stderr)
      self.epoch = epoch
    self.bar.update(done - self.bar.n)
    self.bar.set_postfix(loss=f"{mean_loss:.4f}")

  def close(self):
    if self.bar is not None:
      self.bar.close()
      self.bar = None


class CliReporter:
  """A `hint_jax.pipeline.Reporter` for the terminal: training steps and
  long passes as progress bars (``progress`` None: bars on a terminal,
  occasional lines otherwise; False: none), notes on stderr."""

  def __init__(self, progress=None, desc="train"):
    self.bar = Progress(progress, desc=desc)
    self.stages = StageProgress(progress)

  def note(self, text):
    self.pause()
    info(text)

  def steps(self, epoch, done, total, mean_loss):
    self.bar(epoch, done, total, mean_loss)

  def stage(self, name, done, total):
    self.stages(name, done, total)

  def pause(self):
    self.bar.close()
    self.stages.close()


def info(msg):
  """Status lines go to stderr so stdout stays machine-readable."""
  print(msg, file=sys.stderr, flush=True)


class StageProgress:
  """A tqdm bar per named stage, for ``(stage, done, total)`` callbacks
  (HINT's passes, the attacks' steps) when stderr is a terminal; plain
  lines at most every `LOG_INTERVAL` seconds when it is not
  (``enabled=None``); silent with ``enabled=False``."""

  def __init__(self, enabled=None, prefix=""):
    self.lines = None
    if enabled is None:
      enabled = sys.stderr.isatty()
      if not enabled:
        self.lines = _LogLines()
    self.enabled = enabled
    self.prefix = prefix
    self.bar = None
    self.stage = None

  def __call__(self, stage, done, total):
    if self.lines is not None:
      self.lines(f"{self.prefix}{stage}: {done}/{total}")
      return
    if not self.enabled:
      return
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    if self.stage != stage or self.bar is None or done < self.bar.n:
      self.close()
      self.bar = tqdm(total=total, desc=f"{self.prefix}{stage}",
                      unit="img", leave=False, file=sys.stderr)
      self.stage = stage
    self.bar.update(done - self.bar.n)
    if done >= total:
      self.close()

  def close(self):
    if self.bar is not None:
      self.bar.close()
      self.bar = None
