"""The sweep executor ``ray`` on a local Ray runtime: the same results as local workers, resumption,
a failing fit that stops the sweep with its error and leaves none of its fits running, and a sweep
that shuts down the Ray it started."""

import csv
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import ray

from pyro_vae.analyses import compare, kl_law
from pyro_vae import sweep
from pyro_vae.sweep import run_sweep
from ray_tasks import count_runs, sleep_or_fail

TESTS = Path(__file__).resolve().parent
#: compare --quick made small: its sweep is what differs between executors, not the diagnostics after it
SMALL_COMPARE = dict(objectives=("elbo", "iwae:5"), replicates=2, epochs=1, importance_samples=20, snr_particles=(1,), snr_draws=4,
                     snr_points=8, gap_points=4, gap_steps=5, nuts_points=2, nuts_samples=10, nuts_warmup=10, nuts_chains=2)


@pytest.fixture(scope="module")
def ray_runtime():
    """A Ray of two CPUs started by this process, as a user's script would start one before a sweep.

    ``address="local"`` starts a new instance whatever ``RAY_ADDRESS`` says or whichever Ray runs on
    this machine; no dashboard and no log forwarding (quiet, faster). The workers import the tasks
    of ``ray_tasks`` from this folder: the job's ``PYTHONPATH`` names it, which the workers, started by
    Ray's raylet rather than by pytest, would not otherwise have on their ``sys.path``.
    """
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": str(TESTS)}})
    yield ray.get_runtime_context().get_job_id()
    ray.shutdown()


def _parsed(text):
    try:
        return float(text)
    except ValueError:
        return text


def _table(path, skip=()):
    """The rows of a CSV a study wrote, numbers as floats, without the columns whose names start with ``skip``."""
    with open(path) as handle:
        return [{key: _parsed(value) for key, value in row.items() if not key.startswith(skip)}
                for row in csv.DictReader(handle)]


def _assert_same_tables(ours, theirs):
    """Same rows, same text, numbers equal up to float round-off (both fitted on one torch thread, same seeds)."""
    assert len(ours) == len(theirs) > 0
    for mine, other in zip(ours, theirs):
        assert mine.keys() == other.keys()
        numbers = [key for key, value in other.items() if isinstance(value, float)]
        assert {k: v for k, v in mine.items() if k not in numbers} == {k: v for k, v in other.items() if k not in numbers}
        assert {k: mine[k] for k in numbers} == pytest.approx({k: other[k] for k in numbers}, rel=1e-6, nan_ok=True)


def test_a_study_on_ray_gives_the_local_workers_results(ray_runtime, tmp_path):
    for executor in ("local", "ray"):  # kl-law: the cheapest study that runs a sweep
        kl_law.run(tmp_path / executor, quick=True, progress=False, executor=executor, workers=2, epochs=1)
    assert (tmp_path / "ray" / "fits" / "beta=1" / "result.json").exists()
    _assert_same_tables(_table(tmp_path / "ray" / "results.csv"), _table(tmp_path / "local" / "results.csv"))


def test_compare_on_ray_gives_the_local_workers_results(ray_runtime, tmp_path):
    for executor in ("local", "ray"):
        compare.run(tmp_path / executor, quick=True, progress=False, executor=executor, workers=2, **SMALL_COMPARE)
    for table in ("results.csv", "fits.csv"):  # per objective (mean and spread over seeds), and per fit
        ours, theirs = (_table(tmp_path / executor / table, skip="seconds_per_epoch") for executor in ("ray", "local"))
        _assert_same_tables(ours, theirs)
    assert len(_table(tmp_path / "ray" / "fits.csv")) == 2 * 2


def test_a_sweep_stopped_on_ray_runs_only_the_unfinished_fits_when_started_again(ray_runtime, tmp_path):
    marker = tmp_path / "fail-once"
    marker.touch()
    done = [str(tmp_path / key / "result.json") for key in ("a", "b", "c")]
    tasks = {key: {"value": i} for i, key in enumerate(("a", "b", "c"))}
    tasks["bad"] = {"value": 3, "wait_for": done, "fail_marker": str(marker)}  # fails after a, b and c finished
    with pytest.raises(RuntimeError, match="task bad fails while fail-once exists"):
        run_sweep(count_runs, tasks, tmp_path, executor="ray", progress=False)
    assert not (tmp_path / "bad" / "result.json").exists()
    marker.unlink()
    results = run_sweep(count_runs, tasks, tmp_path, executor="ray", progress=False)
    assert [result["value"] for result in results.values()] == [0, 1, 2, 3]
    assert [(tmp_path / key / "runs.txt").read_text() for key in tasks] == ["1", "1", "1", "2"]
    assert {result["job"] for result in results.values()} == {ray_runtime}  # on the Ray this process started


