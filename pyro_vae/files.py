"""Files on disk, written and read so that nothing is lost and nothing received can run code.

* :func:`atomic_write`: every file goes to a temporary file beside its target, is flushed to disk and
  renamed over the old one, so a crash mid-write leaves the previous version intact; a full disk,
  a read-only file system or a missing permission is one :class:`~pyro_vae.errors.RunDirError` line
  that says so (:func:`os_error_text`).
* :func:`save_tensors` / :func:`load_tensors`: tensors and plain data (dicts, lists, numbers, strings)
  only.  Loading uses ``torch.load(weights_only=True)``, whose unpickler refuses every class but
  tensors and the probability constraints of torch and Pyro (what a parameter store holds), so a
  pickle planted in a received run directory is refused in one line instead of being run.
* :func:`make_directory`: an output directory, or one line on why it cannot be one.
* :class:`DirectoryLock`: one writer per directory at a time (``flock`` on ``.lock``, which names its
  holder); taking it removes the temporary files that interrupted writes left behind.
"""

import csv
import errno
import fcntl
import inspect
import io
import json
import os
import socket
import tempfile
import time
import warnings
from pathlib import Path

import torch

from . import checks
from .errors import RunDirError, UnsafeFileError

LOCK = ".lock"
TEMPORARY_GLOB = ".*.tmp"  # what atomic_write's temporary files look like

_OS_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENAMETOOLONG: "a file name is too long (at most 255 bytes per name)",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory",
    errno.EEXIST: "a file of that name exists",
}


def os_error_text(error):
    """A reader's words for an ``OSError`` (``ENOSPC`` is "the disk is full")."""
    return _OS_ERRORS.get(error.errno, error.strerror or str(error))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Write a file atomically: ``write(tmp)`` fills a temporary file beside ``path``, which is then
    flushed to disk, given the usual permissions and renamed over ``path``.  A failure at any point
    leaves the previous file intact and no temporary file behind; an ``OSError`` becomes a
    :class:`RunDirError` naming the file and the reason."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        write(tmp)
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; results are for reading
        os.replace(tmp, path)
    except OSError as error:
        raise RunDirError(f"cannot write {path}: {os_error_text(error)}; any previous {path.name} is intact") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path, obj):
    """``obj`` as indented JSON, atomically, its keys in the order they were made (the order of meaning, which the
    report and the terminal show), not sorted."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def write_csv(path, rows):
    """Rows (dicts) as CSV, atomically; the columns are every key, in order of first appearance, and a
    row without a column leaves its cell empty."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


#: The largest JSON, CSV or figure file read from a run or analysis directory.
MAX_RECEIVED_FILE_BYTES = 256 * 2**20


def read_received(path, limit=MAX_RECEIVED_FILE_BYTES):
    """The bytes of a file of a run or analysis directory: a regular file of at most ``limit`` bytes (a
    received directory may hold a link to ``/dev/zero`` or a huge file), or one :class:`RunDirError` line."""
    if not os.path.lexists(path):
        raise RunDirError(f"{path} is missing")
    checks.named_file(path, "file", limit, error=RunDirError)
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise RunDirError(f"cannot read {path}: {os_error_text(error)}") from None


def read_json(path, kind=None):
    """A JSON file; with ``kind`` (``dict``, ``list``) the top level must be of that type."""
    try:
        value = json.loads(read_received(path))
    except RecursionError:
        raise RunDirError(f"{path} cannot be read: nested too deeply") from None
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path} cannot be read: {error}") from None
    if kind is not None and not isinstance(value, kind):
        raise RunDirError(f"{path} must hold a JSON {'object' if kind is dict else kind.__name__}, "
                          f"found {type(value).__name__}")
    return value


def _constraint_classes():
    """The classes a parameter store's constraints are made of (torch's and Pyro's)."""
    import pyro.distributions.constraints as pyro_constraints
    from torch.distributions import constraints

    return sorted({value for module in (constraints, pyro_constraints) for value in vars(module).values()
                   if inspect.isclass(value) and issubclass(value, constraints.Constraint)}, key=lambda c: c.__qualname__)


