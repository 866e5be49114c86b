"""Run directories: config, seed, library versions, history, metrics, figures and checkpoints.

Layout of a run directory::

    config.json      every option of the run, the seed included
    versions.json    Python, torch, Pyro, NumPy, ArviZ versions and the platform
    history.csv      one row per epoch
    metrics.json     final numbers (nats per data point, seconds)
    checkpoint.pt    parameters, optimiser and RNG states, written each epoch
    figures/*.png

Every file is written atomically (:func:`atomic_write`): to a temporary file in the same directory,
flushed to disk, then renamed over the old one, so a crash mid-write leaves the previous version intact.
"""

import csv
import io
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from .errors import RunDirError

FORMAT = "pyro-vae-run"
FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.pt"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Write a file atomically: ``write(tmp)`` fills a temporary file beside ``path``, which is then
    flushed to disk, given the usual permissions and renamed over ``path``.  A failure at any point
    leaves the previous file intact and no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; results are for reading
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path} cannot be read: {error}") from None


def write_csv(path, rows):
    """Rows (dicts) as CSV, atomically; the columns are every key, in order of first appearance, and a
    row without a column leaves its cell empty."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def library_versions():
    import numpy
    import pyro

    versions = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "numpy": numpy.__version__,
    }
    try:
        from importlib.metadata import version

        versions["arviz"] = version("arviz")
        versions["pyro-vae"] = version("pyro-vae")
    except Exception:  # metadata is informative only; a source checkout may lack it
        pass
    return versions


class RunDir:
    """A run directory and its layout (module doc): the one place that writes and reads a fit's files.

    :param path: the directory (created by :meth:`start`).
    """

    CONFIG, VERSIONS, HISTORY, METRICS, CHECKPOINT = "config.json", "versions.json", "history.csv", "metrics.json", CHECKPOINT

    def __init__(self, path):
        self.path = Path(path)

    def __str__(self):
        return str(self.path)

    def has_checkpoint(self):
        return (self.path / self.CHECKPOINT).is_file()

    def start(self, config, resume):
        """Create the directory with ``config`` and the library versions, or, with ``resume``, check that
        the saved run had the same options (``epochs`` may differ) and return its checkpoint."""
        if resume:
            checkpoint = self.load_checkpoint()
            saved = checkpoint["config"]
            differing = sorted(k for k in set(saved) | set(config) if k != "epochs" and saved.get(k) != config.get(k))
            if differing:
                raise RunDirError(
                    f"cannot resume {self.path}: options differ from the saved run in "
                    + ", ".join(f"{k} (saved {saved.get(k)!r}, now {config.get(k)!r})" for k in differing)
                )
            write_json(self.path / self.CONFIG, config)
            return checkpoint
        if self.path.exists() and any(self.path.iterdir()):
            raise RunDirError(f"{self.path} already holds files; pass resume=True (--resume) to continue it, or choose an empty directory")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / self.CONFIG, config)
        write_json(self.path / self.VERSIONS, library_versions())
        return None

    def save_epoch(self, checkpoint, history):
        """The checkpoint first, then the history: ``history.csv`` never lists an epoch the checkpoint lacks."""
        state = {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint}
        atomic_write(self.path / self.CHECKPOINT, lambda tmp: torch.save(state, tmp))
        write_csv(self.path / self.HISTORY, history)

    def write_metrics(self, metrics):
        write_json(self.path / self.METRICS, metrics)

    def config(self):
        return read_json(self.path / self.CONFIG)

    def metrics(self):
        path = self.path / self.METRICS
        return read_json(path) if path.exists() else {}

    def load_checkpoint(self, map_location="cpu"):
        """Load and validate the checkpoint; :class:`RunDirError` says what is wrong."""
        path = self.path / self.CHECKPOINT
        if not self.path.is_dir():
            raise RunDirError(f"run directory {self.path} does not exist")
        if not path.is_file():
            raise RunDirError(f"{path} is missing: {self.path} holds no checkpoint")
        try:
            state = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as error:
            raise RunDirError(f"{path} is truncated or corrupt ({type(error).__name__}: {error})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise RunDirError(f"{path} is not a pyro-vae checkpoint")
        if state.get("format_version") != FORMAT_VERSION:
            raise RunDirError(
                f"{path} was written by checkpoint format {state.get('format_version')}; this pyro-vae reads format {FORMAT_VERSION}"
            )
        return state
