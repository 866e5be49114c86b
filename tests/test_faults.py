"""Faults lose nothing: NaN roll-back, interruption by signal, atomic writes."""

import json
import re
import os
import signal
import subprocess
import sys
import time

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.errors import NonFiniteLossError
from pyro_vae.inference import fit, load_run
from pyro_vae.files import write_json


def _faulty_pair(fault_calls):
    """Linear-Gaussian pair whose model returns a NaN log-density on the listed calls (counted from 1)."""
    calls = {"n": 0}

    def model(x):
        w = pyro.param("w", torch.ones(1))
        calls["n"] += 1
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            bad = torch.tensor(float("nan")) if calls["n"] in fault_calls else torch.tensor(0.0)
            pyro.sample("x", dist.Normal(w * z + bad, 1.0), obs=x)

    def guide(x):
        a = pyro.param("a", torch.zeros(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(a * x, 1.0))

    return model, guide


def test_rollback_retries_the_epoch_with_half_the_learning_rate():
    x = torch.randn(64)
    # calls 1-5 are fit's checks (data plate, objective, one loss, the data's support) and parameter capture;
    # epoch 1 is calls 6-9 (4 batches); call 11 is in epoch 2
    model, guide = _faulty_pair({11})
    with pytest.warns(UserWarning, match="rolled back"):
        result = fit(model, guide, x, epochs=3, batch_size=16, lr=0.01, on_nonfinite="rollback", progress=False)
    assert [row["lr"] for row in result.history] == [0.01, 0.005, 0.005]
    assert [row["step"] for row in result.history] == [4, 8, 12]


def test_without_rollback_a_nan_names_step_and_site():
    model, guide = _faulty_pair({7, 8})  # step 2 (call 7) and the diagnosing re-run (call 8)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2; first non-finite: model site 'x'"):
        fit(model, guide, torch.randn(64), epochs=2, batch_size=16, progress=False)


def test_rollback_gives_up_after_repeated_faults():
    model, guide = _faulty_pair(set(range(2, 100)))
    with pytest.warns(UserWarning), pytest.raises(NonFiniteLossError):
        fit(model, guide, torch.randn(64), epochs=2, batch_size=16, on_nonfinite="rollback", progress=False)


def _singular_guide_pair(fault_calls):
    """A pair whose guide's covariance cannot be factorised (torch.linalg.LinAlgError) on the listed calls."""
    model, _ = _faulty_pair(set())
    calls = {"n": 0}

    def guide(x):
        a = pyro.param("a", torch.zeros(1))
        calls["n"] += 1
        if calls["n"] in fault_calls:
            torch.linalg.cholesky(-torch.eye(2))  # what a LowRankMultivariateNormal does with a degenerate factor
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(a * x, 1.0))

    return model, guide


def test_a_covariance_that_cannot_be_factorised_is_a_lost_step_named_as_such():
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2; first non-finite: a covariance no longer positive "
                                                 r"definite in float32 \(linalg.cholesky"):
        fit(*_singular_guide_pair({7, 8}), torch.randn(64), epochs=2, batch_size=16, progress=False)
    with pytest.warns(UserWarning, match="rolled back"):
        result = fit(*_singular_guide_pair({11}), torch.randn(64), epochs=3, batch_size=16, lr=0.01,
                     on_nonfinite="rollback", progress=False)
    assert [row["lr"] for row in result.history] == [0.01, 0.005, 0.005]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 130)])
def test_interrupted_cli_fit_keeps_a_valid_checkpoint_and_resumes_to_the_same_result(tmp_path, signum, code):
    common = ["fit", "--likelihood", "cbernoulli", "--latent-dim", "3", "--hidden", "32", "--batch-size", "32",
              "--no-progress", "--seed", "3"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    interrupted = tmp_path / "interrupted"
    # a shell running the suite in the background starts it with SIGINT ignored, and children inherit that;
    # the fit under test gets the default disposition, as in a terminal
    process = subprocess.Popen([sys.executable, "-m", "pyro_vae", *common, "--epochs", "200", "--out", str(interrupted)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (interrupted / "history.csv").exists() or len((interrupted / "history.csv").read_text().splitlines()) < 3:
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=600)
    assert process.returncode == code, err
    assert re.search(r"keeps the checkpoint of epoch [0-9]+ \(continue with --resume\)", err), err
    done = load_run(interrupted).history[-1]["epoch"]
    assert 2 <= done < 200
    # resume to 6 epochs beside an uninterrupted 6-epoch run: the same numbers, bit for bit
    def run(out, *extra):
        return subprocess.run([sys.executable, "-m", "pyro_vae", *common, "--epochs", str(max(done, 6)), "--out", str(out), *extra],
                              capture_output=True, text=True, env=env, check=True)
    run(interrupted, "--resume")
    run(tmp_path / "straight")
    resumed = json.loads((interrupted / "metrics.json").read_text())
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert resumed["test_elbo"] == straight["test_elbo"] and resumed["val_elbo"] == straight["val_elbo"]


def test_a_crash_in_the_middle_of_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"elbo": 1.0})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"elbo": 2.0})
    assert json.loads(path.read_text()) == {"elbo": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


def test_csv_rows_with_different_columns_keep_every_column(tmp_path):
    from pyro_vae.files import write_csv

    write_csv(tmp_path / "rows.csv", [{"a": 1, "b": 2}, {"a": 3, "c": 4}])
    assert (tmp_path / "rows.csv").read_text().splitlines() == ["a,b,c", "1,2,", "3,,4"]