def _alive(pid):
    """Whether process ``pid`` runs (a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_failing_fit_on_ray_leaves_none_of_the_sweeps_fits_running(ray_runtime, tmp_path, monkeypatch):
    """On two CPUs: slow0 runs, bad fails once slow0 has started, slow1 and slow2 wait in Ray's queue.

    The worker bad frees is handed slow1 at once, so slow1's cancel races with its start, and one
    ``ray.cancel(force=True)`` sometimes misses it (Ray's logs showed it in two of three runs of this
    file; such a fit then ran its whole sleep); the sweep cancels again until Ray reports it ended.  What is checked is what the user
    sees: the error, and that every process that started one of the sleeping fits is gone within a
    few seconds.  The worker that ran bad itself may stay alive, idle in Ray's worker pool, until
    ``ray.shutdown()``: that is Ray reusing processes, not a fit running on.
    """
    monkeypatch.setattr(sweep, "CANCEL_WAIT_SECONDS", 120)  # a hang guard: a cancel that fails shows in 120 s
    slow = {"seconds": 600}  # longer than every wait below: a fit whose cancel failed is still running at the checks
    tasks = {"slow0": slow, "bad": {"wait_for": [str(tmp_path / "slow0" / "pid")], "error": "fit bad fails on purpose"},
             "slow1": slow, "slow2": slow}
    with warnings.catch_warnings(record=True) as caught, pytest.raises(RuntimeError, match="fit bad fails on purpose"):
        warnings.simplefilter("always")
        run_sweep(sleep_or_fail, tasks, tmp_path, executor="ray", progress=False)
    assert not [w for w in caught if "did not end" in str(w.message)]  # Ray reported every cancelled fit ended
    pids = {int((tmp_path / key / "pid").read_text()) for key in ("slow0", "slow1", "slow2")
            if (tmp_path / key / "pid").exists()}
    assert pids  # slow0 at least had started
    assert _wait_until(lambda: not any(_alive(pid) for pid in pids), 60), \
        f"fits of the stopped sweep still run: {sorted(pid for pid in pids if _alive(pid))}"
    assert not any((tmp_path / key / "result.json").exists() for key in tasks)


class _FakeRay:
    """Just enough of ``ray`` for :func:`pyro_vae.sweep._run_on_ray`: fit ``bad`` fails, and the first
    cancel of every other fit is lost, as when Ray hands it to a worker at that moment."""

    def __init__(self, initialised):
        self.initialised, self.calls, self.cancels = initialised, [], {}

    def is_initialized(self):
        return self.initialised

    def init(self, address=None):
        self.calls.append("init")

    def shutdown(self):
        self.calls.append("shutdown")

    def remote(self, **options):
        return lambda function: type("Remote", (), {"remote": staticmethod(lambda task, run_dir, *rest: Path(run_dir).name)})

    def wait(self, refs, num_returns=1, timeout=None):
        ended = [ref for ref in refs if ref == "bad" or self.cancels.get(ref, 0) >= 2]
        return ended, [ref for ref in refs if ref not in ended]

    def get(self, ref):
        raise RuntimeError(f"fit {ref} fails")

    def cancel(self, ref, force=False):
        assert force
        self.cancels[ref] = self.cancels.get(ref, 0) + 1


@pytest.mark.parametrize("initialised", [False, True], ids=["sweep-starts-ray", "caller-started-ray"])
def test_a_stopped_sweep_cancels_again_until_ray_reports_the_fits_ended(initialised, tmp_path, monkeypatch):
    fake = _FakeRay(initialised)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(sweep, "CANCEL_RETRY_SECONDS", 0.01)
    with pytest.raises(RuntimeError, match="fit bad fails"):
        run_sweep(sleep_or_fail, {"bad": {}, "slow1": {}, "slow2": {}}, tmp_path, executor="ray", progress=False)
    assert fake.cancels == {"slow1": 2, "slow2": 2}  # the lost first cancel is repeated
    assert fake.calls == ([] if initialised else ["init", "shutdown"])  # a Ray the caller started is left alone


SWEEP_STARTS_RAY = """
import sys
from pathlib import Path
import ray
from pyro_vae.sweep import run_sweep
from ray_tasks import sleep_or_fail
from test_ray import _alive, _wait_until

out = Path(sys.argv[1])
tasks = {"a": {}, "bad": {"wait_for": [str(out / "a" / "result.json")], "error": "fit bad fails on purpose"}}
try:
    run_sweep(sleep_or_fail, tasks, out, executor="ray", progress=False, address="local")
except RuntimeError as error:
    assert "fit bad fails on purpose" in str(error), error
else:
    raise AssertionError("the sweep did not raise")
assert not ray.is_initialized(), "the sweep left the Ray it started running"
pids = {int((out / key / "pid").read_text()) for key in tasks}
assert _wait_until(lambda: not any(_alive(pid) for pid in pids), 60), f"workers outlived the sweep: {pids}"
print("ok")
"""


def test_a_sweep_that_started_ray_shuts_it_down(tmp_path):
    """With no ``ray.init`` before it, the sweep starts a local Ray and ends it, also when a fit fails:
    none of its workers, not even the idle ones that ran the finished and the failed fit, outlives it
    (in a fresh process, since this one holds the tests' Ray)."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    # the timeout guards against a hang, it checks no speed: alone this takes about 20 s, but starting a local
    # Ray on two cores that a study was also using took over 120 s
    done = subprocess.run([sys.executable, "-c", SWEEP_STARTS_RAY, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stdout + done.stderr
