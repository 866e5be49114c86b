"""NUTS reference posterior: recovers the exact Gaussian posterior of a linear-Gaussian model."""

import math

import numpy as np
import pytest
import torch

from linear_gaussian import LinearGaussian
from pyro_vae._arviz import arviz
from pyro_vae.errors import ConfigError
from pyro_vae.inference.reference import compare_with_guide, energy_distance, nuts_posterior, plot_marginals


@pytest.fixture(scope="module")
def reference():
    truth = LinearGaussian(data_dim=5, latent_dim=2, noise=0.5)
    x = truth.sample(3)
    return truth, x, nuts_posterior(truth.model, x, num_samples=400, warmup_steps=200, num_chains=4)


def test_nuts_recovers_the_exact_posterior_within_its_ess(reference):
    truth, x, idata = reference
    summary = arviz().summary(idata)
    assert summary["r_hat"].max() < 1.01
    draws = idata.posterior["z"].values.reshape(-1, 3, 2)
    ess = float(summary["ess_bulk"].min())
    exact_mean, exact_cov = truth.posterior(x).loc.numpy(), truth.posterior_cov.numpy()
    sd = np.sqrt(np.diag(exact_cov))
    # the Monte Carlo error of a mean is sd / sqrt(ESS); of a covariance entry sqrt((s_ii s_jj + s_ij^2) / ESS)
    assert np.all(np.abs(draws.mean(0) - exact_mean) < 4 * sd / math.sqrt(ess))
    cov_error = np.sqrt((np.outer(sd**2, sd**2) + exact_cov**2) / ess)
    for point in range(3):
        assert np.all(np.abs(np.cov(draws[:, point].T) - exact_cov) < 4 * cov_error)


def test_the_exact_guide_is_closer_to_nuts_than_a_too_wide_one(reference, tmp_path):
    truth, x, idata = reference
    exact = compare_with_guide(idata, truth.model, truth.guide, x, draws=1000, khat=np.array([0.1, 0.2, 0.3]))
    truth.guide_scale_factor = 2.0
    wide = compare_with_guide(idata, truth.model, truth.guide, x, draws=1000)
    truth.guide_scale_factor = 1.0
    assert max(p["energy_distance"] for p in exact["points"]) < min(p["energy_distance"] for p in wide["points"])
    for row in wide["rows"]:  # twice the posterior's standard deviation, within sampling error
        assert abs(row["q_sd"] / row["nuts_sd"] - 2.0) < 0.25
    assert -1 <= exact["spearman_khat_distance"] <= 1 and wide["spearman_khat_distance"] is None
    assert plot_marginals(exact, tmp_path / "marginals.png").stat().st_size > 0


def test_energy_distance_against_its_closed_form_in_one_dimension():
    # for N(0,1) vs N(m,1): D^2 = 2 E|Z-Y| - 2 E|Z-Z'| with E|N(m, 2)| = 2 phi(m/sqrt2) sqrt2 + m (2 Phi(m/sqrt2) - 1)
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 1, generator=generator), torch.randn(4000, 1, generator=generator) + 1.0
    normal = torch.distributions.Normal(0.0, 1.0)
    s = math.sqrt(2)
    expected_abs = lambda m: 2 * s * normal.log_prob(torch.tensor(m / s)).exp().item() + m * (2 * normal.cdf(torch.tensor(m / s)).item() - 1)
    exact = 2 * expected_abs(1.0) - 2 * expected_abs(0.0)
    # the estimate's standard deviation at n = 4000 per sample is 0.027 (20 seeds): 4 of them
    assert abs(energy_distance(a, b) - exact) < 4 * 0.027


def test_one_chain_is_refused():
    truth = LinearGaussian()
    with pytest.raises(ConfigError, match="at least 2 chains"):
        nuts_posterior(truth.model, truth.sample(2), num_chains=1)
