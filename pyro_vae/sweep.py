"""Run many independent fits (a sweep) in parallel, resumably, on local processes or a Ray cluster.

A sweep is a mapping ``{key: kwargs}`` and one function ``task(run_dir, **kwargs) -> dict`` that
does one fit and returns its numbers (JSON-serialisable).  Each task gets its own directory
``out/<key>/``; its result is written there atomically as ``result.json`` when it finishes, so a
sweep started again skips every finished task, and a task may keep a checkpoint in its directory
to resume mid-fit (``fit(..., out=run_dir / "fit", resume=...)``).

Executors (``executor=``):

* ``serial``: one task after another in this process (the reference; easiest to debug);
* ``local`` (default): a pool of worker processes on this machine, one torch thread each
  (``spawn`` start method, so CUDA and forked BLAS thread pools stay safe);
* ``ray``: one Ray task per fit on the cluster ``ray.init(address=...)`` connects to
  (``pip install "pyro-vae[ray]"``); set ``RAY_ADDRESS`` or pass ``address=`` to reach a cluster.

``task`` must be importable by the workers: a module-level function, not a lambda or closure.
Results are returned in the order of ``tasks``, whichever finished first.
"""

import json
import os
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from .errors import ConfigError
from .progress import progress_bar
from .rundir import write_json

EXECUTORS = ("serial", "local", "ray")
RESULT = "result.json"
_KEY = re.compile(r"[A-Za-z0-9_.=,+-]+")


def finished_result(run_dir):
    """The saved result of a finished task, or None."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    with open(path) as stream:
        return json.load(stream)


def _run_task(task, run_dir, kwargs, threads):
    """Worker side: run one task and save its result atomically."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    result = task(run_dir, **kwargs)
    write_json(run_dir / RESULT, result)
    return result


def run_sweep(task, tasks, out, executor="local", workers=None, progress=None, address=None):
    """Run ``task(out / key, **kwargs)`` for every ``key, kwargs`` in ``tasks``; skip finished ones.

    :param task: module-level function ``task(run_dir, **kwargs) -> dict``.
    :param dict tasks: ``{key: kwargs}``; keys name the task directories (letters, digits, ``_.=,+-``).
    :param out: directory holding one sub-directory per task.
    :param executor: ``serial``, ``local`` or ``ray`` (see the module doc).
    :param workers: local worker processes (default: the CPU count, at most the number of tasks).
    :param address: Ray cluster address (default: ``RAY_ADDRESS`` or a local Ray instance).
    :returns: ``{key: result}`` in the order of ``tasks``.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; expected one of: {', '.join(EXECUTORS)}")
    for key in tasks:
        if not _KEY.fullmatch(str(key)):
            raise ConfigError(f"sweep key {key!r} cannot name a directory; use letters, digits and _.=,+-")
    out = Path(out)
    results = {key: finished_result(out / key) for key in tasks}
    pending = [key for key, result in results.items() if result is None]
    bar = progress_bar(total=len(tasks), initial=len(tasks) - len(pending), progress=progress, unit="fit", desc="sweep")
    try:
        if executor == "serial" or (executor == "local" and len(pending) <= 1):
            for key in pending:
                results[key] = _run_task(task, out / key, tasks[key], None)
                bar.update()
        elif executor == "local":
            workers = min(len(pending), workers or os.cpu_count() or 1)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_run_task, task, str(out / key), tasks[key], 1): key for key in pending}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update()
        elif pending:
            results.update(_run_on_ray(task, {key: tasks[key] for key in pending}, out, address, bar))
    finally:
        bar.close()
    return results


def _run_on_ray(task, tasks, out, address, bar):
    try:
        import ray
    except ImportError:
        raise ConfigError('executor "ray" needs Ray: pip install "pyro-vae[ray]" (or pip install ray)') from None
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1)(_run_task)
    # The run directories must be on storage the cluster's nodes share (as a checkpoint would be).
    refs = {remote.remote(task, str(out / key), kwargs, 1): key for key, kwargs in tasks.items()}
    results, waiting = {}, list(refs)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        results[refs[done[0]]] = ray.get(done[0])
        bar.update()
    return results

