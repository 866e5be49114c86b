"""Baselines: closed-form pPCA against scikit-learn and a known generator, pPCA by SVI, the linear VAE
(Lucas et al. 2019), and the Gaussian mixture against scikit-learn."""

import math

import numpy as np
import pyro
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from pyro_vae.data import load_data, synthetic_basis
from pyro_vae.errors import ConfigError, DataError
from pyro_vae.inference import elbo_terms, fit, importance_log_weights, latent_statistics, log_likelihood
from pyro_vae.models import VAE
from pyro_vae.models.gmm import GaussianMixturePair
from pyro_vae.models.ppca import PPCA, PPCAPair, principal_angles

CASES = [("digits", 8), ("synthetic-patches", 5)]


@pytest.fixture(scope="module")
def datasets():
    return {name: load_data(name) for name, _ in CASES}


@pytest.mark.parametrize("name, d", CASES)
def test_closed_form_ppca_equals_sklearn_pca_score_samples(datasets, name, d):
    x = datasets[name].train.flatten(1).double().numpy()
    ours = PPCA(d, ddof=1).fit(x).score_samples(x)
    np.testing.assert_allclose(ours, PCA(n_components=d).fit(x).score_samples(x), rtol=1e-6)


def test_ppca_recovers_a_known_generator(datasets):
    # synthetic-patches: x = W c + 0.1 eps with W the five unit-norm basis images, Var(c_k) = 1.
    x = datasets["synthetic-patches"].train.flatten(1).double().numpy()
    model = PPCA(5).fit(x)
    # sigma^2 is a mean of 20 noise eigenvalues from n = 8000 draws: relative SE ~ sqrt(2 / (8000 * 20)) = 0.4%
    assert model.noise_variance_ == pytest.approx(0.01, rel=0.03)
    assert principal_angles(model.loadings_, synthetic_basis().flatten(1).T.double()).max() < 2.0
    split = model.variance_split()
    assert split["total"] == pytest.approx(model.eigenvalues_.sum(), rel=1e-9)  # the split is exact


def test_ppca_maximum_likelihood_is_a_maximum(datasets):
    x = datasets["digits"].train.flatten(1).double().numpy()
    model = PPCA(8).fit(x)
    best = model.score(x)
    for factor in (0.9, 1.1):
        perturbed = PPCA(8).fit(x)
        perturbed.noise_variance_ *= factor
        assert perturbed.score(x) < best
        perturbed = PPCA(8).fit(x)
        perturbed.loadings_ = perturbed.loadings_ * factor
        assert perturbed.score(x) < best


@pytest.mark.parametrize("name, d", CASES)
def test_ppca_by_svi_converges_to_the_closed_form(datasets, name, d):
    data = datasets[name]
    closed = PPCA(d).fit(data.train)
    pyro.set_rng_seed(0)
    pair = PPCAPair(data.event_shape, d, guide="exact")
    # full-batch steps with the exact posterior as guide: stochastic maximum likelihood
    fit(pair.model, pair.guide, data.train, epochs=400, batch_size=len(data.train), lr=0.05, progress=False)
    assert pair.noise_variance.item() == pytest.approx(closed.noise_variance_, rel=0.01)
    assert pair.exact_log_likelihood(data.train).mean().item() == pytest.approx(closed.score(data.train), abs=0.05)
    assert principal_angles(closed.loadings_, pair.loadings).max() < 3.0
    # the ELBO under the exact posterior is the log-likelihood itself
    assert elbo_terms(pair.model, pair.guide, data.train[:200])["elbo"] == pytest.approx(
        pair.exact_log_likelihood(data.train[:200]).mean().item(), abs=1e-3)


def test_linear_vae_reaches_the_ppca_solution_and_prunes_surplus_latents(datasets):
    # Lucas et al. (2019): the linear VAE's ELBO optimum is pPCA's maximum likelihood. With d = 8 on
    # data of rank 5 + isotropic noise, three latents have nothing to explain and collapse.
    data = datasets["synthetic-patches"]
    closed = PPCA(8).fit(data.train)
    pyro.set_rng_seed(0)
    vae = VAE(data.event_shape, latent_dim=8, network="linear", likelihood="gaussian", sigma_x="shared")
    fit(vae.model, vae.guide, data.train, objective="meanfield", epochs=600, batch_size=len(data.train), lr=0.03,
        progress=False)
    assert vae.likelihood.log_sigma.exp().item() ** 2 == pytest.approx(closed.noise_variance_, rel=0.05)
    stats = latent_statistics(vae.model, vae.guide, data.train)
    assert stats["active_units"] == 5
    elbo = elbo_terms(vae.model, vae.guide, data.train, particles=10)["elbo"]
    is_ll = log_likelihood(importance_log_weights(vae.model, vae.guide, data.train, particles=100))["log_likelihood"]
    assert elbo < is_ll <= closed.score(data.train) + 0.01
    assert closed.score(data.train) - elbo < 0.15


def test_gaussian_mixture_log_likelihood_equals_sklearn(datasets):
    x = datasets["synthetic-patches"].train.flatten(1).double()
    sk = GaussianMixture(5, covariance_type="diag", random_state=0).fit(x.numpy())
    ours = GaussianMixturePair((25,), 5).double()
    with torch.no_grad():
        ours.logits.copy_(torch.tensor(np.log(sk.weights_)))
        ours.means.copy_(torch.tensor(sk.means_))
        ours.log_scales.copy_(torch.tensor(np.sqrt(sk.covariances_)).log())
    np.testing.assert_allclose(ours.exact_log_likelihood(x).detach().numpy(), sk.score_samples(x.numpy()), rtol=1e-9)
    # TraceEnum_ELBO sums the component out: its "ELBO" is the exact log-likelihood
    assert elbo_terms(ours.model, ours.guide, x)["elbo"] == pytest.approx(sk.score(x.numpy()), rel=1e-9)
    np.testing.assert_allclose(ours.responsibilities(x).detach().numpy(), sk.predict_proba(x.numpy()), atol=1e-8)


def test_gaussian_mixture_fitted_by_svi_matches_em(datasets):
    data = datasets["synthetic-patches"]
    x = data.train.flatten(1)
    em = GaussianMixture(5, covariance_type="diag", random_state=0).fit(x.double().numpy())
    pyro.set_rng_seed(0)
    gmm = GaussianMixturePair(data.event_shape, 5, init_data=data.train)
    fit(gmm.model, gmm.guide, data.train, objective="enum", epochs=100, batch_size=len(x), lr=0.05, progress=False)
    # different local optima are possible; on this data both reach the same level within 0.05 nats
    assert gmm.exact_log_likelihood(x).mean().item() == pytest.approx(em.score(x.double().numpy()), abs=0.05)


@pytest.mark.parametrize("d", [0, 65, 2.5])
def test_ppca_refuses_bad_component_counts(datasets, d):
    with pytest.raises(ConfigError, match="n_components"):
        PPCA(d).fit(datasets["digits"].train)


def test_ppca_refuses_non_finite_data():
    x = np.ones((10, 3))
    x[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        PPCA(1).fit(x)
