r"""A user's hierarchical linear-Gaussian pair with a global latent, whose exact answer is known.

    mu ~ N(0, s0^2 I_D)                    (global: outside the data plate "points")
    z_i ~ N(0, I_k),  x_i | z_i, mu ~ N(mu + W z_i, sigma^2 I_D)

So x_i | mu ~ N(mu, C) with C = W W^T + sigma^2 I, p(mu | X) = N(m, P^-1) with
P = I / s0^2 + N C^-1 and m = P^-1 C^-1 sum_i x_i, and
log p(X) = sum_i log N(x_i; 0, C) + log N(0; 0, s0^2 I) - log N(0; m, P^-1).
The guide q(mu) q(z_i | x_i, mu) is exact when q(mu) = p(mu | X) and
q(z_i | x_i, mu) = N(A (x_i - mu), S) with S = (I + W^T W / sigma^2)^-1, A = S W^T / sigma^2.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints


class Hierarchical:
    def __init__(self, data_dim, latent_dim=2, prior_scale=2.0):
        self.data_dim, self.latent_dim, self.prior_scale = data_dim, latent_dim, prior_scale

    def _decoder(self):
        generator = torch.Generator().manual_seed(0)
        w = pyro.param("W", lambda: 0.3 * torch.randn(self.data_dim, self.latent_dim, generator=generator))
        sigma = pyro.param("sigma", lambda: torch.tensor(0.5), constraint=constraints.positive)
        return w, sigma

    def model(self, x):
        x = x.reshape(len(x), -1)
        w, sigma = self._decoder()
        mu = pyro.sample("mu", dist.Normal(x.new_zeros(self.data_dim), self.prior_scale).to_event(1))
        with pyro.plate("points", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(mu + z @ w.T, sigma).to_event(1), obs=x)

    def guide(self, x):
        x = x.reshape(len(x), -1)
        m = pyro.param("m", lambda: x.new_zeros(self.data_dim))
        tril = pyro.param("tril", lambda: 0.1 * torch.eye(self.data_dim), constraint=constraints.lower_cholesky)
        a = pyro.param("A", lambda: x.new_zeros(self.latent_dim, self.data_dim))
        s_tril = pyro.param("S_tril", lambda: torch.eye(self.latent_dim), constraint=constraints.lower_cholesky)
        mu = pyro.sample("mu", dist.MultivariateNormal(m, scale_tril=tril))
        with pyro.plate("points", len(x)):
            pyro.sample("z", dist.MultivariateNormal((x - mu) @ a.T, scale_tril=s_tril))

    # ---- the exact answer, for tests
    def covariance(self):
        w, sigma = self._decoder()
        return w @ w.T + sigma**2 * torch.eye(self.data_dim)

    def exact_log_likelihood(self, x):
        """log p(X) of the whole data set (not per point)."""
        x = x.reshape(len(x), -1)
        c = self.covariance()
        posterior = self.posterior_of_mu(x)
        zero = x.new_zeros(self.data_dim)
        return (dist.MultivariateNormal(zero, c).log_prob(x).sum()
                + dist.Normal(zero, self.prior_scale).log_prob(zero).sum() - posterior.log_prob(zero))

    def posterior_of_mu(self, x):
        x = x.reshape(len(x), -1)
        c_inv = torch.linalg.inv(self.covariance())
        precision = torch.eye(self.data_dim) / self.prior_scale**2 + len(x) * c_inv
        cov = torch.linalg.inv(precision)
        return dist.MultivariateNormal(cov @ c_inv @ x.sum(0), covariance_matrix=cov)

    def set_exact_guide(self, x):
        """Put the exact posterior's parameters into the param store."""
        w, sigma = self._decoder()
        posterior = self.posterior_of_mu(x)
        s = torch.linalg.inv(torch.eye(self.latent_dim) + w.T @ w / sigma**2)
        store = pyro.get_param_store()
        for name, value, constraint in (("m", posterior.loc, constraints.real),
                                        ("tril", posterior.scale_tril, constraints.lower_cholesky),
                                        ("A", s @ w.T / sigma**2, constraints.real),
                                        ("S_tril", torch.linalg.cholesky(s), constraints.lower_cholesky)):
            if name in store:
                del store[name]
            pyro.param(name, value.detach().clone(), constraint=constraint)


def make_pair(event_shape=None, latent_dim=2, prior_scale=2.0):
    data_dim = int(torch.Size(event_shape).numel()) if event_shape is not None else 4
    return Hierarchical(data_dim, latent_dim, prior_scale)
