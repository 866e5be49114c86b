r"""Families of the amortised posterior :math:`q_\phi(z \mid x)`.

A guide family turns the encoder's output, a tensor ``(..., k * latent_dim)`` with
``k = family.num_outputs_per_latent``, into a distribution with ``event_shape == (latent_dim,)``.
Families are chosen by name with options (``VAE(guide="lowrank", guide_options={"rank": 3})``,
``pyro-vae fit --guide lowrank --guide-rank 3``); the registered factories take ``(latent_dim,
**options)`` (:func:`make_guide_family`).  Every scale is :math:`s = \mathrm{softplus}(\rho(x)) + \epsilon`
with :math:`\epsilon` = :data:`MIN_SCALE`, so log q stays finite in float32.

The families, their options and their defaults are listed on the :doc:`parts page </parts>`, written from
:data:`GUIDES` (a family registered there appears on it and as ``pyro-vae fit --guide NAME --guide-OPTION``); each
factory's docstring gives its :math:`q_\phi(z \mid x)` and the number k of encoder outputs per latent.

The iaf layers are :math:`z_l = m_l(z_{l-1}, h) + \sigma_l(z_{l-1}, h) \odot z_{l-1}`, each
:math:`(m_l, \log \sigma_l)_j` a function of :math:`z_{l-1, <j}` and the context :math:`h(x)` (c d numbers
of the encoder), with the coordinate order reversed between layers.

* ``normal`` is the diagonal Gaussian of Kingma & Welling (2014); ``cauchy`` the "Cauchy generator" of
  Pyle, "A Sparse VAE".  Both are location-scale families.
* ``lowrank`` is the diagonal-plus-low-rank Gaussian of Rezende, Mohamed & Wierstra (2014, rank one)
  and Ong, Nott & Smith (2018, "factor covariance"): ``pyro.distributions.LowRankMultivariateNormal``,
  :math:`O(d r)` to sample and to score.  Rank :math:`r \ge d - 1` holds every covariance
  (:math:`\Sigma = \lambda_{\min} I + (\Sigma - \lambda_{\min} I)`), so it is exact for any Gaussian
  posterior; the encoder emits :math:`\mu`, :math:`\rho` and then U row by row.
* ``iaf`` is the inverse autoregressive flow of Kingma, Salimans, Jozefowicz, Chen, Sutskever &
  Welling (2016), built from Pyro's ``ConditionalAffineAutoregressive`` on ``ConditionalAutoRegressiveNN``
  (MADE, Germain et al. 2015) nets with hidden widths ``hidden``;
  :math:`\log q(z_L \mid x) = \log \mathcal N(z_0; \mu, s^2) - \sum_{l,j} \log \sigma_{l,j}`.  Sampling
  (and scoring its own draws, which Pyro caches) takes one pass per layer; scoring any other point
  inverts each layer in d passes.  The family is an ``nn.Module`` holding the flow's parameters,
  which belong to the VAE that holds the family.  Its KL to any prior is Monte Carlo.

:func:`location` and :func:`scale` read every family: loc and scale of a location-scale family (a
Cauchy has no mean or variance: diagnostics use its location and scale and say so), mean and
square root of the covariance diagonal of ``lowrank``, and for ``iaf``, which has no closed-form
moments, Monte Carlo mean and standard deviation from :data:`MOMENT_DRAWS` draws
(:class:`FlowPosterior`).
"""

import torch
import torch.nn.functional as F
import pyro.distributions as dist
from pyro.distributions.transforms import ConditionalAffineAutoregressive, Permute
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from . import checks
from .errors import ConfigError
from .kl import base_distribution
from .options import option
from .registry import Registry

GUIDES = Registry("guide")

#: Lower bound on the posterior scale, so log q stays finite in float32.
MIN_SCALE = 1e-5
#: Draws behind the Monte Carlo mean and standard deviation of a flow posterior (standard error
#: of the mean: sd / 16).
MOMENT_DRAWS = 256


def _positive_scale(raw):
    return F.softplus(raw) + MIN_SCALE


class LocationScaleGuide:
    """Maps encoder output ``(..., 2d)`` to ``family(loc, softplus(raw) + MIN_SCALE)``, event dim 1."""

    num_outputs_per_latent = 2

    def __init__(self, family):
        self.family = family
        self.label = family.__name__.lower()

    def __call__(self, encoder_output):
        loc, raw_scale = encoder_output.chunk(2, dim=-1)
        return self.family(loc, _positive_scale(raw_scale)).to_event(1)

    def __repr__(self):
        return f"LocationScaleGuide({self.family.__name__})"


