"""Pyro's own VAE, ``examples/vae/vae.py`` of pyro-ppl (commit ff6ae1c95), ported as a pair file.

The Encoder, Decoder and VAE classes and their ``model``/``guide`` are Pyro's, line for line (comments
shortened), with one change a user must make to run them on other data than 28x28 MNIST: the hard-coded
784 pixels become ``pixels`` (784 by default, as written; 64 for scikit-learn's 8x8 digits).  What the
file keeps as written: the plate named ``data``, the latent site named ``latent`` (the name of an ArviZ
dim, issue 35 item 5), the observed site ``obs`` holding ``x.reshape(-1, pixels)``, a prior whose
parameters are sized by ``x.shape[0]``, and ``Bernoulli(..., validate_args=False)`` on relaxed pixels.
``make_vae`` is the factory pyro-vae's ``--model`` names (it receives ``event_shape``; the example ignores
it, as its own ``VAE`` takes no data shape).
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn


class Encoder(nn.Module):
    def __init__(self, z_dim, hidden_dim, pixels=784):
        super().__init__()
        self.pixels = pixels
        self.fc1 = nn.Linear(pixels, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, z_dim)
        self.fc22 = nn.Linear(hidden_dim, z_dim)
        self.softplus = nn.Softplus()

    def forward(self, x):
        x = x.reshape(-1, self.pixels)
        hidden = self.softplus(self.fc1(x))
        z_loc = self.fc21(hidden)
        z_scale = torch.exp(self.fc22(hidden))
        return z_loc, z_scale


class Decoder(nn.Module):
    def __init__(self, z_dim, hidden_dim, pixels=784):
        super().__init__()
        self.fc1 = nn.Linear(z_dim, hidden_dim)
        self.fc21 = nn.Linear(hidden_dim, pixels)
        self.softplus = nn.Softplus()

    def forward(self, z):
        hidden = self.softplus(self.fc1(z))
        loc_img = torch.sigmoid(self.fc21(hidden))
        return loc_img


class VAE(nn.Module):
    def __init__(self, z_dim=50, hidden_dim=400, use_cuda=False, pixels=784):
        super().__init__()
        self.encoder = Encoder(z_dim, hidden_dim, pixels)
        self.decoder = Decoder(z_dim, hidden_dim, pixels)
        if use_cuda:
            self.cuda()
        self.use_cuda = use_cuda
        self.z_dim = z_dim
        self.pixels = pixels

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = torch.zeros(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            z_scale = torch.ones(x.shape[0], self.z_dim, dtype=x.dtype, device=x.device)
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder.forward(z)
            pyro.sample(
                "obs",
                dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                obs=x.reshape(-1, self.pixels),
            )
            return loc_img

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder.forward(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    def reconstruct_img(self, x):
        z_loc, z_scale = self.encoder(x)
        z = dist.Normal(z_loc, z_scale).sample()
        loc_img = self.decoder(z)
        return loc_img


def make_vae(event_shape, z_dim=50, hidden_dim=400, pixels=784):
    return VAE(z_dim=z_dim, hidden_dim=hidden_dim, pixels=pixels)
