"""Run many independent fits (a sweep) in parallel, resumably, on local processes or a Ray cluster.

A sweep is a mapping ``{key: kwargs}`` and one function ``task(run_dir, **kwargs) -> dict`` that
does one fit and returns its numbers (JSON-serialisable).  Each task gets its own directory
``out/<key>/``: a fingerprint of its settings goes to ``task.json`` before it starts (tensors by
shape, dtype and checksums), and its result to ``result.json``, atomically, when it finishes.  A
sweep started again skips every finished task whose settings are unchanged and refuses one whose
settings differ; a task may keep a checkpoint in its directory to resume mid-fit
(``fit(..., out=run_dir / "fit", resume=...)``).  The first failing task stops the sweep: tasks not
yet started are cancelled, finished ones keep their results.

Executors (``executor=``):

* ``serial``: one task after another in this process (easiest to debug; tasks share the process's
  Pyro param store, random state and torch threads);
* ``local`` (default): a pool of worker processes on this machine, one torch thread each
  (``spawn`` start method, so CUDA and forked BLAS thread pools stay safe); a worker whose parent
  dies (even by ``kill -9``) exits within a second instead of blocking forever (:func:`_watch_parent`);
* ``ray``: one Ray task per fit (``pip install "pyro-vae[ray]"``), on the Ray this process has
  started or connected to (``ray.init`` called before the sweep), else on the one ``ray.init(address)``
  finds: ``address=`` or ``RAY_ADDRESS`` (``ray://host:10001``, ``host:6379``, ``auto``), else the Ray
  last started on this machine (``ray start``), else a new local one.  The run directories must be
  on storage every node shares.  A failure cancels the running fits by killing their workers
  (:func:`_run_on_ray`); a Ray the sweep started or connected to itself is shut down when it ends.

``task`` must be importable by the workers: a module-level function, not a lambda or closure.
Results are returned in the order of ``tasks``, whichever finished first.
"""

import functools
import json
import os
import pickle
import re
import signal
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from . import checks, usercode
from .errors import ConfigError, RunDirError
from .progress import progress_bar, read_report, reporting_to
from .files import TEMPORARY_GLOB, write_json

EXECUTORS = ("serial", "local", "ray")
RESULT = "result.json"
TASK = "task.json"
_KEY = re.compile(r"[A-Za-z0-9_.=,+-]+")
PARENT_POLL_SECONDS = 0.5
CANCEL_WAIT_SECONDS = 30  # how long a failed Ray sweep waits for its cancelled tasks to end
PROGRESS_POLL_SECONDS = 1.0  # how often the sweep's bar reads its running fits' epochs
RAY_CONNECT_SECONDS = 10  # how long a Ray address may take to accept a connection
CANCEL_RETRY_SECONDS = 0.5  # how often it cancels again those Ray does not yet report ended (_run_on_ray)


