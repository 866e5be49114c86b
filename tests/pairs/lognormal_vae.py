"""A user's VAE with a positive latent: a LogNormal prior and a LogNormal guide, so every estimator reads the
latent through its support's bijection (issue 35: one pair with a transformed latent through every command)."""

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class LogNormalVAE(nn.Module):
    def __init__(self, event_shape, latent_dim=2, hidden=32):
        super().__init__()
        features = int(torch.Size(event_shape).numel())
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, features))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        x = x.reshape(len(x), -1)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.LogNormal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.ContinuousBernoulli(logits=self.decoder(z.log())).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        x = x.reshape(len(x), -1)
        with pyro.plate("data", len(x)):
            loc, log_scale = self.encoder(x).chunk(2, dim=-1)
            pyro.sample("z", dist.LogNormal(loc, log_scale.exp()).to_event(1))


def make_vae(event_shape, latent_dim=2, hidden=32):
    return LogNormalVAE(event_shape, latent_dim, hidden)
