"""Evaluation: the importance-sampled log-likelihood against closed forms, latent statistics, PSIS, InferenceData."""

import json
import math

import numpy as np
import pyro
import pytest
import torch

from pyro_vae._arviz import arviz
from pyro_vae.cli import main
from pyro_vae.inference import (
    elbo_terms, evaluate, importance_log_weights, latent_statistics, log_likelihood, reconstruction_gain,
)
from pyro_vae.inference.diagnostics import posterior_inference_data, psis

from linear_gaussian import LinearGaussian

INFERENCE_DATA_GROUPS = {"posterior", "sample_stats", "posterior_predictive", "observed_data"}


def test_importance_weights_under_the_exact_posterior_equal_the_exact_likelihood_in_every_chunk():
    lg = LinearGaussian()
    x = lg.sample(37)
    exact = lg.exact_log_likelihood(x)
    # a memory budget so small that points and particles are both split into many chunks
    log_w = importance_log_weights(lg.model, lg.guide, x, particles=23, max_memory=2_000)
    assert log_w.shape == (37, 23)
    assert torch.allclose(log_w, exact[:, None].expand(37, 23), atol=1e-4)


def test_importance_weights_refuse_non_finite_data_and_leave_validation_as_it_was():
    from pyro_vae.errors import DataError

    lg = LinearGaussian()
    x = lg.sample(20)
    x[13, 1] = float("nan")
    with pytest.raises(DataError, match=r"non-finite values \(first at index \(13, 1\)"):
        importance_log_weights(lg.model, lg.guide, x, particles=4)
    for setting in (True, False):
        with pyro.validation_enabled(setting):
            importance_log_weights(lg.model, lg.guide, lg.sample(5), particles=4, max_memory=2_000)
            assert pyro.infer.util.is_validation_enabled() is setting


def test_importance_weights_check_every_data_point_with_validation_on():
    from pyro_vae.models import VAE

    vae = VAE((6,), latent_dim=2, hidden=(4,))
    x = torch.bernoulli(torch.full((30, 6), 0.5))
    x[29, 2] = 0.5  # outside the Bernoulli support, in the last chunk of points
    with pyro.validation_enabled(True), pytest.raises(ValueError, match="support"):
        importance_log_weights(vae.model, vae.guide, x, particles=200, max_memory=20_000)  # 1 point x 2 chunks


def test_is_estimate_converges_to_the_exact_log_likelihood_and_bounds_are_ordered():
    lg = LinearGaussian()
    lg.guide_scale_factor = 1.7  # a poor guide: the ELBO gap is real
    x = lg.sample(300)
    exact = lg.exact_log_likelihood(x).mean().item()
    elbo = elbo_terms(lg.model, lg.guide, x, particles=50)["elbo"]
    pyro.set_rng_seed(0)
    estimates = {k: log_likelihood(importance_log_weights(lg.model, lg.guide, x, particles=k)) for k in (1, 10, 100, 3000)}
    values = {k: e["log_likelihood"] for k, e in estimates.items()}
    # ELBO = E[IWAE_1]: equal within Monte Carlo error (std of a 300-point mean of single log-weights)
    single = importance_log_weights(lg.model, lg.guide, x, particles=1)[:, 0]
    assert abs(values[1] - elbo) < 4 * single.std().item() / math.sqrt(len(x)) + 0.02
    # IWAE_K rises with K and the gap to log p(x) shrinks
    assert values[1] < values[10] < values[100] < values[3000]
    gaps = [exact - values[k] for k in (1, 10, 100, 3000)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] > -4 * estimates[3000]["log_likelihood_mc_se"]
    # K = 3000 reaches the exact value within its own Monte Carlo error (plus its O(1/K) bias)
    assert abs(values[3000] - exact) < 4 * estimates[3000]["log_likelihood_mc_se"] + 1e-3


