r"""Families of the amortised posterior :math:`q_\phi(z \mid x)`.

A guide family turns the encoder's output, a tensor ``(..., 2 * latent_dim)``, into a distribution
with ``event_shape == (latent_dim,)``: the first half is the location, the second half passes
through a softplus to give the scale,

.. math:: q_\phi(z \mid x) = \prod_j F\big(z_j;\ \mu_j(x),\ \mathrm{softplus}(\rho_j(x)) + \epsilon\big).

``normal`` is the usual diagonal Gaussian of Kingma & Welling (2014); ``cauchy`` is the "Cauchy
generator" of Pyle, "A Sparse VAE" (seed 002).  Both are location-scale families, so
:func:`location` and :func:`scale` read them alike (a Cauchy has no mean or variance: diagnostics
use its location and scale and say so).
"""

import torch.nn.functional as F
import pyro.distributions as dist

from .kl import base_distribution
from .registry import Registry

GUIDES = Registry("guide")

#: Lower bound on the posterior scale, so log q stays finite in float32.
MIN_SCALE = 1e-5


class LocationScaleGuide:
    """Maps encoder output ``(..., 2d)`` to ``family(loc, softplus(raw) + MIN_SCALE)``, event dim 1."""

    num_outputs_per_latent = 2

    def __init__(self, family):
        self.family = family

    def __call__(self, encoder_output):
        loc, raw_scale = encoder_output.chunk(2, dim=-1)
        return self.family(loc, F.softplus(raw_scale) + MIN_SCALE).to_event(1)

    def __repr__(self):
        return f"LocationScaleGuide({self.family.__name__})"


GUIDES.register("normal")(lambda: LocationScaleGuide(dist.Normal))
GUIDES.register("cauchy")(lambda: LocationScaleGuide(dist.Cauchy))


def make_guide_family(guide):
    """A guide family from a registered name, or a ready callable (returned as is)."""
    if isinstance(guide, str) or not callable(guide):
        return GUIDES.get(guide)()
    return guide


def location(distribution):
    """Location of a (possibly ``Independent``-wrapped) distribution: ``loc``, else its mean."""
    base = base_distribution(distribution)
    return base.loc if hasattr(base, "loc") else base.mean


def scale(distribution):
    """Per-coordinate scale: ``scale`` of a location-scale family, else the marginal standard deviation
    (e.g. the square root of a multivariate normal's covariance diagonal)."""
    base = base_distribution(distribution)
    return base.scale if hasattr(base, "scale") else base.stddev
