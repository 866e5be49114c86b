"""A discrete local latent (the M2 model's class y, Kingma et al. 2014, as in Pyro's examples/vae/ss_vae_M2.py)
is evaluated by importance sampling, which needs no reparameterisation (issue 35, item 8), checked against the
exact mixture likelihood; AIS, which moves latents by HMC, refuses it in one line."""

import math

import pyro
import pyro.distributions as dist
import torch

from pyro_vae.inference import evaluate

CLASSES, LATENT, DATA, NOISE = 3, 2, 4, 0.5


class M2Like:
    """y ~ Cat(1/3) one-hot, z ~ N(0, I), x | y, z ~ N(W z + V y, 0.5^2 I), with its exact posterior as guide."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.W, self.V = torch.randn(DATA, LATENT, generator=generator), 2 * torch.randn(DATA, CLASSES, generator=generator)
        self.widen = 1.0

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.OneHotCategorical(torch.full((CLASSES,), 1 / CLASSES)))
            z = pyro.sample("z", dist.Normal(torch.zeros(LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + y @ self.V.T, NOISE).to_event(1), obs=x)

    def guide(self, x):
        """The exact posterior, q(y|x) = p(y|x) and q(z|x, y) = p(z|x, y), its z-scale widened by ``widen``."""
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.OneHotCategorical(logits=self.class_log_likelihoods(x).T))
            precision = torch.eye(LATENT) + self.W.T @ self.W / NOISE**2
            covariance = torch.linalg.inv(precision)
            mean = (x - y @ self.V.T) @ self.W @ covariance.T / NOISE**2
            pyro.sample("z", dist.MultivariateNormal(mean, self.widen**2 * covariance))

    def class_log_likelihoods(self, x):
        covariance = self.W @ self.W.T + NOISE**2 * torch.eye(DATA)
        return torch.stack([dist.MultivariateNormal(self.V[:, k], covariance).log_prob(x) for k in range(CLASSES)])

    def exact_log_likelihood(self, x):
        return torch.logsumexp(self.class_log_likelihoods(x), 0) - math.log(CLASSES)


def data(pair, n=40):
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(CLASSES, (n,), generator=generator)
    return (torch.randn(n, LATENT, generator=generator) @ pair.W.T + pair.V.T[labels]
            + NOISE * torch.randn(n, DATA, generator=generator))


def test_with_the_exact_posterior_as_guide_every_weight_is_the_exact_likelihood():
    """Each weight p(x, y, z) / q(y, z | x) is p(x) exactly: the discrete site is weighed, not refused."""
    pair = M2Like()
    x = data(pair)
    result = evaluate(pair.model, pair.guide, x, importance_samples=50, calibration=0)
    estimate = torch.tensor(result["log_likelihood_per_datapoint"], dtype=torch.float64)
    assert torch.allclose(estimate, pair.exact_log_likelihood(x).double(), atol=1e-3)


def test_a_wider_guide_covers_the_exact_mixture_and_ais_refuses_the_discrete_site_in_one_line():
    from pyro_vae.inference.ais import AISOptions

    pair = M2Like()
    pair.widen = 1.5
    x = data(pair)
    result = evaluate(pair.model, pair.guide, x, importance_samples=1000, calibration=0, ais=AISOptions(steps=3, chains=2))
    exact = pair.exact_log_likelihood(x).double().mean().item()
    assert abs(result["log_likelihood"] - exact) < 3 * result["log_likelihood_se"]
    assert "discrete" in result["diagnostics"]["skipped"]["AIS"] and "ais" not in result
