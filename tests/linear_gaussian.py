"""A linear-Gaussian model (probabilistic PCA) whose marginal likelihood and posterior are exact.

    z ~ N(0, I_d),   x | z ~ N(W z + b, s^2 I_D)
    =>  x ~ N(b, W W^T + s^2 I),   z | x ~ N(Sigma W^T (x - b) / s^2, Sigma),  Sigma = (I + W^T W / s^2)^-1
"""

import pyro
import pyro.distributions as dist
import torch


class LinearGaussian:
    def __init__(self, data_dim=5, latent_dim=2, noise=0.5, seed=0, W=None):
        generator = torch.Generator().manual_seed(seed)
        self.W = torch.randn(data_dim, latent_dim, generator=generator)
        if W is not None:
            self.W = torch.as_tensor(W, dtype=torch.float32)
        self.b = torch.randn(data_dim, generator=generator)
        self.noise = noise
        self.latent_dim = latent_dim
        precision = torch.eye(latent_dim) + self.W.T @ self.W / noise**2
        self.posterior_cov = torch.linalg.inv(precision)
        self.guide_scale_factor = 1.0  # > 1 makes the guide deliberately too wide

    def sample(self, n, seed=1):
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=generator)
        return z @ self.W.T + self.b + self.noise * torch.randn(n, len(self.b), generator=generator)

    def exact_log_likelihood(self, x):
        cov = self.W @ self.W.T + self.noise**2 * torch.eye(len(self.b))
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x):
        mean = (x - self.b) @ self.W @ self.posterior_cov.T / self.noise**2
        return dist.MultivariateNormal(mean, self.guide_scale_factor**2 * self.posterior_cov)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.noise).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))


class LinearGaussianPair:
    """The linear-Gaussian model with learnable decoder (W, b) and a linear amortised diagonal-Normal
    guide q(z|x) = N(A x + c, diag(exp(log_sd))^2); ``offset`` moves every parameter away from the
    exact posterior's mean map and marginal scales (offset 0: the best guide of this family's means)."""

    def __init__(self, truth, offset=1.0):
        self.noise = truth.noise
        A = truth.posterior_cov @ truth.W.T / truth.noise**2
        self.params = {
            "W": truth.W + 0.1 * offset, "b": truth.b.clone(),
            "A": A + 0.1 * offset, "c": -(A @ truth.b),
            "log_sd": truth.posterior_cov.diag().sqrt().log() + 0.2 * offset,
        }
        self.params = {name: value.clone().requires_grad_() for name, value in self.params.items()}
        self.latent_dim = truth.latent_dim
        self.decoder = [self.params["W"], self.params["b"]]
        self.encoder = [self.params["A"], self.params["c"], self.params["log_sd"]]

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.params["W"].T + self.params["b"], self.noise).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x @ self.params["A"].T + self.params["c"], self.params["log_sd"].exp()).to_event(1))


#: Correlated columns: the posterior's correlation makes the diagonal family's approximation gap ~1 nat.
CORRELATED_W = [[1.0, 0.9], [1.0, 1.1], [0.5, 0.4], [0.2, 0.3], [1.0, 1.0]]


def mis_amortised_problem(mean_shift, log_sd_shift=0.0, points=40):
    """The correlated linear-Gaussian model as its own pair (so p(z|x) is known), with the encoder's
    weights shifted by ``mean_shift`` and its log-sd by ``log_sd_shift``: ``(truth, pair, x)``."""
    import torch

    truth = LinearGaussian(data_dim=5, latent_dim=2, noise=0.5, W=CORRELATED_W)
    pair = LinearGaussianPair(truth, offset=0.0)
    with torch.no_grad():
        pair.params["W"].copy_(truth.W)
        pair.params["A"].add_(mean_shift)
        pair.params["log_sd"].add_(log_sd_shift)
    return truth, pair, truth.sample(points)