class LowRankGuide:
    r"""Low-rank Gaussian :math:`\mathcal N(z; \mu(x), \mathrm{diag}(s(x)^2) + U(x) U(x)^\top)`, U of d x r, from
    k = 2 + r encoder outputs per latent.

    A rank above d is cut to d (``rank`` is the one used): it adds no covariance (rank d - 1 holds every one), and
    its r x r capacitance matrix :math:`I + U^\top \mathrm{diag}(s^{-2}) U` has rank at most d beyond the identity,
    so once U grows its Cholesky factorisation fails to rounding in float32 (a fit with rank 2 on one latent
    failed in 1 of 5 seeds, with rank 1 in none of 20).
    """

    def __init__(self, latent_dim, rank=2):
        self.latent_dim = latent_dim
        self.rank = min(checks.positive_int("lowrank guide rank", rank), latent_dim)
        self.num_outputs_per_latent = 2 + self.rank
        self.label = f"lowrank({self.rank})"

    def __call__(self, encoder_output):
        d = self.latent_dim
        loc, raw_scale, factor = encoder_output.split([d, d, d * self.rank], dim=-1)
        factor = factor.reshape(*factor.shape[:-1], d, self.rank)
        return dist.LowRankMultivariateNormal(loc, factor, _positive_scale(raw_scale) ** 2)

    def __repr__(self):
        return f"LowRankGuide(latent_dim={self.latent_dim}, rank={self.rank})"


class FlowPosterior(dist.TransformedDistribution):
    """A flow's q(z|x): a ``TransformedDistribution`` whose ``mean`` and ``variance``, which have no
    closed form, are Monte Carlo estimates from :data:`MOMENT_DRAWS` draws of the global random stream,
    without gradient, computed once per instance (so :func:`location` and :func:`scale` share draws)."""

    @property
    def mean(self):
        return self._monte_carlo_moments()[0]

    @property
    def variance(self):
        return self._monte_carlo_moments()[1]

    def _monte_carlo_moments(self):
        if "_moments" not in self.__dict__:
            draws = self.sample((MOMENT_DRAWS,))  # no gradient: TransformedDistribution.sample
            self._moments = draws.mean(0), draws.var(0)
        return self._moments


def _made(latent_dim, context_dim, hidden):
    """A MADE net with the identity order; built on the CPU when the default device is ``meta``
    (Pyro's constructor reads tensor values), then moved there."""
    device = torch.get_default_device()
    with torch.device("cpu" if device.type == "meta" else device):
        net = ConditionalAutoRegressiveNN(latent_dim, context_dim, hidden, permutation=torch.arange(latent_dim))
    return net.to(device)


