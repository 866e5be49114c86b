"""Progress for long work (fits, sweeps, evaluations), shown only where a person watches.

Inside a sweep (:mod:`pyro_vae.sweep`) a fit runs in a worker process, maybe on another machine, so
its own bar is off; it reports its epochs instead to a small file in its task directory
(:func:`reporting_to`, :func:`report_epoch`), and the sweep's bar shows each running fit's epoch
(:func:`read_report`).  A file works alike for worker processes and Ray tasks on shared storage, and
costs one small atomic write per epoch.
"""

import contextlib
import json

from .files import write_json

#: The file of the task directory where a fit in a sweep reports its epochs.
REPORT = "progress.json"
_report_path = None  # set in a sweep worker while it runs one task


def progress_bar(iterable=None, progress=None, **kwargs):
    """A ``tqdm`` bar; ``progress=None`` shows it only when stderr is a terminal, True/False force it."""
    import sys

    from tqdm.auto import tqdm

    enabled = sys.stderr.isatty() if progress is None else progress
    return tqdm(iterable, disable=not enabled, dynamic_ncols=True, **kwargs)


@contextlib.contextmanager
def reporting_to(task_dir):
    """While this runs, :func:`report_epoch` writes to ``task_dir/progress.json``."""
    global _report_path
    previous, _report_path = _report_path, None if task_dir is None else f"{task_dir}/{REPORT}"
    try:
        yield
    finally:
        _report_path = previous


def report_epoch(epoch, epochs):
    """Say that a fit has finished ``epoch`` of ``epochs``, where a sweep listens (else do nothing)."""
    if _report_path is not None:
        write_json(_report_path, {"epoch": int(epoch), "epochs": int(epochs)})


def read_report(task_dir):
    """``"epoch e/E"`` from a task's progress file, or None before its first epoch (or if unreadable:
    progress is a courtesy, never a reason to stop a sweep)."""
    try:
        with open(f"{task_dir}/{REPORT}") as stream:
            report = json.load(stream)
        return f"epoch {report['epoch']}/{report['epochs']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None
