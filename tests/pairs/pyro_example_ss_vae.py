# Copyright (c) 2017-2019 Uber Technologies, Inc.
# SPDX-License-Identifier: Apache-2.0
"""Pyro's semi-supervised VAE (M2 of Kingma et al. 2014), ``examples/vae/ss_vae_M2.py`` of pyro-ppl (commit
ff6ae1c95), ported as a pair file for unlabelled data.

``SSVAE.setup_networks``, ``model`` and ``guide`` are Pyro's (docstrings shortened); the file imports
``utils/custom_mlp.py`` from beside it, as the example does.  Changes a user must make, and why:

* ``make_ssvae`` returns the guide wrapped in ``config_enumerate(..., "parallel", expand=True)``, as the
  example's ``main`` does before fitting with ``TraceEnum_ELBO`` (pyro-vae's ``--objective enum``);
  ``config_enum="parallel"`` also makes its MLPs broadcast, which vectorised particles need;
* ``input_size`` is a parameter (784 as written; 64 for scikit-learn's 8x8 digits, flattened by the factory's
  ``flat`` wrappers, since pyro-vae passes images as ``(n, 1, 8, 8)`` and the example expects ``(n, 784)``).
"""

import pyro
import pyro.distributions as dist
import torch
import torch.nn as nn
from pyro.infer import config_enumerate
from utils.custom_mlp import MLP, Exp


class SSVAE(nn.Module):
    def __init__(self, output_size=10, input_size=784, z_dim=50, hidden_layers=(500,), config_enum=None,
                 use_cuda=False, aux_loss_multiplier=None):
        super().__init__()
        self.output_size = output_size
        self.input_size = input_size
        self.z_dim = z_dim
        self.hidden_layers = hidden_layers
        self.allow_broadcast = config_enum == "parallel"
        self.use_cuda = use_cuda
        self.aux_loss_multiplier = aux_loss_multiplier
        self.setup_networks()

    def setup_networks(self):
        z_dim = self.z_dim
        hidden_sizes = self.hidden_layers
        self.encoder_y = MLP([self.input_size] + hidden_sizes + [self.output_size], activation=nn.Softplus,
                             output_activation=nn.Softmax, allow_broadcast=self.allow_broadcast, use_cuda=self.use_cuda)
        self.encoder_z = MLP([self.input_size + self.output_size] + hidden_sizes + [[z_dim, z_dim]],
                             activation=nn.Softplus, output_activation=[None, Exp], allow_broadcast=self.allow_broadcast,
                             use_cuda=self.use_cuda)
        self.decoder = MLP([z_dim + self.output_size] + hidden_sizes + [self.input_size], activation=nn.Softplus,
                           output_activation=nn.Sigmoid, allow_broadcast=self.allow_broadcast, use_cuda=self.use_cuda)
        if self.use_cuda:
            self.cuda()

    def model(self, xs, ys=None):
        """p(z) = normal(0, I), p(y) = categorical(I/10), p(x | y, z) = bernoulli(loc(y, z))."""
        pyro.module("ss_vae", self)
        batch_size = xs.size(0)
        options = dict(dtype=xs.dtype, device=xs.device)
        with pyro.plate("data"):
            prior_loc = torch.zeros(batch_size, self.z_dim, **options)
            prior_scale = torch.ones(batch_size, self.z_dim, **options)
            zs = pyro.sample("z", dist.Normal(prior_loc, prior_scale).to_event(1))
            alpha_prior = torch.ones(batch_size, self.output_size, **options) / (1.0 * self.output_size)
            ys = pyro.sample("y", dist.OneHotCategorical(alpha_prior), obs=ys)
            loc = self.decoder([zs, ys])
            pyro.sample("x", dist.Bernoulli(loc, validate_args=False).to_event(1), obs=xs)
            return loc

    def guide(self, xs, ys=None):
        """q(y | x) = categorical(alpha(x)), q(z | x, y) = normal(loc(x, y), scale(x, y))."""
        with pyro.plate("data"):
            if ys is None:
                alpha = self.encoder_y(xs)
                ys = pyro.sample("y", dist.OneHotCategorical(alpha))
            loc, scale = self.encoder_z([xs, ys])
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))


class UnlabelledPair(nn.Module):
    """The example's model and its enumerated guide on images flattened to ``(n, input_size)``."""

    def __init__(self, ssvae):
        super().__init__()
        self.ssvae = ssvae
        self.enumerated_guide = config_enumerate(ssvae.guide, "parallel", expand=True)

    def model(self, x):
        return self.ssvae.model(x.reshape(len(x), -1))

    def guide(self, x):
        return self.enumerated_guide(x.reshape(len(x), -1))


def make_ssvae(event_shape, z_dim=50, hidden=500, input_size=784, output_size=10):
    return UnlabelledPair(SSVAE(output_size=output_size, input_size=input_size, z_dim=z_dim, hidden_layers=[hidden],
                                config_enum="parallel"))