def test_psis_khat_is_arviz_psislw_on_the_same_log_weights():
    lg = LinearGaussian()
    lg.guide_scale_factor = 0.6  # a too-narrow guide: heavy-tailed weights, high k-hat
    x = lg.sample(20)
    log_w = importance_log_weights(lg.model, lg.guide, x, particles=500)
    ours = psis(log_w)
    smoothed, khat = arviz().psislw(log_w.double().numpy(), normalize=False)
    np.testing.assert_array_equal(ours["khat"], khat)
    expected = np.logaddexp.reduce(smoothed, axis=-1) - math.log(500)
    np.testing.assert_allclose(ours["psis_log_likelihood"], expected)
    wide = LinearGaussian()
    wide.guide_scale_factor = 1.5  # a too-wide guide: light-tailed weights
    assert psis(importance_log_weights(wide.model, wide.guide, x, particles=500))["khat"].mean() < ours["khat"].mean()


def test_exact_posterior_satisfies_the_moment_law_and_a_dead_latent_is_collapsed():
    # Law of total variance: with q = p(z|x), Var_x(mu_j) + E_x[sigma_j^2] = Var(z_j) = 1 and E_x mu_j = 0.
    lg = LinearGaussian(data_dim=5, latent_dim=3)
    lg.W[:, 2] = 0.0  # the third latent does not reach the data: its posterior is the prior
    lg.posterior_cov = torch.linalg.inv(torch.eye(3) + lg.W.T @ lg.W / lg.noise**2)
    x = lg.sample(20_000)
    stats = latent_statistics(lg.model, lg.guide, x)
    # standard error of a variance estimate from n draws ~ sqrt(2/n) = 0.01
    assert np.allclose(stats["moment_sum"], 1.0, atol=0.04)
    assert np.allclose(stats["mean_mu"], 0.0, atol=0.04)
    assert stats["active"] == [True, True, False] and stats["active_units"] == 2
    assert stats["var_mu"][2] < 1e-8 and stats["mean_sigma2"][2] == pytest.approx(1.0, abs=1e-5)
    assert stats["kl"][2] == pytest.approx(0.0, abs=1e-5)
    gains = reconstruction_gain(lg.model, lg.guide, x[:2000])["gain"]
    assert gains[2] == pytest.approx(0.0, abs=1e-5) and min(gains[:2]) > 0.1


def test_inference_data_round_trips_through_netcdf_with_the_users_attrs_and_no_fitted_parameters(tmp_path):
    # the layout in full: tests/test_inference_data.py
    az = arviz()
    lg = LinearGaussian()
    x = lg.sample(4)
    idata = posterior_inference_data(lg.model, lg.guide, x, draws=1200, attrs={"prior": "N(0, I)"})
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    loaded = az.from_netcdf(str(path))
    assert set(loaded.groups()) == INFERENCE_DATA_GROUPS  # no constant_data, no log_likelihood
    assert loaded.posterior["z"].shape == (1, 1200, 4, 2)  # one chain of independent draws
    np.testing.assert_array_equal(loaded.posterior["z"].values, idata.posterior["z"].values)
    assert loaded.attrs["prior"] == "N(0, I)"
    # the draws' mean matches the exact posterior within Monte Carlo error
    exact = lg.posterior(x)
    draws = torch.as_tensor(loaded.posterior["z"].values[0])
    assert torch.allclose(draws.mean(0), exact.mean, atol=4 * exact.variance.sqrt().max().item() / math.sqrt(1200))


