"""Per-latent statistics of a LogNormal latent are read in z's own space (issue 35, item 6): the guide's and the
prior's moments are those of z, not of its log, and a latent is fixed at a value inside its support."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.inference import latent_statistics, reconstruction_gain


class LogNormalPair:
    """z ~ LogNormal(0, 1)^2, x | z ~ N(W z, 0.5^2 I); q(z|x) = LogNormal(A x + c, s) with fixed A, c, s."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.W = torch.randn(4, 2, generator=generator)
        self.A = 0.3 * torch.randn(2, 4, generator=generator)
        self.c = torch.tensor([0.1, -0.2])
        self.s = torch.tensor([0.4, 0.7])

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.LogNormal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T, 0.5).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.LogNormal(x @ self.A.T + self.c, self.s).to_event(1))


def test_the_moments_are_those_of_z_itself_in_closed_form():
    pair = LogNormalPair()
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    stats = latent_statistics(pair.model, pair.guide, x)
    assert stats["moments"] == "mean/sd of z (closed form)"
    mu = x @ pair.A.T + pair.c
    mean = torch.exp(mu + pair.s**2 / 2)  # E[z] and Var[z] of a LogNormal(mu, s)
    variance = (torch.exp(pair.s**2) - 1) * torch.exp(2 * mu + pair.s**2)
    assert stats["var_mu"] == pytest.approx(mean.var(0, unbiased=False).tolist(), rel=1e-5)
    assert stats["mean_sigma2"] == pytest.approx(variance.mean(0).tolist(), rel=1e-5)
    assert stats["mean_mu"] == pytest.approx(mean.mean(0).tolist(), rel=1e-5)
    assert stats["prior_mean"] == pytest.approx([math.exp(0.5)] * 2, rel=1e-6)
    assert stats["prior_variance"] == pytest.approx([(math.e - 1) * math.e] * 2, rel=1e-6)


def test_a_fixed_latent_stays_inside_its_support():
    """Gains compare z = E_q[z] with z_j set to the prior's mean e^(1/2) > 0, not to 0 (outside the support)."""
    pair = LogNormalPair()
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    gains = reconstruction_gain(pair.model, pair.guide, x)["gain"]
    mu = x @ pair.A.T + pair.c
    z = torch.exp(mu + pair.s**2 / 2)
    base = dist.Normal(z @ pair.W.T, 0.5).log_prob(x).sum(-1)
    for j in range(2):
        fixed = z.clone()
        fixed[:, j] = math.exp(0.5)
        expected = (base - dist.Normal(fixed @ pair.W.T, 0.5).log_prob(x).sum(-1)).mean().item()
        assert gains[j] == pytest.approx(expected, rel=1e-4, abs=1e-5)
