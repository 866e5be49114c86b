"""The sweep executor: parallel local workers, resumption, and clear errors."""

import json
import sys

import pytest
import torch

from pyro_vae.errors import ConfigError, RunDirError
from pyro_vae.sweep import run_sweep


def noisy_mean(run_dir, seed, n, offset=None):
    """A seeded computation that also counts how often it ran (in its own directory)."""
    runs = run_dir / "runs.txt"
    runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))
    generator = torch.Generator().manual_seed(seed)
    shift = 0.0 if offset is None else offset.sum().item()
    return {"seed": seed, "mean": torch.randn(n, generator=generator).mean().item() + shift, "threads": torch.get_num_threads()}


TASKS = {f"seed={s}": {"seed": s, "n": 1000} for s in range(3)}


def test_local_workers_give_the_serial_results_in_task_order(tmp_path):
    serial = run_sweep(noisy_mean, TASKS, tmp_path / "serial", executor="serial", progress=False)
    local = run_sweep(noisy_mean, TASKS, tmp_path / "local", executor="local", workers=2, progress=False)
    assert list(local) == list(TASKS)
    assert [r["mean"] for r in local.values()] == [r["mean"] for r in serial.values()]
    assert all(r["threads"] == 1 for r in local.values())  # one torch thread per worker process
    assert json.loads((tmp_path / "local" / "seed=1" / "result.json").read_text())["seed"] == 1


def test_a_sweep_started_again_skips_finished_tasks(tmp_path):
    first = run_sweep(noisy_mean, dict(list(TASKS.items())[:2]), tmp_path, executor="serial", progress=False)
    again = run_sweep(noisy_mean, TASKS, tmp_path, executor="local", workers=2, progress=False)
    assert [again[k]["mean"] for k in first] == [r["mean"] for r in first.values()]
    assert [(tmp_path / key / "runs.txt").read_text() for key in TASKS] == ["1", "1", "1"]


def test_a_failed_task_leaves_no_result_and_the_others_keep_theirs(tmp_path):
    tasks = {**TASKS, "bad": {"seed": 0, "n": -1}}
    with pytest.raises(RuntimeError):
        run_sweep(noisy_mean, tasks, tmp_path, executor="serial", progress=False)
    assert not (tmp_path / "bad" / "result.json").exists()
    assert all((tmp_path / key / "result.json").exists() for key in TASKS)


def test_bad_options_are_refused_with_the_valid_ones(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="serial, local, ray"):
        run_sweep(noisy_mean, TASKS, tmp_path, executor="dask")
    for key in ("a/b", "..", 3):
        with pytest.raises(ConfigError, match="cannot name a directory"):
            run_sweep(noisy_mean, {key: {"seed": 0, "n": 1}}, tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without Ray
    with pytest.raises(ConfigError, match=r"pyro-vae\[ray\]"):
        run_sweep(noisy_mean, TASKS, tmp_path, executor="ray", progress=False)


def test_a_finished_task_run_with_other_settings_is_refused_not_reused(tmp_path):
    run_sweep(noisy_mean, {"a": {"seed": 0, "n": 10}}, tmp_path, executor="serial", progress=False)
    with pytest.raises(RunDirError, match="other settings"):
        run_sweep(noisy_mean, {"a": {"seed": 0, "n": 20}}, tmp_path, executor="serial", progress=False)
    # tensors count by their contents: the same values are the same settings
    task = {"seed": 1, "n": 5, "offset": torch.ones(3)}
    run_sweep(noisy_mean, {"t": task}, tmp_path, executor="serial", progress=False)
    again = run_sweep(noisy_mean, {"t": {**task, "offset": torch.ones(3)}}, tmp_path, executor="serial", progress=False)
    assert (tmp_path / "t" / "runs.txt").read_text() == "1" and again["t"]["seed"] == 1
    with pytest.raises(RunDirError, match="other settings"):
        run_sweep(noisy_mean, {"t": {**task, "offset": torch.zeros(3)}}, tmp_path, executor="serial", progress=False)


def fit_that_reports(run_dir, epochs, seconds):
    """Stands in for a fit in a sweep: reports its epochs as fit does, each taking ``seconds``."""
    import time

    from pyro_vae.progress import report_epoch

    for epoch in range(1, epochs + 1):
        time.sleep(seconds)
        report_epoch(epoch, epochs)
    return {"epochs": epochs}


def test_the_sweep_bar_shows_each_running_fits_epoch(tmp_path, capsys):
    tasks = {"slow": {"epochs": 3, "seconds": 1.5}, "quick": {"epochs": 2, "seconds": 0.1}}
    run_sweep(fit_that_reports, tasks, tmp_path / "sweep", executor="local", workers=2, progress=True)
    shown = capsys.readouterr().err
    assert "slow: epoch 1/3" in shown and "slow: epoch 2/3" in shown  # polled once a second while it ran
    assert json.loads((tmp_path / "sweep" / "slow" / "progress.json").read_text()) == {"epoch": 3, "epochs": 3}


def test_a_real_fit_in_a_sweep_reports_its_epochs(tmp_path):
    result = run_sweep(tiny_fit, {"a": {"epochs": 2}}, tmp_path / "sweep", executor="serial", progress=False)
    assert result["a"]["epochs"] == 2
    assert json.loads((tmp_path / "sweep" / "a" / "progress.json").read_text()) == {"epoch": 2, "epochs": 2}


def tiny_fit(run_dir, epochs):
    from pyro_vae import VAE, fit, load_data

    data = load_data("digits", binarize="dynamic")
    vae = VAE(data.event_shape, latent_dim=2, hidden=(8,))
    result = fit(vae.model, vae.guide, data.train[:128], epochs=epochs, batch_size=64, progress=False,
                 dynamic_binarization=True)
    return {"epochs": result.metrics["epochs"]}