def test_evaluate_command_writes_numbers_figures_and_inference_data(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", "--epochs", "3", "--latent-dim", "4", "--hidden", "32", "--out", str(run), "--no-progress"]) == 0
    fit_figure = (run / "figures" / "reconstructions_samples.png").read_bytes()
    assert main(["evaluate", str(run), "--importance-samples", "50", "--inference-points", "3", "--max-memory", "4MB"]) == 0
    assert (run / "figures" / "reconstructions_samples.png").read_bytes() == fit_figure  # evaluate keeps the fit's
    printed = capsys.readouterr().out
    assert "Var(mu)" in printed and "log p(x)" in printed
    result = json.loads((run / "evaluation.json").read_text())
    assert result["importance_samples"] == 50 and len(result["khat"]) == result["num_datapoints"] == 179
    assert result["log_likelihood"] >= result["elbo"] - 3 * result["log_likelihood_mc_se"] - 0.5
    assert len(result["latents"]["reconstruction_gain"]) == 4
    assert len(result["calibration"]["coverage_50"]) == 4 and result["calibration"]["simulations"] == 200
    for name in ("latent_variances", "khat", "evaluated_reconstructions_samples", "generation_modes", "training_curve",
                 "calibration"):
        assert (run / "figures" / f"{name}.png").stat().st_size > 5_000
    idata = arviz().from_netcdf(str(run / "posterior.nc"))
    assert set(idata.groups()) == INFERENCE_DATA_GROUPS
    assert idata.posterior["z"].dims == ("chain", "draw", "datapoint", "latent")
    assert idata.posterior["z"].shape == (1, 1000, 3, 4)  # one chain of evaluate's 1000 draws, 3 points, 4 latents
    assert idata.sample_stats["log_joint"].shape == idata.sample_stats["log_q"].shape == (1, 1000, 3)
    assert idata.sample_stats["khat"].shape == (3,)
    assert idata.posterior_predictive["x"].shape == (1, 1000, 3, 1, 8, 8)
    assert idata.observed_data["x"].shape == (3, 1, 8, 8)


def test_evaluate_serves_a_users_own_pair():
    lg = LinearGaussian()
    result = evaluate(lg.model, lg.guide, lg.sample(50), importance_samples=20)
    assert result["log_likelihood"] == pytest.approx(lg.exact_log_likelihood(lg.sample(50)).mean().item(), abs=1e-3)
    assert result["active_units"] == 2 and "collapsed_generation_mean_abs_difference" not in result


def test_an_interrupted_evaluation_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    from pyro_vae.inference import iwae

    lg = LinearGaussian()
    lg.guide_scale_factor = 1.5
    x = lg.sample(40)
    straight = evaluate(lg.model, lg.guide, x, importance_samples=30, max_memory=10_000, out=tmp_path / "a", seed=4)

    original, calls = iwae.IWAE.log_weights, {"n": 0}

    def interrupt_on_the_fifth_chunk(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # one warm-up call, then the fifth chunk of data points
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(iwae.IWAE, "log_weights", interrupt_on_the_fifth_chunk)
    with pytest.raises(KeyboardInterrupt):
        evaluate(lg.model, lg.guide, x, importance_samples=30, max_memory=10_000, out=tmp_path / "b", seed=4)
    assert (tmp_path / "b" / "evaluation.partial.pt").exists()
    monkeypatch.setattr(iwae.IWAE, "log_weights", original)
    calls["n"] = 0
    resumed = evaluate(lg.model, lg.guide, x, importance_samples=30, max_memory=10_000, out=tmp_path / "b", seed=4)
    assert resumed["log_likelihood_per_datapoint"] == straight["log_likelihood_per_datapoint"]
    assert not (tmp_path / "b" / "evaluation.partial.pt").exists()


def test_a_catalogue_vae_evaluation_killed_after_its_weights_resumes_bitwise(tmp_path, monkeypatch):
    """Every number of evaluation.json, collapsed-latent generation included (drawn after the weights), is
    the same after an interruption as without one (issue 38, item 6): killed once the importance weights
    are all kept, the resumed evaluation draws none of them, and what follows must not depend on that."""
    import json
    import sys

    from pyro_vae.data import load_data
    from pyro_vae.models import VAE

    data = load_data("digits")
    vae = VAE(data.event_shape, latent_dim=3, likelihood="cbernoulli", hidden=(16,))
    x = data.test[:60]
    options = dict(importance_samples=20, max_memory=40_000, seed=2, inference_points=3, elbo_draws=4)
    evaluate(vae.model, vae.guide, x, out=tmp_path / "a", **options)
    module = sys.modules["pyro_vae.inference.evaluate"]
    original = module.latent_statistics

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "latent_statistics", interrupt)
    with pytest.raises(KeyboardInterrupt):
        evaluate(vae.model, vae.guide, x, out=tmp_path / "b", **options)
    assert (tmp_path / "b" / "evaluation.partial.pt").exists()
    monkeypatch.setattr(module, "latent_statistics", original)
    evaluate(vae.model, vae.guide, x, out=tmp_path / "b", **options)
    straight, resumed = (json.loads((tmp_path / d / "evaluation.json").read_text()) for d in "ab")
    assert "collapsed_generation_mean_abs_difference" in straight
    assert resumed == straight
