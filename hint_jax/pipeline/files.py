"""Output folders and files of whole jobs: atomic writes with one file mode,
one writer per run folder, and one-line errors for unwritable places.

Every function here names the setting it checks by the ``name`` its caller
gives (the library says "out"; the command line passes "--out"), so an error
reads the same way as the caller's own vocabulary.
"""

import io
import json
import os
import pathlib
import socket
import tempfile

import jax
import numpy as np

from hint_jax.errors import ConfigError, DataError

try:
  import fcntl  # POSIX
except ImportError:  # Windows: no run locks
  fcntl = None

RUN_LOCK = ".lock"


def is_writer() -> bool:
  """Whether this process writes a job's files: process 0 only, so in a
  multi-host run the other processes (which read the same folder on
  resume) never write beside it."""
  return jax.process_index() == 0


def _file_mode() -> int:
  """The mode ``open()`` gives a new file under the current umask."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def write_bytes_atomic(path, data: bytes):
  """Writes ``data`` via a temporary file and a rename, with the same mode
  as any other output (``mkstemp`` alone would give 0600). An interrupted
  or failed write leaves the previous file (or none), never a part."""
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


def write_json_atomic(path, obj):
  """`write_bytes_atomic` of ``obj`` as indented, key-sorted JSON (the
  parent folder is created)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True)
                            + "\n").encode())


def write_npy_atomic(path, array):
  """`write_bytes_atomic` of one array in ``.npy`` format."""
  buf = io.BytesIO()
  np.save(buf, np.asarray(array))
  write_bytes_atomic(path, buf.getvalue())


def write_npz_atomic(path, *arrays, **named):
  """`write_bytes_atomic` of arrays in ``.npz`` format (as ``np.savez``)."""
  buf = io.BytesIO()
  np.savez(buf, *arrays, **named)
  write_bytes_atomic(path, buf.getvalue())


def write_output(path, write, what="the run"):
  """Calls ``write(path)`` and turns an OSError (a full disk, a folder
  made read-only) into one DataError line naming the file; ``what`` says
  what a repeat of the same call will do."""
  try:
    write(path)
  except OSError as e:
    raise DataError(f"cannot write {e.filename or path}: {e.strerror or e}; "
                    f"make room and run {what} again") from None


def _exists(path: pathlib.Path) -> bool:
  try:
    return path.exists()
  except OSError:       # e.g. a name too long for the file system
    return False


def _nearest_existing(path: pathlib.Path) -> pathlib.Path:
  parent = path
  while not _exists(parent) and parent != parent.parent:
    parent = parent.parent
  return parent


def _name_max(folder) -> int:
  try:
    return int(os.pathconf(folder, "PC_NAME_MAX"))
  except (OSError, ValueError, AttributeError):
    return 255


def _check_names(path: pathlib.Path, name: str, what: str):
  """Every part of ``path`` fits the file system's name length."""
  limit = _name_max(_nearest_existing(path))
  for part in path.parts:
    if len(os.fsencode(part)) > limit:
      raise ConfigError(f"{name}: the name {part[:24]}... is "
                        f"{len(os.fsencode(part))} bytes, longer than this "
                        f"file system allows ({limit}); choose a shorter "
                        f"{what}")


def _check_writable(path: pathlib.Path, name: str, what: str):
  """The nearest existing folder at or above ``path`` is writable
  (permissions, and not on a read-only mount)."""
  parent = _nearest_existing(path)
  read_only = False
  try:
    read_only = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
  except (OSError, AttributeError):
    pass
  if read_only or not os.access(parent, os.W_OK | os.X_OK):
    raise ConfigError(f"{name} {path}: {parent} is not writable"
                      f"{' (a read-only file system)' if read_only else ''}"
                      f"; choose another {what}")


def _named(path, name, what) -> pathlib.Path:
  """``path`` as a Path: not empty, each part a name the file system
  accepts."""
  if path is None or not str(path).strip():
    raise ConfigError(f"{name} is empty; name an output "
                      f"{'folder' if what == 'folder' else 'file'}")
  path = pathlib.Path(path)
  _check_names(path, name, what)
  return path


def check_out(path, name="out") -> pathlib.Path:
  """Checks an output folder without creating anything: a non-empty name,
  not an existing file, names the file system accepts, under a folder
  this process may write to.

  Raises:
    ConfigError: one line naming ``name``, the path and what is wrong.
  """
  path = _named(path, name, "folder")
  if path.exists() and not path.is_dir():
    raise ConfigError(f"{name} {path} exists and is not a directory")
  _check_writable(path, name, "folder")
  return path