def save_tensors(path, state):
    """``state`` (tensors and plain data) to ``path`` atomically.  Serialised in memory first, so a full
    disk surfaces as the ``OSError`` it is rather than as torch's ``inline_container`` error, and read back
    as :func:`load_tensors` will read it: a state holding any other object (a user's class) is refused
    here, in one line, rather than written as a file pyro-vae would then refuse to load."""
    import pickle

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    try:
        with torch.serialization.safe_globals(_constraint_classes()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(buffer, weights_only=True)
    except pickle.UnpicklingError as error:
        found = str(error).split("Unsupported global: GLOBAL ")[-1].split(" ")[0] if "GLOBAL" in str(error) else "an object"
        raise RunDirError(f"cannot write {path}: it would hold {found}, which is no tensor or plain data and which "
                          f"pyro-vae could not read back safely; keep such objects out of parameters, buffers and "
                          f"the optimiser state") from None
    atomic_write_bytes(path, buffer.getvalue())


def load_tensors(path, map_location="cpu"):
    """What :func:`save_tensors` wrote, loaded without running code (module doc).

    :raises UnsafeFileError: the file holds anything but tensors, plain data and constraints (a planted pickle).
    :raises RunDirError: the file is missing, truncated or corrupt.
    """
    import pickle

    if os.path.lexists(path):  # a device or a file larger than the memory here is refused before it is read
        checks.named_file(path, "tensor file", checks.memory_available(), error=RunDirError)
    try:
        with torch.serialization.safe_globals(_constraint_classes()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on a foreign pickle protocol: the refusal below says more
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise UnsafeFileError(f"{path} holds objects other than tensors and plain data; refused, since loading it "
                              "could run code (pyro-vae writes no such file)") from None
        raise RunDirError(f"{path} is truncated or corrupt (UnpicklingError: {str(error).splitlines()[0]})") from None
    except Exception as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RunDirError(f"{path} is truncated or corrupt ({type(error).__name__}: {text})") from None


def check_directory_target(path, what="output directory"):
    """Raise :class:`RunDirError` in one line unless ``path`` is, or could be created as, a directory
    to write in; creates nothing (a refused command changes nothing on disk)."""
    path = Path(path)
    limit = 255
    long_name = next((part for part in path.parts if len(os.fsencode(part)) > limit), None)
    if long_name is not None:
        raise RunDirError(f"{what} {path}: the name {long_name[:20]}... is {len(os.fsencode(long_name))} bytes long, "
                          f"longer than the {limit} a file system takes")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise RunDirError(f"{what} {path}: {existing} is a file, not a directory; choose a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "the file system is read-only" if _read_only(existing) else "permission denied"
        raise RunDirError(f"cannot write into {what} {path}: {reason}")
    return path


def check_file_target(path, what="output file"):
    """Raise :class:`RunDirError` in one line unless ``path`` could be written as a file (its folder is, or
    could be created as, a directory to write in, and ``path`` is no directory); creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise RunDirError(f"{what} {path} is a directory; name a file")
    check_directory_target(path.parent, f"the folder of {what}")
    if len(os.fsencode(path.name)) > 255:
        raise RunDirError(f"{what} {path}: the name is longer than the 255 bytes a file system takes")
    return path


def make_directory(path, what="output directory"):
    """Create ``path`` with its parents, or raise :class:`RunDirError` in one line on why it cannot be
    a directory to write in (:func:`check_directory_target`, or a full disk)."""
    path = check_directory_target(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create {what} {path}: {os_error_text(error)}") from None
    return path


def _read_only(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def holds_files(path, ignore=(LOCK,)):
    """Whether the directory ``path`` holds anything but ``ignore`` and interrupted writes' temporary files."""
    path = Path(path)
    return path.is_dir() and any(entry.name not in ignore and not entry.match(TEMPORARY_GLOB) for entry in path.iterdir())


class DirectoryLock:
    """An exclusive lock on a directory while one process writes it.

    ``flock`` on ``DIR/.lock`` (released by the kernel when the holder exits, however it exits); the
    file names the holder (pid, host, start time) for the refusal a second writer gets.  The file
    stays after release (removing it would let two writers lock two different files).  Taking the
    lock removes the temporary files of interrupted writes: no writer can be using them.

    Use as ``with DirectoryLock(path, "run directory"): ...`` or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, path, what="directory"):
        self.path, self.what, self._fd = Path(path), what, None

    def acquire(self):
        make_directory(self.path, self.what)
        lock = self.path / LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as error:
            raise RunDirError(f"cannot lock {self.what} {self.path}: {os_error_text(error)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirError(f"{self.what} {self.path} is being written by {holder}; wait until it ends, "
                              "or choose another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        self._fd = fd
        for leftover in [*self.path.glob(TEMPORARY_GLOB), *self.path.glob(f"figures/{TEMPORARY_GLOB}")]:
            leftover.unlink(missing_ok=True)
        return self

    def release(self):
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