def fingerprint(value):
    """A JSON-able summary of a task's settings: tensors by shape, dtype, sum and sum of squares."""
    import torch

    if torch.is_tensor(value):
        data = value.detach().double()
        return {"tensor": list(value.shape), "dtype": str(value.dtype), "sum": data.sum().item(),
                "sum_of_squares": data.pow(2).sum().item()}
    if isinstance(value, dict):
        return {str(k): fingerprint(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fingerprint(v) for v in value]
    if isinstance(value, functools.partial):
        return {"partial": fingerprint(value.func), "args": fingerprint(value.args), "kwargs": fingerprint(value.keywords)}
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def finished_result(run_dir, settings=None):
    """The saved result of a finished task, or None; refuses one that ran with other ``settings``."""
    run_dir = Path(run_dir)
    if not (run_dir / RESULT).exists():
        return None
    if settings is not None and (run_dir / TASK).exists():
        with open(run_dir / TASK) as stream:
            saved = json.load(stream)
        if saved != json.loads(json.dumps(settings, default=str)):
            raise RunDirError(f"{run_dir} holds a finished task run with other settings; delete it or choose another out "
                              f"directory to run the sweep with the new ones")
    with open(run_dir / RESULT) as stream:
        return json.load(stream)


def _watch_parent(parent):
    """Worker initializer: end this worker as soon as its parent process (pid ``parent``) is gone.

    A daemon thread polls ``os.getppid()``: when the parent dies, however it dies, the worker is
    re-parented and its parent pid changes, and the thread ends the process with ``os._exit`` (a
    worker blocked on the result pipe, or still fitting, would otherwise live on, holding its memory).
    A parent that died before this ran is caught by the first poll.  The worker ignores SIGINT: Ctrl-C
    in a terminal reaches every process of the group, and the parent, which gets it too, terminates
    the workers (:func:`_end_workers`) and says what happened in one line.  Linux's ``PR_SET_PDEATHSIG`` is
    not used: it fires when the *thread* that started the worker ends, and ProcessPoolExecutor may
    start workers from its manager thread, so it could kill the workers of a live sweep; it is also
    Linux-only.  Comparing parent pids rather than probing ``parent`` avoids reused pids.
    """
    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent ends the workers


def _end_workers(pool):
    """Cancel a pool's queued tasks and terminate its worker processes (SIGTERM), so that a sweep that
    stops stops its fits too (``shutdown`` alone lets each running fit run to its end).  Reads the pool's
    private process table: Python 3.14's ``terminate_workers`` is the public form, used where it exists."""
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()


def _run_task(task, run_dir, kwargs, threads):
    """Worker side: run one task and save its result atomically."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with reporting_to(run_dir):  # its fit's epochs, for the sweep's bar (pyro_vae.progress)
        try:
            result = task(run_dir, **kwargs)
        except (Exception, SystemExit) as error:  # the user's code failed: one line that crosses processes
            user = usercode.as_user_code_error(error)
            if user is None:
                raise
            if usercode.debugging():
                usercode.print_traceback(error)
            raise user from None
    write_json(run_dir / RESULT, result)
    return result


def _run_pickled(arguments):
    """Worker side of a local sweep: :func:`_run_task` of the arguments the parent pickled by value.

    Plain ``pickle`` copies a task's tensors into the message; the pool's own pickler would put them in
    shared memory and hand their file descriptors over a socket of the parent's (``resource_sharer``),
    which prints a traceback whenever a worker is ended, or its parent killed, during that handshake."""
    return _run_task(*pickle.loads(arguments))


def run_sweep(task, tasks, out, executor="local", workers=None, progress=None, address=None):
    """Run ``task(out / key, **kwargs)`` for every ``key, kwargs`` in ``tasks``; skip finished ones.

    :param task: module-level function ``task(run_dir, **kwargs) -> dict``.
    :param dict tasks: ``{key: kwargs}``; keys name the task directories (letters, digits, ``_.=,+-``).
    :param out: directory holding one sub-directory per task.
    :param executor: ``serial``, ``local`` or ``ray`` (see the module doc).
    :param workers: local worker processes (default: the CPU count, at most the number of tasks).
    :param address: the Ray cluster to connect to when this process has not called ``ray.init``
        (default: ``RAY_ADDRESS``, else the Ray last started on this machine, else a new local one).
    :returns: ``{key: result}`` in the order of ``tasks``.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r}; expected one of: {', '.join(EXECUTORS)}")
    if workers is not None:
        workers = checks.positive_int("workers", workers)
    for key in tasks:
        if not isinstance(key, str) or not _KEY.fullmatch(key) or set(key) == {"."}:
            raise ConfigError(f"sweep key {key!r} cannot name a directory; use a string of letters, digits and _.=,+-")
    out = Path(out)
    settings = {key: fingerprint(kwargs) for key, kwargs in tasks.items()}
    results = {key: finished_result(out / key, settings[key]) for key in tasks}
    pending = [key for key, result in results.items() if result is None]
    for key in pending:  # not running (a study holds its directory's lock): interrupted writes' leftovers can go
        for leftover in (out / key).glob(TEMPORARY_GLOB):
            leftover.unlink(missing_ok=True)
        write_json(out / key / TASK, settings[key])
    bar = progress_bar(total=len(tasks), initial=len(tasks) - len(pending), progress=progress, unit="fit", desc="sweep")
    try:
        if executor == "serial":
            for key in pending:
                _run_task(task, out / key, tasks[key], None)
                bar.update()
        elif executor == "local" and pending:
            workers = min(len(pending), workers or os.cpu_count() or 1)
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_watch_parent,
                                       initargs=(os.getpid(),))
            try:
                running = {pool.submit(_run_pickled, pickle.dumps((task, str(out / key), tasks[key], 1))): key
                           for key in pending}
                while running:
                    done, _ = wait(running, timeout=PROGRESS_POLL_SECONDS, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()  # the first failure stops the sweep
                        bar.update()
                        del running[future]
                    _show_epochs(bar, out, running.values())
            except BaseException:  # a failed fit, Ctrl-C or SIGTERM: the running fits end now, not when done
                _end_workers(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        elif pending:
            _run_on_ray(task, {key: tasks[key] for key in pending}, out, address, bar)
    finally:
        bar.close()
    return {key: finished_result(out / key) for key in tasks}  # fresh and resumed results read alike


def _show_epochs(bar, out, keys):
    """The epoch each running fit has reached, after the sweep's bar ("beta=4: epoch 12/30; ...")."""
    reached = [f"{key}: {report}" for key in keys if (report := read_report(out / key)) is not None]
    if reached and not bar.disable:
        bar.set_postfix_str("; ".join(reached), refresh=True)


def _run_on_ray(task, tasks, out, address, bar):
    """Run every task as one Ray task of one CPU; the first failure (or an interrupt) stops them all.

    Unfinished tasks are then cancelled with ``force=True``, which kills a running one's worker
    process: a plain cancel only raises ``KeyboardInterrupt`` in it once its current call into C
    returns, so a fit inside a long torch op or NUTS chain would run on, on the cluster's CPUs and
    into ``out``, after the sweep stopped.  One cancel is not enough: a task that Ray is handing to
    a worker at that moment (typically the next queued fit, given to the worker the failed fit just
    freed) is missed, since the worker gets the cancel before the task and finds nothing to cancel;
    the task then runs to its end (Ray 2.60's worker log: "Cancelling a task that's not running",
    the owner's: "attempt_succeeded: 0", and no second attempt).  So the cancel is repeated every
    ``CANCEL_RETRY_SECONDS`` for the tasks Ray does not yet report ended, for at most
    ``CANCEL_WAIT_SECONDS``, so that a sweep started again at once does not meet them in its
    directories; a killed task leaves at most temporary files, which that start removes.  Ray reports
    a cancelled task ended a moment before its worker has exited (a fraction of a second).

    Force-cancelled tasks are not retried; a fit whose worker dies otherwise (a lost node, the OOM
    killer) is, by Ray's ``max_retries`` (3), and a fit that raises is not (``retry_exceptions=False``).
    The worker processes of finished fits stay in Ray's worker pool, idle, until Ray ends them: when
    this function started Ray or connected to it itself (the process had not called ``ray.init``), it
    calls ``ray.shutdown()`` at the end, which stops a local Ray it started and ends this job's workers
    on a cluster it connected to; a Ray the caller initialised is left as it is.
    """
    try:
        import ray
    except ImportError:
        raise ConfigError('executor "ray" needs Ray: pip install "pyro-vae[ray]" (or pip install ray)') from None
    initialised_here = not ray.is_initialized()
    if initialised_here:
        _check_reachable(address)
        ray.init(address=address)  # None: ray.init reads RAY_ADDRESS itself
    try:
        remote = ray.remote(num_cpus=1, retry_exceptions=False)(_run_task)
        keys = {remote.remote(task, str(out / key), kwargs, 1): key for key, kwargs in tasks.items()}
        waiting = list(keys)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1, timeout=PROGRESS_POLL_SECONDS)
                if done:
                    ray.get(done[0])  # the first failure stops the sweep
                    bar.update()
                _show_epochs(bar, out, [keys[ref] for ref in waiting])
        finally:
            _cancel_on_ray(ray, waiting)
    finally:
        if initialised_here:
            ray.shutdown()


def _check_reachable(address, seconds=RAY_CONNECT_SECONDS):
    """Refuse in one line a Ray address (``address`` or ``RAY_ADDRESS``: ``host:port``, ``ray://host:port``)
    that accepts no connection within ``seconds``: ``ray.init`` would retry it for ever."""
    import socket

    named = address or os.environ.get("RAY_ADDRESS")
    where = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", named or "")
    if where is None:  # None, "auto", "local": Ray finds or starts its own
        return
    host, port = where.group(1), int(where.group(2))
    origin = "address=" if address else "RAY_ADDRESS"
    try:
        socket.create_connection((host, port), timeout=seconds).close()
    except (OSError, ValueError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ConfigError(f"no Ray cluster answers at {named} ({origin}): {reason}; start one (ray start --head) or "
                          f"leave {origin} unset to start a local Ray") from None


def _cancel_on_ray(ray, refs):
    """Force-cancel the tasks of ``refs`` until Ray reports them all ended (see :func:`_run_on_ray`)."""
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while refs:
        for ref in refs:
            ray.cancel(ref, force=True)
        left = deadline - time.monotonic()
        if left <= 0:
            warnings.warn(f"{len(refs)} Ray task(s) of the stopped sweep did not end within {CANCEL_WAIT_SECONDS} s of "
                          f"being cancelled; they may still be running", RuntimeWarning, stacklevel=3)
            return
        _, refs = ray.wait(refs, num_returns=len(refs), timeout=min(CANCEL_RETRY_SECONDS, left))
