"""Every prior x guide x likelihood x objective: valid ones fit with a finite, falling loss; invalid ones are refused."""

import math

import pytest
import torch

from pyro_vae.data import load_data
from pyro_vae.errors import ConfigError
from pyro_vae.inference import fit
from pyro_vae.kl import min_particles_for_finite_bound
from pyro_vae.models import VAE

PRIORS = ["normal", "laplace", "cauchy", "studentt", "mixture"]
GUIDES = ["normal", "cauchy"]
LIKELIHOODS = [
    ("bernoulli", 1.0), ("cbernoulli", 1.0), ("gaussian", 1.0), ("gaussian", 0.1), ("gaussian", "shared"),
    ("gaussian", "per-feature"), ("gaussian", "per-sample"), ("laplace", 0.3),
]
OBJECTIVES = [("elbo", 1), ("meanfield", 1), ("iwae", 3)]
# Heavy-tailed guide against a light-tailed prior: KL infinite (see pyro_vae.kl).
INVALID_FOR_KL = {("cauchy", "normal"), ("cauchy", "laplace"), ("cauchy", "mixture")}


@pytest.fixture(scope="module")
def tiny_digits():
    data = load_data("digits")
    return data.train[:64]


def _vae(prior, guide, likelihood, sigma_x, network="mlp"):
    return VAE((1, 8, 8), latent_dim=3, prior=prior, guide=guide, likelihood=likelihood, sigma_x=sigma_x,
               network=network, hidden=(32,))


@pytest.mark.parametrize("objective, particles", OBJECTIVES)
@pytest.mark.parametrize("likelihood, sigma_x", LIKELIHOODS)
@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("prior", PRIORS)
def test_combination(tiny_digits, prior, guide, likelihood, sigma_x, objective, particles):
    x = (tiny_digits > 0.5).float() if likelihood == "bernoulli" else tiny_digits
    vae = _vae(prior, guide, likelihood, sigma_x)
    if (guide, prior) in INVALID_FOR_KL and objective != "iwae":
        with pytest.raises(ConfigError, match="infinite"):
            fit(vae.model, vae.guide, x, objective=objective, particles=particles, epochs=1, progress=False)
        return
    result = fit(vae.model, vae.guide, x, objective=objective, particles=particles, epochs=20, batch_size=32,
                 lr=1e-2, progress=False)
    losses = [-row["train_objective"] for row in result.history]
    assert all(math.isfinite(v) for v in losses)
    # 40 Adam steps at lr 1e-2 from a random decoder: the last five epochs sit well below the first five.
    assert sum(losses[-5:]) < sum(losses[:5])


@pytest.mark.parametrize("prior", ["normal", "laplace"])
def test_iwae_below_the_minimum_particle_count_is_refused(tiny_digits, prior):
    vae = _vae(prior, "cauchy", "gaussian", 1.0)
    q = vae.encode(tiny_digits[:2])
    needed = min_particles_for_finite_bound(q, vae.prior())
    with pytest.raises(ConfigError, match=f"--particles {needed}"):
        fit(vae.model, vae.guide, tiny_digits, objective="iwae", particles=needed - 1, epochs=1, progress=False)


@pytest.mark.parametrize("likelihood, sigma_x", [("bernoulli", 1.0), ("gaussian", "per-sample")])
def test_conv_network_fits(tiny_digits, likelihood, sigma_x):
    x = (tiny_digits > 0.5).float() if likelihood == "bernoulli" else tiny_digits
    vae = _vae("normal", "normal", likelihood, sigma_x, network="conv")
    result = fit(vae.model, vae.guide, x, epochs=20, batch_size=32, lr=1e-2, progress=False)
    losses = [-row["train_objective"] for row in result.history]
    assert all(math.isfinite(v) for v in losses) and sum(losses[-5:]) < sum(losses[:5])


def test_linear_network_fits(tiny_digits):
    vae = _vae("normal", "normal", "gaussian", "shared", network="linear")
    result = fit(vae.model, vae.guide, tiny_digits, epochs=20, batch_size=32, lr=1e-2, progress=False)
    losses = [-row["train_objective"] for row in result.history]
    assert sum(losses[-5:]) < sum(losses[:5])
    assert torch.isfinite(vae.likelihood.log_sigma)


# The richer guides against every prior family, and the VampPrior with every guide (it takes the guide's
# own family as its components), under each objective; one likelihood, since the likelihood does not meet
# the guide or prior in any code path (the grid above covers it).
RICH = sorted({(prior, guide) for prior in ("normal", "laplace", "cauchy", "mixture", "vamp") for guide in ("lowrank", "iaf")}
              | {("vamp", guide) for guide in GUIDES})


@pytest.mark.parametrize("objective, particles", OBJECTIVES)
@pytest.mark.parametrize("prior, guide", RICH)
def test_rich_guide_and_vamp_prior_combination(tiny_digits, prior, guide, objective, particles):
    x = (tiny_digits > 0.5).float()
    vae = _vae(prior, guide, "bernoulli", 1.0)
    result = fit(vae.model, vae.guide, x, objective=objective, particles=particles, epochs=20, batch_size=32,
                 lr=1e-2, progress=False)
    losses = [-row["train_objective"] for row in result.history]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])
