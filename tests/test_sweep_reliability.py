"""What a sweep and a study do when things go wrong: a killed parent, bad counts, bad directories,
a restart with other options, two studies on one directory."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyro_vae.analyses import common, kl_law
from pyro_vae.analyses.compare import compare
from pyro_vae.cli import main
from pyro_vae.errors import ConfigError, RunDirError
from pyro_vae.files import DirectoryLock, atomic_write_bytes, write_json
from pyro_vae.sweep import run_sweep

TESTS = Path(__file__).resolve().parent


def record_pid_and_sleep(run_dir, seconds):
    """A task that says which process runs it, then takes long."""
    atomic_write_bytes(run_dir / "pid", str(os.getpid()).encode())  # never seen empty
    time.sleep(seconds)
    return {"slept": seconds}


def nothing(run_dir):
    return {}


def _alive(pid):
    """Whether ``pid`` runs (a zombie nobody reaps counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_for(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def _cli(argv):
    """``pyro-vae ARGV``'s exit status (argparse's refusals exit rather than return)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyro-vae: error: "), err
    return err[0]


def test_local_workers_end_when_their_parent_is_killed(tmp_path):
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
              "from pyro_vae.sweep import run_sweep\n"
              "from test_sweep_reliability import record_pid_and_sleep\n"
              f"run_sweep(record_pid_and_sleep, {{'a': {{'seconds': 300}}, 'b': {{'seconds': 300}}}}, {str(tmp_path)!r}, "
              "executor='local', workers=2, progress=False)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=TESTS.parent, stderr=subprocess.PIPE, text=True)
    files = [tmp_path / key / "pid" for key in ("a", "b")]
    pids = []
    try:
        assert _wait_for(lambda: all(f.exists() for f in files), 600), "the workers never started"
        pids = [int(f.read_text()) for f in files]
        assert all(_alive(pid) for pid in pids)
        parent.kill()  # SIGKILL: no cleanup runs in the parent
        assert _wait_for(lambda: not any(_alive(pid) for pid in pids), 60), "workers outlived their parent"
        _, err = parent.communicate(timeout=600)  # the workers share its stderr: they end without a traceback
        assert "Traceback" not in err, err
    finally:
        parent.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_to_the_process_group_ends_a_local_sweep_with_no_worker_traceback(tmp_path):
    """Ctrl-C in a terminal signals every process of the group: the workers ignore it and the parent,
    which stops the sweep, ends them (issue 38, item 8: a worker printed a KeyboardInterrupt traceback)."""
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
              "from pyro_vae.sweep import run_sweep\n"
              "from test_sweep_reliability import record_pid_and_sleep\n"
              "try:\n"
              f"    run_sweep(record_pid_and_sleep, {{'a': {{'seconds': 300}}, 'b': {{'seconds': 300}}}}, {str(tmp_path)!r}, "
              "executor='local', workers=2, progress=False)\n"
              "except KeyboardInterrupt:\n"
              "    print('the sweep was interrupted', file=sys.stderr)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=TESTS.parent, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    files = [tmp_path / key / "pid" for key in ("a", "b")]
    pids = []
    try:
        assert _wait_for(lambda: all(f.exists() for f in files), 600), "the workers never started"
        pids = [int(f.read_text()) for f in files]
        os.killpg(parent.pid, signal.SIGINT)
        _, err = parent.communicate(timeout=600)  # a hang guard: 60 s ran out once under a CPU load of 2
        print(f"parent exit status {parent.returncode}, stderr {err!r}")
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err  # no worker's, and not the parent's
        assert _wait_for(lambda: not any(_alive(pid) for pid in pids), 60), "workers outlived the interrupted sweep"
    finally:
        parent.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_workers_initializer_makes_it_ignore_ctrl_c():
    """The deterministic half of the test above: a SIGINT that reaches a worker while it imports or waits
    for its next task (the race that printed a traceback in 1 of 3 trials) does nothing."""
    script = ("import os, signal, time\nfrom pyro_vae.sweep import _watch_parent\n_watch_parent(os.getppid())\n"
              "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\nprint('still here')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout == "still here\n" and not done.stderr, done.stderr


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_run_sweep_refuses_workers_that_are_no_positive_integer(tmp_path, workers):
    with pytest.raises(ConfigError, match=rf"^workers must be a positive integer, got {re.escape(repr(workers))}$"):
        run_sweep(nothing, {"a": {}}, tmp_path / "out", workers=workers, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["analyze", "kl-law", "--quick", "--workers", "-1"], "workers must be a positive integer, got -1"),
    (["analyze", "kl-law", "--quick", "--workers", "0"], "workers must be a positive integer, got 0"),
    (["analyze", "kl-law", "--quick", "--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["analyze", "collapse", "--quick", "--latent-dim", "-2"], "latent_dim must be a positive integer, got -2"),
    (["compare", "--quick", "--replicates", "0"], "replicates must be a positive integer, got 0"),
    (["compare", "--quick", "--replicates", "-3"], "replicates must be a positive integer, got -3"),
    (["compare", "--quick", "--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (["compare", "--quick", "--importance-samples", "0"], "importance_samples must be a positive integer, got 0"),
    (["compare", "--quick", "--lr", "0"], "lr must be a positive number, got 0.0"),
    (["compare", "--quick", "--lr", "nan"], "lr must be a positive number, got nan"),
    (["compare", "--quick", "--lr", "inf"], "lr must be a positive number, got inf"),
])
def test_bad_counts_and_rates_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert _cli([*argv, "--out", str(out), "--no-progress"]) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists()


def test_python_overrides_are_checked_too(tmp_path):
    for overrides, message in (({"workers": 0}, "workers must be a positive integer, got 0"),
                               ({"epochs": True}, "epochs must be a positive integer, got True"),
                               ({"epochs": 2.5}, "epochs must be a positive integer, got 2.5"),
                               ({"lr": "0.1"}, "lr must be a positive number, got '0.1'"),
                               ({"lr": float("inf")}, "lr must be a positive number, got inf")):
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            common.choose_preset(kl_law.PRESETS, True, overrides)
    for replicates in (0, -1):
        with pytest.raises(ConfigError, match=f"^replicates must be a positive integer, got {replicates}$"):
            compare(None, {}, tmp_path, ["elbo"], replicates=replicates)


def _long_name(tmp_path):
    return tmp_path / ("x" * 300)


@pytest.mark.parametrize("out, message", [
    (lambda tmp: tmp / "file", "is a file, not a directory; choose a directory"),
    (_long_name, "x" * 20),  # the name too long, shortened
], ids=["a-file", "a-name-too-long"])
def test_an_out_that_cannot_be_a_directory_is_one_line(tmp_path, capsys, out, message):
    (tmp_path / "file").write_text("not a directory")
    assert _cli(["analyze", "kl-law", "--quick", "--epochs", "1", "--out", str(out(tmp_path)), "--no-progress"]) == 2
    assert message in _one_error_line(capsys)
    assert [path.name for path in tmp_path.iterdir()] == ["file"] and (tmp_path / "file").read_text() == "not a directory"


def test_an_out_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "locked"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: refuse it the permission instead
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == out else access(path, mode, **kw))
    else:
        out.chmod(0o500)
    try:
        assert _cli(["analyze", "kl-law", "--quick", "--epochs", "1", "--out", str(out), "--no-progress"]) == 2
    finally:
        out.chmod(0o700)
    assert _one_error_line(capsys) == f"pyro-vae: error: cannot write into analysis directory {out}: permission denied"
    assert list(out.iterdir()) == []


def _quick_kl_law(**changes):
    return {"preset": "quick", **kl_law.PRESETS["quick"].values(), "data_dir": None, **changes}


def _snapshot(directory):
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def test_a_restart_with_other_options_is_refused_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "study"
    common.start(out, kl_law.NAME, _quick_kl_law(epochs=40))  # a study that stopped part-way, one fit finished
    common.release(out)
    write_json(out / "result.json", {})
    before = _snapshot(out)
    assert _cli(["analyze", "kl-law", "--quick", "--epochs", "5", "--out", str(out), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert "epochs 40 (saved) vs 5 (now)" in line and "restart it with the saved options" in line
    assert _snapshot(out) == before  # config.json still says 40 epochs, byte for byte


def test_a_refusal_leaves_no_lock_in_a_directory_that_existed(tmp_path, capsys):
    out = tmp_path / "other"
    write_json(out / "config.json", {"analysis": "collapse", "epochs": 3})
    before = _snapshot(out)
    assert _cli(["analyze", "kl-law", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert '"collapse" (saved) vs "kl-law" (now)' in _one_error_line(capsys)
    assert _snapshot(out) == before


def test_only_the_same_options_resume_and_leftover_temporary_files_go(tmp_path):
    out = tmp_path / "study"
    common.start(out, kl_law.NAME, _quick_kl_law())
    common.release(out)
    write_json(out / "fits" / "a" / "result.json", {})  # one finished fit
    (out / ".config.json.abc123.tmp").write_text("half a file")
    with pytest.raises(RunDirError, match=r'\(executor "local" \(saved\) vs "serial" \(now\); workers null \(saved\) vs 2 \(now\)\)'):
        common.start(out, kl_law.NAME, _quick_kl_law(workers=2, executor="serial"))  # the sweep would refuse them
    assert (out / ".config.json.abc123.tmp").exists()  # a refusal touches nothing
    common.start(out, kl_law.NAME, _quick_kl_law())
    try:
        assert not (out / ".config.json.abc123.tmp").exists()
        # a study of this process that raised before finishing does not block the next start here
        common.start(out, kl_law.NAME, _quick_kl_law())
    finally:
        common.release(out)


def test_a_second_study_on_one_directory_is_refused_naming_the_first(tmp_path, capsys):
    out = tmp_path / "study"
    common.start(out, kl_law.NAME, _quick_kl_law())
    common.release(out)
    before = _snapshot(out)
    with DirectoryLock(out, "analysis directory"):  # the first study, as another process holds it
        assert _cli(["analyze", "kl-law", "--quick", "--out", str(out), "--no-progress"]) == 2
        before = {**before, ".lock": (out / ".lock").read_bytes()}
        assert _snapshot(out) == before
    line = _one_error_line(capsys)
    assert f"analysis directory {out} is being written by pid {os.getpid()}" in line


def fail_when_the_sleeper_runs(run_dir, other):
    """A task that fails once the task ``other`` has started (its pid file exists)."""
    pid_file = run_dir.parent / other / "pid"
    while not (pid_file.exists() and pid_file.read_text()):
        time.sleep(0.05)
    raise RuntimeError("this fit failed")


@pytest.mark.parametrize("how", ["sigterm", "a failed fit"])
def test_a_stopped_local_sweep_ends_its_running_fits_at_once(tmp_path, how):
    """SIGTERM to a study (the CLI makes it a KeyboardInterrupt), or one failed fit, ends the sweep and
    every worker within seconds, not when the other running fit is done (300 s here)."""
    tasks = ("{'a': {'seconds': 300}, 'b': {'seconds': 300}}" if how == "sigterm" else
             "{'a': {'seconds': 300}, 'b': {'other': 'a'}}")
    script = (f"import signal, sys; sys.path.insert(0, {str(TESTS)!r})\n"
              "from pyro_vae.cli import _terminate\n"
              "from pyro_vae.sweep import run_sweep\n"
              "import test_sweep_reliability as t\n"
              "signal.signal(signal.SIGTERM, _terminate)\n"
              f"run_sweep(t.dispatch, {tasks}, {str(tmp_path)!r}, executor='local', workers=2, progress=False)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=TESTS.parent, stderr=subprocess.PIPE, text=True)
    pid_file = tmp_path / "a" / "pid"
    pid = None
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 600), "the sleeper never started"
        pid = int(pid_file.read_text())
        if how == "sigterm":
            parent.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, err = parent.communicate(timeout=600)
        print(f"{how}: the sweep ended {time.monotonic() - started:.1f} s later")
        assert parent.returncode != 0
        assert ("KeyboardInterrupt" if how == "sigterm" else "this fit failed") in err
        assert _wait_for(lambda: not _alive(pid), 60), "the running fit outlived its sweep"
        assert not (tmp_path / "a" / "result.json").exists()
    finally:
        parent.kill()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def dispatch(run_dir, **kwargs):
    """The two tasks of the test above as one module-level function (a sweep pickles its task)."""
    return (fail_when_the_sleeper_runs if "other" in kwargs else record_pid_and_sleep)(run_dir, **kwargs)


def test_a_study_fit_interrupted_in_its_task_directory_resumes_bit_for_bit(tmp_path):
    """A sweep stopped during a fit leaves the fit's checkpoint in its task directory; the study started
    again resumes it (it had refused: "already holds a run with a checkpoint") and gets the uninterrupted
    fit's weights.  A fit directory stopped before its first checkpoint is started again."""
    import torch

    from pyro_vae.data import load_data
    from pyro_vae.models import VAE

    train = load_data("digits", binarize="dynamic").train[:256]
    build = lambda: VAE((1, 8, 8), latent_dim=2, hidden=(16,))  # noqa: E731
    options = dict(epochs=3, batch_size=64, dynamic_binarization=True, progress=False)
    whole, _ = common.fit_fresh(build, train, 0, out=tmp_path / "whole", **options)
    common.fit_fresh(build, train, 0, out=tmp_path / "stopped", **{**options, "epochs": 1})  # as if stopped after epoch 1
    resumed, result = common.fit_fresh(build, train, 0, out=tmp_path / "stopped", **options)
    assert len(result.history) == 3
    for name, tensor in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name
    (tmp_path / "early").mkdir()
    write_json(tmp_path / "early" / "config.json", {"stopped": "before its first epoch"})
    _, again = common.fit_fresh(build, train, 0, out=tmp_path / "early", **options)
    assert len(again.history) == 3


@pytest.mark.parametrize("given", ["env", "argument"])
def test_a_ray_address_nobody_answers_is_one_line_not_endless_retries(tmp_path, monkeypatch, given):
    """Issue 38, item 2: RAY_ADDRESS=127.0.0.1:1 made ray.init retry for ever (killed at 400 s)."""
    import socket

    with socket.socket() as probe:  # a port on loopback that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    if given == "env":
        monkeypatch.setenv("RAY_ADDRESS", address)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"no Ray cluster answers at {address} .*(RAY_ADDRESS|address=).*refused"):
        run_sweep(nothing, {"a": {}}, tmp_path, executor="ray", progress=False, address=None if given == "env" else address)
    assert time.monotonic() - started < 300  # bounded by the connect timeout (10 s), not by Ray's endless retries
