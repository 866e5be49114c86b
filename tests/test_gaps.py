"""The inference-gap split against closed forms on a linear-Gaussian model (Cremer et al. 2018)."""

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from linear_gaussian import mis_amortised_problem
from pyro_vae.errors import ConfigError
from pyro_vae.inference.gaps import inference_gaps, optimise_local_guide

@pytest.fixture
def problem():
    return mis_amortised_problem(0.05)  # an encoder off the optimum: a non-zero amortisation gap


def exact_gaps(truth, pair, x):
    """KL(q || p(z|x)) for the amortised q and for the best diagonal Gaussian (precision diag(Lambda))."""
    posterior = truth.posterior(x)
    with torch.no_grad():
        mean = x @ pair.params["A"].T + pair.params["c"]
        amortised = MultivariateNormal(mean, torch.diag_embed(pair.params["log_sd"].exp().expand_as(mean) ** 2))
    best = MultivariateNormal(posterior.loc, torch.diag(1 / torch.linalg.inv(truth.posterior_cov).diag()))
    total = kl_divergence(amortised, posterior).mean().item()
    approximation = kl_divergence(best, posterior).mean().item()
    return {"total_gap": total, "approximation_gap": approximation, "amortisation_gap": total - approximation}


def test_the_local_optimisation_reaches_the_best_diagonal_gaussian(problem):
    truth, pair, x = problem
    local = optimise_local_guide(pair.model, pair.guide, x, steps=500)
    family, loc, raw, _, _ = local.sites["z"]
    found = MultivariateNormal(loc.detach(), torch.diag_embed(torch.nn.functional.softplus(raw.detach()) ** 2))
    shortfall = kl_divergence(found, truth.posterior(x)).mean().item() - exact_gaps(truth, pair, x)["approximation_gap"]
    assert 0 <= shortfall < 0.01


def test_gap_split_matches_the_closed_forms_and_adds_up(problem):
    truth, pair, x = problem
    result = inference_gaps(pair.model, pair.guide, x, particles=2000, steps=500)
    exact = exact_gaps(truth, pair, x)
    for key, value in exact.items():
        # Monte Carlo error, plus 0.01 nats for the optimiser's shortfall (test above)
        assert abs(result[key] - value) < 4 * result[f"{key}_mc_se"] + 0.01, (key, result[key], value)
    assert abs(result["log_likelihood"] - truth.exact_log_likelihood(x).mean().item()) < 4 * result["log_likelihood_mc_se"]
    # the reverse-KL optimum is narrower than this correlated posterior: the amortised guide is the better proposal
    assert result["log_likelihood_proposal"] == "amortised"
    assert result["log_likelihood_optimised_proposal"] < result["log_likelihood_amortised_proposal"]
    parts = result["approximation_gap"] + result["amortisation_gap"]
    assert abs(parts - result["total_gap"]) < 1e-4


def test_a_guide_outside_the_location_scale_families_is_refused(problem):
    truth, _, x = problem
    with pytest.raises(ConfigError, match="location-scale"):
        inference_gaps(truth.model, truth.guide, x, particles=10, steps=1)
