"""The sweep tasks that ``test_ray.py`` runs on Ray workers.

It lives in a module of its own, not in the test file, so that a worker can import it by name:
cloudpickle sends a module-level function as a reference (``ray_tasks.count_runs``) that the worker
imports, and the tests' Ray puts this folder on its workers' ``PYTHONPATH``.  The task leaves in its
run directory what the tests check: how often it ran (``runs.txt``) and which process ran it (``pid``).
"""

import os
import time
from pathlib import Path

import ray

from pyro_vae.files import atomic_write_bytes

WAIT_SECONDS = 60  # how long a task waits for the files it is told to wait for, at most


def _wait_for_files(paths):
    deadline = time.monotonic() + WAIT_SECONDS
    while not all(Path(p).exists() for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {WAIT_SECONDS} s for {paths}")
        time.sleep(0.05)


def count_runs(run_dir, value, wait_for=(), fail_marker=None):
    """Count this run and note this process; once the ``wait_for`` files exist, fail if ``fail_marker``
    exists.

    Waiting for files makes the order deterministic: a task told to wait for the others' results fails
    only after they finished, so a test knows which fits a failed sweep kept.
    :returns: ``value`` and the id of the Ray job that ran the task.
    """
    runs = run_dir / "runs.txt"
    runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
    atomic_write_bytes(run_dir / "pid", str(os.getpid()).encode())  # never seen empty
    _wait_for_files(wait_for)
    if fail_marker is not None and Path(fail_marker).exists():
        raise RuntimeError(f"task {run_dir.name} fails while {Path(fail_marker).name} exists")
    return {"value": value, "job": ray.get_runtime_context().get_job_id()}


def sleep_or_fail(run_dir, seconds=0.0, wait_for=(), error=None):
    """Note this process (``pid``), wait for the ``wait_for`` files, then raise ``error`` if given, else
    sleep ``seconds``: a long fit that a failing one must stop, or the failing one."""
    atomic_write_bytes(run_dir / "pid", str(os.getpid()).encode())  # never seen empty
    _wait_for_files(wait_for)
    if error is not None:
        raise RuntimeError(error)
    time.sleep(seconds)
    return {"slept": seconds}
