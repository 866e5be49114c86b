"""Encoder and decoder networks: dense (MLP), convolutional, and linear.

Each network maps a tensor with any leading batch dimensions and trailing ``in_shape`` to one with
the same leading dimensions and trailing ``out_shape``, so the same decoder serves a minibatch
``(B, d)`` and the vectorised particles of an importance-weighted bound ``(K, B, d)``.

``make_network(kind, in_shape, out_shape, hidden)`` builds the encoder (image or vector in, flat
vector out) or the decoder (flat vector in, image or vector out) of a kind:

* ``mlp``: dense layers of widths ``hidden`` with ReLU, e.g. the 784-256-64-32-16 encoder of
  Asperti (2019, Table 1) is ``hidden=(256, 64, 32)`` with 16 latents; the decoder
  mirrors the widths.
* ``conv``: the convolutional encoder of Asperti 2019, Fig. 4, generalised to any image size: stages
  of a 3x3 stride-2 convolution and a 3x3 stride-1 convolution, each stage followed by batch norm
  and ReLU, halving the side until it is at most 2, then one convolution whose kernel covers what is
  left (so 28x28 goes 28-14-7-4-2-1); channels 16 then 32.  The decoder mirrors it with transposed
  convolutions, with output padding chosen to land exactly on every encoder size.  (Seed 000's
  listing uses 2x2 kernels in its last stage; here every stage has 3x3 kernels.)
* ``linear``: one affine map, for probabilistic PCA and the linear VAE (Lucas et al. 2019).
"""

import math

import torch
from torch import nn

from .errors import ConfigError
from .registry import Registry

NETWORKS = Registry("network")


def _numel(shape):
    return math.prod(shape)


class Reshaping(nn.Module):
    """Flattens ``in_shape`` to a vector, applies ``body`` to it, and unflattens to ``out_shape``."""

    def __init__(self, in_shape, out_shape, body):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.body = body

    def forward(self, x):
        batch_shape = x.shape[: x.dim() - len(self.in_shape)]
        y = self.body(x.reshape(*batch_shape, _numel(self.in_shape)))
        return y.reshape(*batch_shape, *self.out_shape)


def _dense_stack(widths, final_activation=False):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@NETWORKS.register("mlp")
def mlp(in_shape, out_shape, hidden=(400,), decoder=False):
    """Dense network ``in -> hidden... -> out``; a decoder uses the widths reversed."""
    widths = list(reversed(hidden)) if decoder else list(hidden)
    return Reshaping(in_shape, out_shape, _dense_stack([_numel(in_shape), *widths, _numel(out_shape)]))


@NETWORKS.register("linear")
def linear(in_shape, out_shape, hidden=(), decoder=False):
    """One affine map (``hidden`` is ignored)."""
    return Reshaping(in_shape, out_shape, nn.Linear(_numel(in_shape), _numel(out_shape)))


def _conv_sides(side):
    """Spatial sides visited by the encoder: halve (rounding up) until at most 2."""
    sides = [side]
    while sides[-1] > 2:
        sides.append((sides[-1] + 1) // 2)
    return sides


def _channels(stage, first=16, rest=32):
    return first if stage == 0 else rest


class ConvEncoder(nn.Module):
    """Seed 000's convolutional encoder for a square image ``(C, S, S)`` (see module doc)."""

    def __init__(self, in_shape, out_features):
        super().__init__()
        channels, height, width = in_shape
        self.in_shape = tuple(in_shape)
        sides = _conv_sides(height)
        layers, c_in = [], channels
        for stage in range(len(sides) - 1):
            c_out = _channels(stage)
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)]
            if stage > 0:
                layers += [nn.Conv2d(c_out, c_out, 3, stride=1, padding=1)]
            layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        layers += [nn.Conv2d(c_in, 32, sides[-1]), nn.Flatten(), nn.Linear(32, out_features)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        batch_shape = x.shape[: x.dim() - 3]
        y = self.body(x.reshape(-1, *self.in_shape))
        return y.reshape(*batch_shape, -1)


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: ``(latent,) -> (P, C, S, S)`` by transposed convolutions."""

    def __init__(self, in_features, out_shape):
        super().__init__()
        self.out_shape = tuple(out_shape)
        *param_axes, height, width = out_shape
        out_channels = _numel(param_axes)
        sides = _conv_sides(height)
        n_stages = len(sides) - 1
        layers = [nn.Linear(in_features, 32), nn.ReLU(), nn.Unflatten(-1, (32, 1, 1))]
        layers += [nn.ConvTranspose2d(32, _channels(n_stages - 1), sides[-1]), nn.ReLU()]
        for stage in reversed(range(n_stages)):
            c_in = _channels(stage)
            c_out = out_channels if stage == 0 else _channels(stage - 1)
            target, source = sides[stage], sides[stage + 1]
            output_padding = target - ((source - 1) * 2 - 2 + 3)
            if stage > 0:
                layers += [nn.ConvTranspose2d(c_in, c_in, 3, stride=1, padding=1), nn.BatchNorm2d(c_in), nn.ReLU()]
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=output_padding)]
            if stage > 0:
                layers += [nn.ReLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        batch_shape = z.shape[:-1]
        y = self.body(z.reshape(-1, z.shape[-1]))
        return y.reshape(*batch_shape, *self.out_shape)


@NETWORKS.register("conv")
def conv(in_shape, out_shape, hidden=(), decoder=False):
    """Convolutional encoder/decoder of Asperti 2019, Fig. 4 (``hidden`` is ignored)."""
    image_shape = out_shape if decoder else in_shape
    if len(image_shape) < 3 or image_shape[-1] != image_shape[-2] or image_shape[-1] < 2:
        raise ConfigError(
            f"the conv network needs square images (channels, side, side) with side >= 2; "
            f"got data of shape {tuple(image_shape)}"
        )
    if decoder:
        return ConvDecoder(_numel(in_shape), out_shape)
    return ConvEncoder(in_shape[-3:] if len(in_shape) == 3 else in_shape, _numel(out_shape))


def make_network(kind, in_shape, out_shape, hidden=(400,), decoder=False):
    """Build a network of a registered ``kind`` (``mlp``, ``conv``, ``linear``)."""
    hidden = tuple(int(h) for h in hidden)
    if any(h <= 0 for h in hidden):
        raise ConfigError(f"hidden layer widths must be positive integers, got {hidden}")
    return NETWORKS.get(kind)(tuple(in_shape), tuple(out_shape), hidden=hidden, decoder=decoder)
