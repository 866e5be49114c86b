"""``pyro-vae fit --nproc P``: a data-parallel fit in P local processes that fails the way one process does.

The processes are started by torch's own elastic launcher (``torch.distributed.launcher.elastic_launch``,
what ``torchrun --standalone`` runs): one ``python -m pyro_vae fit ...`` per rank, a c10d rendezvous on a
free local port, no restarts, and every other rank stopped when one fails.  What it adds is the user's
view of a failure: each rank writes the line it would print into a folder of the launcher's
(``PYRO_VAE_RANK_ERRORS``) instead of printing it (an error with no one-line form, its traceback: the
collateral of another rank's failure, gloo's "connection closed by peer", is one), and the launcher
prints one line, rank 0's where it has one (a refusal there is every rank's, :meth:`~pyro_vae.inference.distributed.DataParallel.outcome_of_rank_zero`),
else the first failed rank's, and exits 2, as a single-process fit does; the tracebacks only where no rank
left a line.  Rank 0's standard streams are
the terminal's (its progress bar, its headline); the other ranks' are kept in that folder and shown
only if no rank left a line (a crash).  Across machines, use ``torchrun`` itself.
"""

import logging
import os
import sys
import tempfile
import traceback
import uuid
from pathlib import Path

#: The folder where a rank launched by :func:`launch` leaves its error line (``rank-R.txt``).
ERRORS_VARIABLE = "PYRO_VAE_RANK_ERRORS"


def launched_rank():
    """This process's rank when :func:`launch` started it, else None."""
    return int(os.environ.get("RANK", "0")) if os.environ.get(ERRORS_VARIABLE) else None


def leave_error_line(line):
    """In a rank that :func:`launch` started: keep ``line`` for the launcher to print (True); else False."""
    return _leave("rank", line)


def leave_crash(error):
    """In a rank that :func:`launch` started: keep the traceback of ``error``, which has no one-line form (a
    bug, or the collateral of another rank's failure: gloo's "connection closed by peer"), for the launcher
    to show only where no rank said why it failed (True); else False."""
    return _leave("crash", "".join(traceback.format_exception(type(error), error, error.__traceback__)))


def end_failed_rank(status):
    """In a rank that :func:`launch` started and that failed: flush and end the process now (``os._exit``).  Its
    process group, left up by the failure, would otherwise be torn down by C++ destructors at interpreter exit,
    which under load printed libstdc++'s "terminate called without an active exception" to the terminal beside
    the launcher's one line.  Elsewhere, return ``status``."""
    if launched_rank() is None or status == 0:
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _leave(kind, text):
    folder = os.environ.get(ERRORS_VARIABLE)
    if not folder:
        return False
    Path(folder, f"{kind}-{os.environ.get('RANK', '0')}.txt").write_text(text)
    return True


def launch(processes, argv):
    """Run ``pyro-vae ARGV`` (a ``fit``) in ``processes`` local processes of one process group; its exit status.

    :returns: 0 when every rank succeeded; else 2 after one line on stderr (module doc), or 1 where no rank
        left one (a rank that crashed), after the crashed ranks' kept output.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    quiet = logging.getLogger("torch.distributed.elastic")
    level, quiet.propagate = quiet.level, False  # the elastic agent logs each failure as a block of its own
    quiet.setLevel(logging.CRITICAL + 1)
    with tempfile.TemporaryDirectory(prefix="pyro-vae-ranks-") as folder:
        logs = Path(folder) / "logs"
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                              rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, start_method="spawn",
                              logs_specs=DefaultLogsSpecs(log_dir=str(logs), redirects={r: Std.ALL for r in range(1, processes)}))
        saved = os.environ.get(ERRORS_VARIABLE)
        os.environ[ERRORS_VARIABLE] = folder
        try:
            elastic_launch(config, sys.executable)("-m", "pyro_vae", *argv)
            return 0
        except ChildFailedError as failed:
            return _report(folder, logs, sorted(failed.failures))
        finally:
            quiet.setLevel(level)
            quiet.propagate = True
            if saved is None:
                os.environ.pop(ERRORS_VARIABLE, None)
            else:
                os.environ[ERRORS_VARIABLE] = saved


def _report(folder, logs, failed_ranks):
    lines = {int(path.stem.split("-")[1]): path.read_text() for path in Path(folder).glob("rank-*.txt")}
    if lines:
        print(lines[min(lines)], file=sys.stderr)
        return 2
    for path in [*sorted(Path(folder).glob("crash-*.txt")), *sorted(logs.rglob("stderr.log"))]:  # no rank said why
        sys.stderr.write(path.read_text())
    print(f"pyro-vae: error: rank(s) {', '.join(map(str, failed_ranks))} of the data-parallel fit crashed; their "
          f"output is above", file=sys.stderr)
    return 1
