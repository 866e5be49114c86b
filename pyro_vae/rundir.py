"""Run directories: config, seed, library versions, history, metrics, figures and checkpoints.

Layout of a run directory::

    config.json      every option of the run, the seed included
    versions.json    Python, torch, Pyro, NumPy, ArviZ versions and the platform
    history.csv      one row per epoch
    metrics.json     final numbers (nats per data point, seconds)
    checkpoint.pt    parameters, optimiser and RNG states, written each epoch
    figures/*.png

Every file is written atomically (:func:`pyro_vae.files.atomic_write`), a checkpoint holds tensors and
plain data only and is loaded without running code (:func:`pyro_vae.files.load_tensors`), and a fit
holds the directory's lock (:class:`pyro_vae.files.DirectoryLock`) while it writes.  A directory that
holds no finished epoch (a fit stopped before its first checkpoint) is no dead end: it can be re-run,
or resumed, from scratch.
"""

import platform
import sys
from pathlib import Path

import torch

from .errors import RunDirError
from .files import LOCK, DirectoryLock, check_directory_target, holds_files, load_tensors, read_json, save_tensors, write_csv, write_json

FORMAT = "pyro-vae-run"
FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.pt"
#: what a checkpoint holds, each of these types (:meth:`Trainer.checkpoint`)
CHECKPOINT_ENTRIES = {"epoch": int, "step": int, "history": list, "param_store": dict, "optimizer": dict, "rng": dict,
                      "config": dict}


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
        self._lock = None

    def __str__(self):
        return str(self.path)

    def has_checkpoint(self):
        return (self.path / self.CHECKPOINT).is_file()

    def start(self, config, resume):
        """Take the directory for a fit with ``config``: create it with the config and the library versions,
        or, with ``resume``, check that the saved run had the same options (``epochs`` may grow) and
        return its checkpoint (None where no epoch had finished: the fit starts from scratch).

        Every refusal comes before anything is written; an accepted start holds the directory's lock
        until :meth:`release`."""
        checkpoint = self._check_start(config, resume)
        self._lock = DirectoryLock(self.path, "run directory").acquire()
        try:
            checkpoint = self._check_start(config, resume)  # again under the lock: another fit may have written
            write_json(self.path / self.CONFIG, config)
            if checkpoint is None:
                write_json(self.path / self.VERSIONS, library_versions())
        except BaseException:
            self.release()
            raise
        return checkpoint

    def _check_start(self, config, resume):
        check_directory_target(self.path, "run directory")
        unfinished = not self.has_checkpoint()
        if resume and unfinished:
            if not self.path.is_dir():
                raise RunDirError(f"run directory {self.path} does not exist; leave out --resume to start it")
            if holds_files(self.path, ignore=self._START_FILES):
                raise RunDirError(f"{self.path} holds no checkpoint but other files; it is not a run directory to resume")
            return None
        if not resume:
            if not unfinished:
                raise RunDirError(f"{self.path} already holds a run with a checkpoint; pass resume=True (--resume) to "
                                  "continue it, or choose an empty directory")
            if holds_files(self.path, ignore=self._START_FILES):
                raise RunDirError(f"{self.path} already holds files; choose an empty directory")
            return None
        checkpoint = self.load_checkpoint()
        saved = checkpoint["config"]
        differing = sorted(k for k in set(saved) | set(config) if k != "epochs" and saved.get(k) != config.get(k))
        if differing:
            raise RunDirError(
                f"cannot resume {self.path}: options differ from the saved run in "
                + ", ".join(f"{k} (saved {saved.get(k)!r}, now {config.get(k)!r})" for k in differing)
            )
        if config.get("epochs", checkpoint["epoch"]) < checkpoint["epoch"]:
            raise RunDirError(f"cannot resume {self.path} for {config['epochs']} epochs: it has finished {checkpoint['epoch']}; "
                              f"ask for {checkpoint['epoch']} or more")
        return checkpoint

    #: what a start leaves before the first epoch finishes (such a directory may be started again)
    _START_FILES = (LOCK, CONFIG, VERSIONS)

    def release(self):
        """Release the lock :meth:`start` took (the kernel does it too when the process ends)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def save_epoch(self, checkpoint, history):
        """The checkpoint first, then the history: ``history.csv`` never lists an epoch the checkpoint lacks."""
        save_tensors(self.path / self.CHECKPOINT, {"format": FORMAT, "format_version": FORMAT_VERSION, **checkpoint})
        write_csv(self.path / self.HISTORY, history)

    def write_metrics(self, metrics):
        write_json(self.path / self.METRICS, metrics)

    def config(self):
        return read_json(self.path / self.CONFIG, kind=dict)

    def metrics(self):
        path = self.path / self.METRICS
        return read_json(path, kind=dict) if path.exists() else {}

    def finished_epochs(self):
        """Epochs the checkpoint holds (0 without one), for messages after an interruption."""
        try:
            return self.load_checkpoint()["epoch"]
        except RunDirError:
            return 0

    def load_checkpoint(self, map_location="cpu"):
        """Load and validate the checkpoint (no code runs: :func:`~pyro_vae.files.load_tensors`);
        :class:`RunDirError` says what is wrong in one line."""
        path = self.path / self.CHECKPOINT
        if not self.path.is_dir():
            raise RunDirError(f"run directory {self.path} does not exist")
        if not path.is_file() and not path.is_symlink():  # a link to a device is refused by load_tensors
            raise RunDirError(f"{path} is missing: {self.path} holds no checkpoint")
        state = load_tensors(path, map_location)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise RunDirError(f"{path} is not a pyro-vae checkpoint")
        if state.get("format_version") != FORMAT_VERSION:
            raise RunDirError(
                f"{path} was written by checkpoint format {state.get('format_version')}; this pyro-vae reads format {FORMAT_VERSION}"
            )
        for key, kind in CHECKPOINT_ENTRIES.items():
            if not isinstance(state.get(key), kind):
                raise RunDirError(f"{path} is incomplete: its entry {key!r} is {type(state.get(key)).__name__ if key in state else 'missing'}, "
                                  f"expected {kind.__name__}")
        return state
