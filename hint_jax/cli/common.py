"""Shared command-line plumbing: one-line errors, progress bars, files."""

import argparse
import json
import os
import pathlib
import socket
import sys
import tempfile
import time

from hint_jax.errors import ConfigError

try:
  import fcntl  # POSIX
except ImportError:  # Windows: no run locks
  fcntl = None


class OneLineParser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line (no usage dump)."""

  def error(self, message):
    self.exit(2, f"hint-jax: error: {message} (see {self.prog} --help)\n")


def positive_int(text):
  return _int_at_least(text, 1)


def nonneg_int(text):
  return _int_at_least(text, 0)


def _int_at_least(text, low):
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
  if value < low:
    raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
  return value


def finite_float(text):
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number")
  if value != value or value in (float("inf"), float("-inf")):
    raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
  return value


def positive_float(text):
  value = finite_float(text)
  if not value > 0:
    raise argparse.ArgumentTypeError(f"must be a finite number > 0, "
                                     f"got {text}")
  return value


def write_json_atomic(path, obj):
  """Writes JSON via a temporary file and a rename, so an interrupted write
  never leaves a truncated file."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True)
                            + "\n").encode())


def _file_mode() -> int:
  """The mode ``open()`` gives a new file under the current umask."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def write_bytes_atomic(path, data: bytes):
  """Writes ``data`` via a temporary file and a rename, with the same mode
  as any other output (``mkstemp`` alone would give 0600)."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, _file_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def check_out(path) -> pathlib.Path:
  """Checks an ``--out`` folder without creating anything: a non-empty
  name, not an existing file, under a folder this process may write to.

  Raises:
    ConfigError: one line naming the path and what is wrong.
  """
  if path is None or not str(path).strip():
    raise ConfigError("--out is empty; name an output folder")
  path = pathlib.Path(path)
  if path.exists() and not path.is_dir():
    raise ConfigError(f"--out {path} exists and is not a directory")
  parent = path
  while not parent.exists() and parent != parent.parent:
    parent = parent.parent
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ConfigError(f"--out {path}: {parent} is not writable; choose "
                      "another folder")
  return path


def make_out(path) -> pathlib.Path:
  """Creates a checked ``--out`` folder (and its parents).

  Raises:
    ConfigError: the folder cannot be created (read-only or special file
      system, no space), one line.
  """
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"cannot create --out {path}: "
                      f"{e.strerror or e}") from None
  return path


RUN_LOCK = ".lock"


def lock_folder(path: pathlib.Path):
  """Takes the exclusive lock ``path/.lock`` for this process (one writer
  per run folder) and writes who holds it there; returns the open file,
  whose closing releases it (None where POSIX locks do not exist).

  Raises:
    ConfigError: another process holds it (the line names it).
  """
  if fcntl is None:
    return None
  f = open(path / RUN_LOCK, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise ConfigError(f"--out {path} is in use by another run ({holder}); "
                      "wait for it to finish or choose another folder") from None
  f.seek(0)
  f.truncate()
  f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
  f.flush()
  return f


def out_dir(path) -> pathlib.Path:
  """`check_out`, then `make_out`."""
  return make_out(check_out(path))


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


def work_dir(out, settings: dict) -> pathlib.Path:
  """``OUT.work/``, where a crafting command keeps what it has finished so
  far, created for ``settings``; a folder left by a run with other
  settings is refused (ConfigError) rather than mixed in."""
  out = pathlib.Path(out)
  work = out.with_name(out.name + ".work")
  work.mkdir(parents=True, exist_ok=True)
  key_file = work / "settings.json"
  if key_file.exists() and json.loads(key_file.read_text()) != settings:
    raise ConfigError(f"{work} holds an interrupted run with other "
                      f"settings; delete it or use another --out")
  key_file.write_text(json.dumps(settings))
  return work
