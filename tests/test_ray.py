"""The sweep executor ``ray`` on a local Ray runtime: the same results as local workers, resumption,
and a failing fit that stops the sweep with its error (the resumption test fails one on purpose)."""

import csv
from pathlib import Path

import pytest
import ray

from pyro_vae.analyses import compare, kl_law
from pyro_vae.sweep import run_sweep
from ray_tasks import count_runs

TESTS = Path(__file__).resolve().parent
#: compare --quick made small: its sweep is what differs between executors, not the diagnostics after it
SMALL_COMPARE = dict(objectives=("elbo", "iwae:5"), seeds=2, epochs=1, particles=20, snr_particles=(1,), snr_draws=4,
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