class IAFGuide(nn.Module):
    r"""Amortised inverse autoregressive flow (Kingma et al. 2016): :math:`\mathcal N(\mu(x), \mathrm{diag}\, s(x)^2)`
    pushed through ``layers`` affine autoregressive layers conditioned on :math:`h(x)`, from k = 2 + c encoder outputs
    per latent (:math:`\mu, \rho, h`), the coordinate order reversed between layers.

    ``context`` is c, the numbers of :math:`h(x)` per latent (default 2); ``hidden`` the MADE nets' hidden widths, each
    at least d (default [10 d])."""

    def __init__(self, latent_dim, layers=2, context=2, hidden=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.layers = checks.positive_int("iaf guide layers", layers)
        self.context = checks.positive_int("iaf guide context", context)
        hidden = [10 * latent_dim] if hidden is None else hidden
        hidden = list(hidden) if isinstance(hidden, (list, tuple)) else [hidden]
        if not hidden or not all(checks.is_number(h) and int(h) == h and h >= latent_dim for h in hidden):
            raise ConfigError(f"iaf guide hidden widths must be integers of at least latent_dim = {latent_dim} "
                              f"(a MADE layer needs a unit per input), got {hidden!r}")
        self.num_outputs_per_latent = 2 + self.context
        self.label = f"iaf({self.layers})"
        made = [_made(latent_dim, self.context * latent_dim, [int(h) for h in hidden]) for _ in range(self.layers)]
        self.flows = nn.ModuleList(ConditionalAffineAutoregressive(net) for net in made)
        self.register_buffer("reverse", torch.arange(latent_dim - 1, -1, -1))

    def forward(self, encoder_output):
        d = self.latent_dim
        loc, raw_scale, h = encoder_output.split([d, d, self.context * d], dim=-1)
        transforms = []
        for i, flow in enumerate(self.flows):
            if i:
                transforms.append(Permute(self.reverse))
            transforms.append(flow.condition(h))
        return FlowPosterior(dist.Normal(loc, _positive_scale(raw_scale)).to_event(1), transforms)


@GUIDES.register("normal")
def normal_guide(latent_dim):
    r"""Diagonal Normal :math:`\prod_j \mathcal N(z_j; \mu_j(x), s_j(x)^2)`, from k = 2 encoder outputs per latent."""
    return LocationScaleGuide(dist.Normal)


@GUIDES.register("cauchy")
def cauchy_guide(latent_dim):
    r"""Diagonal Cauchy :math:`\prod_j \mathrm{Cauchy}(z_j; \mu_j(x), s_j(x))`, from k = 2 encoder outputs per latent:
    heavy tails (for the Cauchy prior)."""
    return LocationScaleGuide(dist.Cauchy)


GUIDES.register("lowrank", {"rank": option(2, "rank of the covariance factor U", checks.positive_int, int)})(LowRankGuide)
GUIDES.register("iaf", {"layers": option(2, "autoregressive layers of the flow", checks.positive_int, int)})(IAFGuide)


def make_guide_family(guide, latent_dim, **options):
    """A guide family from a registered name (built for ``latent_dim`` with its ``options``), or a ready
    callable (returned as is; options apply only to a name)."""
    if isinstance(guide, str) or not callable(guide):
        factory = GUIDES.get(guide)
        try:
            return factory(latent_dim, **options)
        except TypeError as error:
            raise ConfigError(f"guide {guide!r}: {error}") from None
    if options:
        raise ConfigError(f"guide_options {sorted(options)} apply to a registered guide name, not to a given {type(guide).__name__}")
    return guide


def location(distribution):
    """Location of a (possibly ``Independent``-wrapped) distribution: ``loc``, else its mean (Monte Carlo
    for a flow, :class:`FlowPosterior`).  A transformed distribution (a LogNormal, a flow) gets the mean of z
    itself, never its base's ``loc``, which lives in another space (:func:`moments_of_z`)."""
    base = base_distribution(distribution)
    if isinstance(base, torch.distributions.TransformedDistribution):
        return moments_of_z(base)[0]
    return base.loc if hasattr(base, "loc") else base.mean


def scale(distribution):
    """Per-coordinate scale: ``scale`` of a location-scale family, else the marginal standard deviation
    (the square root of a low-rank or full multivariate normal's covariance diagonal; Monte Carlo for a
    flow, :class:`FlowPosterior`); for a transformed distribution the sd of z itself (:func:`moments_of_z`)."""
    base = base_distribution(distribution)
    if isinstance(base, torch.distributions.TransformedDistribution):
        return moments_of_z(base)[1].sqrt()
    return base.scale if hasattr(base, "scale") else base.stddev


def moments_of_z(distribution):
    """``(mean, variance)`` of a transformed distribution in z's own space: in closed form where the family has
    one (a LogNormal), else by Monte Carlo from :data:`MOMENT_DRAWS` draws without gradient (a flow)."""
    try:
        return distribution.mean, distribution.variance
    except NotImplementedError:
        with torch.no_grad():
            draws = distribution.sample((MOMENT_DRAWS,))
        return draws.mean(0), draws.var(0)


def moments_label(distribution):
    """How :func:`location` and :func:`scale` read ``distribution``: ``"mean/sd"``, ``"mean/sd of z (closed
    form)"`` or ``"monte-carlo mean/sd of z"`` for a transformed one, ``"location/scale"`` otherwise."""
    base = base_distribution(distribution)
    if isinstance(base, torch.distributions.TransformedDistribution):
        try:
            base.mean
        except NotImplementedError:
            return "monte-carlo mean/sd of z"
        return "monte-carlo mean/sd of z" if isinstance(base, FlowPosterior) else "mean/sd of z (closed form)"
    return "mean/sd" if isinstance(base, (dist.Normal, dist.MultivariateNormal, dist.LowRankMultivariateNormal)) \
        else "location/scale"
