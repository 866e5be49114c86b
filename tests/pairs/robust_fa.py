r"""A user's non-VAE pair: robust factor analysis with a Student-t likelihood and learned degrees of freedom.

    z_i ~ N(0, I_k),   x_i | z_i ~ StudentT(nu, W z_i + b, sigma)   (per coordinate; plate "rows")

with W, b, sigma and nu > 1 learned (pyro.param), and an amortised linear guide q(z | x) = N(A x + c, diag(s)^2).
"""

import types

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints


def make_robust_fa(event_shape=(4,), factors=2):
    dim = int(torch.Size(event_shape).numel())

    def model(x):
        x = x.reshape(len(x), -1)
        w = pyro.param("fa_W", lambda: 0.1 * torch.randn(dim, factors, generator=torch.Generator().manual_seed(1)))
        b = pyro.param("fa_b", lambda: torch.zeros(dim))
        sigma = pyro.param("fa_sigma", lambda: torch.ones(dim), constraint=constraints.positive)
        nu = pyro.param("fa_nu", lambda: torch.tensor(5.0), constraint=constraints.greater_than(1.0))
        with pyro.plate("rows", len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(factors), 1.0).to_event(1))
            pyro.sample("x", dist.StudentT(nu, z @ w.T + b, sigma).to_event(1), obs=x)

    def guide(x):
        x = x.reshape(len(x), -1)
        a = pyro.param("fa_A", lambda: torch.zeros(factors, dim))
        c = pyro.param("fa_c", lambda: torch.zeros(factors))
        s = pyro.param("fa_s", lambda: torch.ones(factors), constraint=constraints.positive)
        with pyro.plate("rows", len(x)):
            pyro.sample("z", dist.Normal(x @ a.T + c, s).to_event(1))

    return types.SimpleNamespace(model=model, guide=guide)
