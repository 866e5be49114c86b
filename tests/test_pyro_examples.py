"""Pyro's own ``examples/vae/vae.py`` (ported in ``pairs/pyro_example_vae.py``, one change: its 784 pixels as
a parameter) through every command: fit from the CLI and from Python, evaluate with IS, AIS, the bracket and
the calibration check, posterior.nc read by ArviZ, compare-runs, load_run and report (issue 35)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

from pyro_vae._arviz import arviz
from pyro_vae.data import load_data
from pyro_vae.inference import fit, load_run

EXAMPLE = Path(__file__).parent / "pairs" / "pyro_example_vae.py"
SPEC = f"{EXAMPLE}:make_vae"
SIZE = ["--model-arg", "pixels=64", "--model-arg", "z_dim=4", "--model-arg", "hidden_dim=32"]  # 8x8 digits


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pyro_vae", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two CLI fits of the example on digits, with the seeds 0 and 1; the first evaluated with every estimator."""
    root = tmp_path_factory.mktemp("pyro-example")
    for seed in (0, 1):
        done = _cli("fit", "--model", SPEC, *SIZE, "--epochs", 3, "--seed", seed, "--no-progress", "--out", root / f"s{seed}")
        assert done.returncode == 0, done.stderr
    done = _cli("evaluate", root / "s0", "--model", SPEC, "--importance-samples", 100, "--inference-points", 4, "--estimator", "ais",
                "--steps", 10, "--chains", 4, "--bracket-points", 3, "--calibration", 50)
    assert done.returncode == 0, done.stderr
    return root


def test_the_example_fits_from_python_on_relaxed_pixels_as_it_is_written(tmp_path):
    """Its Bernoulli(validate_args=False) scores grey pixels: the data check respects that choice."""
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        from pyro_example_vae import make_vae
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    data = load_data("digits")
    assert bool(((data.train > 0) & (data.train < 1)).any())  # grey pixels, no binarisation
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    vae = make_vae(data.event_shape, z_dim=4, hidden_dim=32, pixels=64)
    result = fit(vae.model, vae.guide, data.train, val=data.val, epochs=3, out=tmp_path / "run", progress=False)
    assert math.isfinite(result.metrics["val_elbo"]) and result.data_plate == "data"


def test_evaluate_reads_the_example_with_every_estimator_and_arviz_reads_its_posterior(runs):
    run = runs / "s0"
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["data_plate"] == "data" and evaluation["latents"]["site"] == "latent"
    assert abs(evaluation["ais"]["log_likelihood"] - evaluation["log_likelihood"]) < 1.0  # two estimates of one number
    assert evaluation["ais"]["bracket"]["points"] == 3 and len(evaluation["calibration"]["coordinates"]) == 4
    az = arviz()
    idata = az.from_netcdf(str(run / "posterior.nc"))
    assert idata.posterior["latent"].dims == ("chain", "draw", "datapoint", "latent_dim")
    summary = az.summary(idata, var_names=["latent"], kind="stats")
    assert len(summary) == 4 * 4 and all(name.startswith("latent[") for name in summary.index)
    axes = az.plot_posterior(idata, var_names=["latent"], coords={"datapoint": [0], "latent_dim": [0, 1]})
    assert len(axes.flatten()) == 2


def test_compare_runs_load_run_and_report_take_the_example(runs, tmp_path):
    done = _cli("compare-runs", runs / "s0", runs / "s1", "--model", SPEC, "--importance-samples", 50, "--out", tmp_path / "cmp.json")
    assert done.returncode == 0, done.stderr
    compared = json.loads((tmp_path / "cmp.json").read_text())
    assert {row["run"] for row in compared["runs"]} == {str(runs / "s0"), str(runs / "s1")}
    assert all(math.isfinite(row["log_likelihood"]) for row in compared["runs"])
    pyro.clear_param_store()
    run = load_run(runs / "s1", model=SPEC)
    assert type(run.model).__name__ == "VAE" and run.model.pixels == 64
    assert torch.isfinite(run.model.reconstruct_img(load_data("digits").test[:3])).all()
    done = _cli("report", runs / "s0", "--out", tmp_path / "report.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.html").read_text()
    assert "Evaluation on 179 points" in page and "Annealed importance sampling" in page


M2 = f"{EXAMPLE.parent / 'pyro_example_ss_vae.py'}:make_ssvae"
M2_SIZE = ["--model-arg", "input_size=64", "--model-arg", "z_dim=4", "--model-arg", "hidden=32"]


def test_the_semi_supervised_vae_on_unlabelled_digits_through_every_command(tmp_path):
    """Pyro's ``examples/vae/ss_vae_M2.py`` (ported in ``pairs/pyro_example_ss_vae.py``, importing its
    ``utils/custom_mlp.py`` from beside it): y enumerated in fit (``--objective enum``), sampled by the guide
    in evaluate and compare-runs (importance sampling needs no reparameterisation); AIS and the calibration
    check, which need continuous latents, say so and the rest runs."""
    for seed in (0, 1):
        done = _cli("fit", "--model", M2, *M2_SIZE, "--objective", "enum", "--epochs", 2, "--seed", seed, "--no-progress",
                    "--out", tmp_path / f"s{seed}")
        assert done.returncode == 0, done.stderr
    done = _cli("evaluate", tmp_path / "s0", "--model", M2, "--importance-samples", 100, "--estimator", "ais", "--steps", 5,
                "--chains", 4, "--calibration", 20)
    assert done.returncode == 0, done.stderr
    evaluation = json.loads((tmp_path / "s0" / "evaluation.json").read_text())
    assert math.isfinite(evaluation["log_likelihood"]) and evaluation["log_likelihood"] >= evaluation["elbo"] - 0.05
    skipped = evaluation["diagnostics"]["skipped"]
    assert "'y' is discrete" in skipped["AIS"] and "'y' is discrete" in skipped["calibration of q(z|x)"]
    assert set(evaluation["latents_by_site"]) == {"y", "z"}
    done = _cli("compare-runs", tmp_path / "s0", tmp_path / "s1", "--model", M2, "--importance-samples", 50)
    assert done.returncode == 0 and "log p(x) per point" in done.stdout, done.stderr
    pyro.clear_param_store()
    assert type(load_run(tmp_path / "s1", model=M2).model).__name__ == "UnlabelledPair"
    done = _cli("report", tmp_path / "s0", "--out", tmp_path / "report.html")
    assert done.returncode == 0 and "Evaluation on 179 points" in (tmp_path / "report.html").read_text(), done.stderr
