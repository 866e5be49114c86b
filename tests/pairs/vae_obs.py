"""A user's VAE, written from scratch: its data plate is named ``obs`` (any name works)."""

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class SmallVAE(nn.Module):
    def __init__(self, event_shape, latent_dim=2, hidden=32, plate="obs"):
        super().__init__()
        features = int(torch.Size(event_shape).numel())
        self.event_shape, self.latent_dim, self.plate = tuple(event_shape), latent_dim, plate
        self.encoder = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, features))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        x = x.reshape(len(x), -1)
        with pyro.plate(self.plate, len(x)):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.latent_dim), 1.0).to_event(1))
            pyro.sample("x", dist.ContinuousBernoulli(logits=self.decoder(z)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        x = x.reshape(len(x), -1)
        with pyro.plate(self.plate, len(x)):
            loc, log_scale = self.encoder(x).chunk(2, dim=-1)
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


def make_vae(event_shape, latent_dim=2, hidden=32, plate="obs"):
    return SmallVAE(event_shape, latent_dim, hidden, plate)
