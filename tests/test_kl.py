"""Registered KLs against Monte Carlo, and the finiteness rule of pyro_vae.kl."""

import math

import pytest
import torch
import pyro.distributions as dist
from torch.distributions import kl_divergence

from pyro_vae.kl import kl_path, min_particles_for_finite_bound

N_DRAWS = 200_000

PAIRS = {
    # torch's closed forms that the seeds need (seed 002 says Normal->Laplace has none)
    "normal->laplace": (dist.Normal(torch.tensor([0.7, -1.0, 0.0]), torch.tensor([0.4, 2.0, 0.1])), dist.Laplace(0.0, 1.0)),
    "cauchy->cauchy": (dist.Cauchy(torch.tensor([0.5, 0.0]), torch.tensor([0.3, 2.0])), dist.Cauchy(0.0, 1.0)),
    # ours, by Gauss-Hermite quadrature
    "normal->cauchy": (dist.Normal(torch.tensor([0.3, 2.0, -4.0]), torch.tensor([0.5, 3.0, 0.05])), dist.Cauchy(0.0, 1.5)),
    "normal->studentt": (dist.Normal(torch.tensor([0.3, 2.0]), torch.tensor([0.5, 3.0])), dist.StudentT(3.0, 0.5, 2.0)),
    "normal->studentt(df=30)": (dist.Normal(torch.tensor([1.0]), torch.tensor([0.2])), dist.StudentT(30.0, 0.0, 1.0)),
}


@pytest.mark.parametrize("name", PAIRS)
def test_analytic_kl_agrees_with_monte_carlo_within_3_standard_errors(name):
    q, p = PAIRS[name]
    torch.manual_seed(1)
    z = q.sample((N_DRAWS,)).double()
    q64 = type(q)(q.loc.double(), q.scale.double())
    log_ratio = q64.log_prob(z) - p.log_prob(z).double()
    mc_mean, mc_se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(N_DRAWS)
    analytic = kl_divergence(q, p).double()
    assert torch.all((analytic - mc_mean).abs() <= 3 * mc_se + 1e-4), (analytic, mc_mean, mc_se)


def test_kl_matches_closed_form_for_normal_prior_as_a_quadrature_check():
    # Student-t with huge df is the normal: the quadrature KL must approach the closed form.
    # (float64: the t normaliser's lgamma difference cancels catastrophically in float32.)
    q = dist.Normal(torch.tensor([0.4, -2.0], dtype=torch.float64), torch.tensor([0.7, 0.1], dtype=torch.float64))
    approx = kl_divergence(q, dist.StudentT(torch.tensor(1e6, dtype=torch.float64), 0.0, 1.0))
    exact = kl_divergence(q, dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    # KL(q || t_nu) - KL(q || N) = O(E[z^4] / nu) ~ 1e-5 here
    assert torch.allclose(approx, exact, atol=1e-4)


@pytest.mark.parametrize(
    "guide, prior, expected",
    [
        (dist.Normal(0.0, 1.0), dist.Normal(0.0, 1.0), 1),
        (dist.Normal(0.0, 1.0), dist.Cauchy(0.0, 1.0), 1),
        (dist.Cauchy(0.0, 1.0), dist.Cauchy(0.0, 1.0), 1),
        (dist.Cauchy(0.0, 1.0), dist.StudentT(3.0, 0.0, 1.0), 1),
        (dist.Cauchy(0.0, 1.0), dist.Normal(0.0, 1.0), 3),  # -log p ~ z^2, E|z|^r finite for r < 1
        (dist.Cauchy(0.0, 1.0), dist.Laplace(0.0, 1.0), 2),  # -log p ~ |z|
        (dist.Cauchy(torch.zeros(2), 1.0).to_event(1), dist.Normal(torch.zeros(2), 1.0).to_event(1), 3),
    ],
)
def test_minimum_particles_for_a_finite_bound(guide, prior, expected):
    assert min_particles_for_finite_bound(guide, prior) == expected


def test_cauchy_guide_against_normal_prior_has_a_diverging_kl_estimate():
    # The rule's premise, checked numerically: the MC mean of log q - log p keeps growing with n.
    torch.manual_seed(0)
    q, p = dist.Cauchy(0.0, 1.0), dist.Normal(0.0, 1.0)
    means = [(q.log_prob(z) - p.log_prob(z)).mean().item() for z in (q.sample((n,)) for n in (10**3, 10**6))]
    assert means[1] > 10 * means[0] > 0


def test_kl_path_reports_analytic_and_monte_carlo():
    q = dist.Normal(torch.zeros(2), 1.0).to_event(1)
    assert kl_path(q, dist.Laplace(torch.zeros(2), 1.0).to_event(1)) == "analytic"
    mixture = dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(3)), dist.Normal(torch.zeros(3, 2), 1.0).to_event(1))
    assert kl_path(q, mixture) == "monte-carlo"
