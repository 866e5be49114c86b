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


def save_checkpoint(run_dir, state):
    """Save ``state`` (a dict of tensors and plain values) to ``run_dir/checkpoint.pt`` atomically."""
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    atomic_write(Path(run_dir) / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir, map_location="cpu"):
    """Load and validate ``run_dir/checkpoint.pt``; :class:`RunDirError` says what is wrong."""
    path = Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise RunDirError(f"{path} is missing: {run_dir} holds no checkpoint")
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