def check_file(path, name="out", suffixes=None, sibling=None
               ) -> pathlib.Path:
  """Checks an output file path without creating anything: a non-empty
  name, not an existing folder, names the file system accepts (also for
  the ``sibling`` name suffix a job writes beside it, e.g. ``.work``), a
  suffix in ``suffixes`` (lower case, with the dot) when given, in a
  folder this process may write to (or may create).

  Raises:
    ConfigError: one line naming ``name``, the path and what is wrong.
  """
  path = _named(path, name, "file name")
  if sibling:
    _check_names(path.with_name(path.name + sibling), name, "file name")
  if path.is_dir():
    raise ConfigError(f"{name} {path} is a directory; give a file name")
  if suffixes is not None and path.suffix.lower() not in suffixes:
    raise ConfigError(f"{name} {path}: cannot write a "
                      f"{path.suffix or 'suffix-less'} file; use one of "
                      f"{', '.join(sorted(suffixes))}")
  _check_writable(path.parent, name, "file name")
  return path


def figure_suffixes() -> frozenset:
  """The file suffixes matplotlib's Agg canvas writes (".png", ".pdf",
  ...)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  return frozenset("." + k for k in FigureCanvasAgg.get_supported_filetypes())


def check_figure(path, name="out") -> pathlib.Path:
  """`check_file` for a figure: a suffix matplotlib can write."""
  return check_file(path, name, suffixes=figure_suffixes())


def make_out(path, name="out") -> pathlib.Path:
  """Creates a checked output folder (and its parents).

  Raises:
    ConfigError: the folder cannot be created (read-only or special file
      system, no space), one line.
  """
  path = pathlib.Path(path)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ConfigError(f"cannot create {name} {path}: "
                      f"{e.strerror or e}") from None
  return path


def lock_folder(path, name="out"):
  """Takes the exclusive lock ``path/.lock`` for this process (one writer
  per run folder) and writes who holds it there; returns the open file,
  whose closing releases it (None where POSIX locks do not exist).

  Raises:
    ConfigError: another process holds it (the line names it).
  """
  if fcntl is None:
    return None
  f = open(pathlib.Path(path) / RUN_LOCK, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise ConfigError(f"{name} {path} is in use by another run ({holder}); "
                      "wait for it to finish or choose another folder") from None
  f.seek(0)
  f.truncate()
  f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
  f.flush()
  return f


class TakenFolder:
  """An output folder a job has created (if needed) and locked: see
  `take_out`. ``release(failed)`` frees the lock; when the job failed and
  the folder did not exist before it, the folder (and the parents it
  created) is removed if nothing but the lock was written there, so a
  refused job leaves nothing behind."""

  def __init__(self, path: pathlib.Path, created: list, lock):
    self.path = path
    self._created = created      # folders made here, deepest first
    self._lock = lock

  def release(self, failed: bool = False):
    if self._lock is not None:
      self._lock.close()
      self._lock = None
    if not failed:
      return
    for folder in self._created:
      lock = folder / RUN_LOCK
      try:
        if lock.exists() and [c.name for c in folder.iterdir()] == [RUN_LOCK]:
          lock.unlink()
        folder.rmdir()            # only succeeds on an empty folder
      except OSError:
        return
    self._created = []


def take_out(path, name="out", lock=True) -> TakenFolder:
  """Creates ``path`` (`make_out`) and takes its lock (`lock_folder`,
  on the writing process when ``lock``).

  Raises:
    ConfigError: as `make_out` and `lock_folder`.
  """
  path = pathlib.Path(path)
  created, parent = [], path
  while not parent.exists() and parent != parent.parent:
    created.append(parent)
    parent = parent.parent
  make_out(path, name)
  try:
    handle = lock_folder(path, name) if lock else None
  except ConfigError:
    TakenFolder(path, created, None).release(failed=True)
    raise
  return TakenFolder(path, created, handle)


def work_dir(out, settings: dict, name="out") -> pathlib.Path:
  """``OUT.work/``, where a crafting job keeps what it has finished so
  far, created for ``settings``; a folder left by a run with other
  settings is refused (ConfigError) rather than mixed in."""
  out = pathlib.Path(out)
  work = make_out(out.with_name(out.name + ".work"), name)
  key_file = work / "settings.json"
  if key_file.exists() and json.loads(key_file.read_text()) != settings:
    raise ConfigError(f"{work} holds an interrupted run with other "
                      f"settings; delete it or use another {name}")
  key_file.write_text(json.dumps(settings))
  return work
