"""The two-stochastic-layer VAE of Burda et al. (2016): fit, importance-sampled bounds, generation, the CLI."""

import json
import math
import subprocess
import sys

import pyro
import pytest
import torch

from pyro_vae import fit, load_data, load_run
from pyro_vae.errors import ConfigError
from pyro_vae.inference import importance_log_weights, log_likelihood
from pyro_vae.models import TwoLayerVAE

SMALL = {"latent_dims": (8, 4), "hidden": ((32, 32), (16, 16))}


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", binarize="dynamic")


@pytest.fixture(scope="module")
def fitted(digits):
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = TwoLayerVAE((1, 8, 8), **SMALL)
    result = fit(vae.model, vae.guide, digits.train, objective="iwae:5", epochs=4, batch_size=128, lr=1e-2,
                 dynamic_binarization=True, progress=False)
    return vae.eval(), result


def test_it_fits_under_iwae_and_elbo(fitted, digits):
    _, result = fitted
    objectives = [row["train_objective"] for row in result.history]
    assert all(math.isfinite(v) for v in objectives) and objectives[-1] > objectives[0]
    vae = TwoLayerVAE((1, 8, 8), **SMALL)
    elbo = fit(vae.model, vae.guide, digits.train[:256], objective="elbo", epochs=1, batch_size=64,
               dynamic_binarization=True, progress=False)
    assert math.isfinite(elbo.history[-1]["train_objective"])


def test_importance_sampled_log_likelihood_is_above_the_elbo_and_rises_with_k(fitted, digits):
    vae, _ = fitted
    x = digits.test
    # The ELBO (K = 1) as the mean log weight of 100 draws per point: the closed-form KL at z1 would read
    # p(z1 | z2) at a z2 drawn given z1, which is not the ELBO's term (models.two_layer module doc).
    weights = importance_log_weights(vae.model, vae.guide, x, 100, seed=1)
    estimates = {1: (weights.mean().item(), (weights.var(1) / 100).sum().sqrt().item() / len(x))}
    for k, seed in ((10, 2), (100, 3)):
        estimate = log_likelihood(importance_log_weights(vae.model, vae.guide, x, k, seed=seed))
        # the delta-method error: the replicate one is infinite as soon as one point's noisy k-hat at K = 100 is >= 1
        estimates[k] = (estimate["log_likelihood"], estimate["log_likelihood_mc_se"])
    print({k: f"{v:.4f} +- {se:.4f}" for k, (v, se) in estimates.items()})
    assert all(math.isfinite(v) and math.isfinite(se) for v, se in estimates.values())  # the IWAE bounds are finite
    for low, high in ((1, 10), (10, 100), (1, 100)):
        (a, se_a), (b, se_b) = estimates[low], estimates[high]
        assert b - a >= -2 * math.hypot(se_a, se_b), (low, high, estimates)
    assert estimates[100][0] > estimates[1][0]  # a fitted model's gap is many standard errors wide


def test_generate_returns_the_datas_shape_in_every_mode(fitted):
    vae, _ = fitted
    for mode in ("ancestral", "mean", "mean+scale"):
        assert vae.generate(5, mode).shape == (5, 1, 8, 8)
    z2 = torch.zeros(3, 4)
    assert torch.equal(vae.generate(3, "mean", z=z2), vae.generate(3, "mean", z=z2))  # deterministic given z2
    with pytest.raises(ConfigError, match="unknown generation mode"):
        vae.generate(2, "median")
    assert TwoLayerVAE((10,), latent_dims=(3, 2), hidden=((4,), (4,))).generate(2).shape == (2, 10)


def test_sizes_are_checked_and_burdas_are_the_default():
    vae = TwoLayerVAE((784,))
    assert [vae.encoder["z1"].body[0].out_features, vae.encoder["z1"].body[2].out_features] == [200, 200]
    assert vae.latent_dims == (100, 50) and vae.encoder["z2"].body[0].out_features == 100
    with pytest.raises(ConfigError, match="latent_dims must name the two layers"):
        TwoLayerVAE((784,), latent_dims=(100,))
    lowrank = TwoLayerVAE((1, 8, 8), **SMALL, guide="lowrank", guide_options={"rank": 2})
    assert lowrank.encoder["z1"].out_shape == (4 * 8,)  # (2 + rank) outputs per latent


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pyro_vae", *map(str, args)], capture_output=True, text=True)


def test_the_cli_fits_evaluates_with_refinement_and_load_run_rebuilds_it(tmp_path):
    out = tmp_path / "run"
    done = _cli("fit", "--data", "digits", "--binarize", "dynamic", "--model", "pyro_vae.models:TwoLayerVAE",
                "--model-arg", "latent_dims=[6, 3]", "--model-arg", "hidden=[[16], [8]]", "--objective", "iwae:5",
                "--epochs", 1, "--batch-size", 128, "--no-progress", "--out", out)
    assert done.returncode == 0, done.stderr
    shown = _cli("evaluate", out, "--importance-samples", 20, "--elbo-draws", 4, "--refine-steps", 2)
    assert shown.returncode == 0, shown.stderr
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation["latents_by_site"]) == {"z1", "z2"}
    assert math.isfinite(evaluation["elbo_refined"]) and evaluation["refinement"]["steps"] == 2
    run = load_run(out)
    assert isinstance(run.model, TwoLayerVAE) and run.model.latent_dims == (6, 3)


def test_meanfield_takes_no_closed_form_kl_against_the_guides_order(digits):
    """The guide draws z1 before z2, the model z2 before z1: no closed-form KL is an ELBO term here
    (pyro_vae.inference.traces.mean_field_valid), and fit says so for both sites."""
    pyro.clear_param_store()
    vae = TwoLayerVAE((1, 8, 8), **SMALL)
    result = fit(vae.model, vae.guide, digits.train[:64], objective="meanfield", epochs=1, batch_size=64,
                 dynamic_binarization=True, progress=False)
    assert result.kl_paths == {"z1": "monte-carlo", "z2": "monte-carlo"}


def test_z1_is_read_against_the_marginal_prior_variance_not_one_draw_of_z2(fitted, digits):
    """p(z1) = E_{z2 ~ N(0, I)} p(z1 | z2): its variance, against an oracle from 200,000 ancestral draws."""
    from pyro_vae.inference import latent_statistics

    vae, _ = fitted
    stats = latent_statistics(vae.model, vae.guide, digits.test, site="z1")
    with torch.no_grad():
        torch.manual_seed(5)
        layer = vae.conditional(vae.decoder["z1"](vae.prior().sample((200_000,))))
        means, variances = layer.mean.double(), layer.variance.double()
    oracle = variances.mean(0) + means.var(0)
    # the estimate is the same law of total variance over the len(test) draws of z2 of the model's run:
    # its standard error is that of a mean of h(z2) = Var(z1 | z2) + (E[z1 | z2] - E z1)^2 over them
    se = (variances + (means - means.mean(0)) ** 2).std(0) / math.sqrt(len(digits.test))
    estimate = torch.tensor(stats["prior_variance"], dtype=torch.float64)
    print(estimate, oracle, se)
    assert torch.all((estimate - oracle).abs() < 4 * se)
    # one draw of z2 gives the conditional variance, which is smaller than the marginal (z1's mean moves with z2)
    conditional = vae.conditional(vae.decoder["z1"](torch.zeros(1, 4))).variance.squeeze(0).double()
    assert bool((estimate > conditional).any())
