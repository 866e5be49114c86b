r"""KL divergences that torch lacks, and which (guide, prior) pairs have a finite KL at all.

torch 2.14 already registers, in closed form, Normal->Laplace (through the folded-normal mean
:math:`E|z|`; seed 002 says no closed form exists, but one does), Laplace->Laplace, Laplace->Normal
and Cauchy->Cauchy, :math:`\log\frac{(g_1+g_2)^2 + (m_1-m_2)^2}{4 g_1 g_2}`.  This module registers
the two finite ones it lacks, so that ``TraceMeanField_ELBO`` uses them:

.. math::

    \mathrm{KL}(\mathcal N(\mu,\sigma^2) \,\|\, p)
        = -\tfrac12 \log(2\pi e \sigma^2) - E_{z \sim \mathcal N(\mu,\sigma^2)}[\log p(z)],

for ``p`` Cauchy or Student-t, whose expectation has no closed form and is computed by
Gauss-Hermite quadrature with :data:`QUADRATURE_NODES` nodes (``log p`` grows only like
:math:`\log z^2`, so the quadrature converges fast; tested against Monte Carlo).  It also registers
the ``lowrank`` guide's KL to a diagonal Normal prior, which torch has only against a (low-rank)
multivariate normal, in closed form:

.. math::

    \mathrm{KL}(\mathcal N(m, S) \,\|\, \mathcal N(\mu, \mathrm{diag}\, v))
        = \tfrac12 \Big[\sum_j \frac{S_{jj} + (m_j - \mu_j)^2}{v_j} - d + \sum_j \log v_j - \log\det S\Big],

with :math:`\log\det S` from torch's entropy of :math:`\mathcal N(m, S)` (the matrix determinant lemma,
:math:`O(d r^2)` for :math:`S = D + U U^\top`).  Written by hand because neither torch nor Pyro
provides these KLs.  A flow guide (``iaf``) or a mixture prior (``mixture``, ``vamp``) has none, so
its KL is Monte Carlo.

Finiteness.  Whether :math:`E_q[\log q - \log p]` is finite depends on the tails: if
:math:`-\log p(z)` grows like :math:`|z|^a` (a = 2 Normal and multivariate normal, 1 Laplace, 0 i.e. logarithmic for
Cauchy / Student-t) and :math:`q` has finite absolute moments only below order :math:`t`
(t = 1 Cauchy, :math:`\nu` Student-t, infinite for Normal, Laplace and the multivariate normals), the KL is finite iff
:math:`a < t`.  A Cauchy guide against a Normal or Laplace prior therefore has an infinite KL,
and so an ELBO of :math:`-\infty` under *any* estimator.  The K-sample importance-weighted bound
:math:`E \log \frac1K \sum_k w_k` stays finite iff :math:`a < K t`, since the mean of K weights is
only as bad as the best of them: Cauchy guide + Normal prior needs K >= 3, + Laplace prior K >= 2.
"""

import math

import numpy as np
import torch
from torch.distributions import (Cauchy, Independent, Laplace, LowRankMultivariateNormal, MixtureSameFamily,
                                 MultivariateNormal, Normal, StudentT)
from torch.distributions.kl import kl_divergence, register_kl

QUADRATURE_NODES = 64


def _hermite_rule(like):
    nodes, weights = np.polynomial.hermite.hermgauss(QUADRATURE_NODES)
    return (
        torch.as_tensor(nodes, dtype=like.dtype, device=like.device),
        torch.as_tensor(weights / math.sqrt(math.pi), dtype=like.dtype, device=like.device),
    )


def normal_expectation(normal, log_density):
    r""":math:`E_{z \sim \mathcal N(\mu, \sigma^2)} f(z)` by Gauss-Hermite quadrature, elementwise."""
    nodes, weights = _hermite_rule(normal.loc)
    z = normal.loc.unsqueeze(-1) + math.sqrt(2.0) * normal.scale.unsqueeze(-1) * nodes
    return (weights * log_density(z)).sum(-1)


def _broadcast_log_prob(p):
    """``z -> p.log_prob(z)`` for ``z`` with one extra trailing quadrature axis."""
    params = {name: getattr(p, name).unsqueeze(-1) for name in ("loc", "scale")}
    if isinstance(p, StudentT):
        family = StudentT(p.df.unsqueeze(-1), validate_args=False, **params)
    else:
        family = type(p)(validate_args=False, **params)
    return family.log_prob


@register_kl(Normal, Cauchy)
def _kl_normal_cauchy(q, p):
    return -q.entropy() - normal_expectation(q, _broadcast_log_prob(p))


@register_kl(Normal, StudentT)
def _kl_normal_studentt(q, p):
    return -q.entropy() - normal_expectation(q, _broadcast_log_prob(p))


@register_kl(LowRankMultivariateNormal, Independent)
def _kl_lowrank_diagonal_normal(q, p):
    r"""Closed form (module doc) as :math:`-H(q) + \tfrac12 \sum_j [\log 2\pi v_j + (S_{jj} + (m_j - \mu_j)^2) / v_j]`;
    ``NotImplementedError`` unless ``p`` is a vector of independent Normals."""
    normal = p.base_dist
    if not isinstance(normal, Normal) or p.reinterpreted_batch_ndims != 1:
        raise NotImplementedError
    variance = normal.scale**2
    cross_entropy = 0.5 * (math.log(2 * math.pi) + variance.log() + (q.variance + (q.loc - normal.loc) ** 2) / variance).sum(-1)
    return cross_entropy - q.entropy()


def base_distribution(distribution):
    """The distribution inside any ``Independent`` wrappers (torch's or Pyro's)."""
    while isinstance(distribution, Independent):
        distribution = distribution.base_dist
    return distribution


def _log_density_growth(prior):
    """a such that -log p(z) ~ |z|^a (0 for logarithmic growth); None if unknown."""
    prior = base_distribution(prior)
    if isinstance(prior, MixtureSameFamily):
        prior = base_distribution(prior.component_distribution)
    if isinstance(prior, (Normal, MultivariateNormal, LowRankMultivariateNormal)):
        return 2.0
    if isinstance(prior, Laplace):
        return 1.0
    if isinstance(prior, (Cauchy, StudentT)):
        return 0.0
    return None


def _moment_order(guide):
    """t such that E|z|^r < inf exactly for r < t; None if unknown."""
    guide = base_distribution(guide)
    if isinstance(guide, (Normal, Laplace, MultivariateNormal, LowRankMultivariateNormal)):
        return math.inf
    if isinstance(guide, Cauchy):
        return 1.0
    if isinstance(guide, StudentT):
        return float(guide.df.min())
    return None


def min_particles_for_finite_bound(guide, prior):
    """Smallest K for which the K-particle importance-weighted bound is finite (1 if the KL is finite).

    Returns ``None`` where the tails of either distribution are not known to this module (then no
    claim is made), and ``math.inf`` where no K helps (a guide with no finite moment of any order
    against a prior that grows polynomially cannot happen for the families here).
    """
    growth, order = _log_density_growth(prior), _moment_order(guide)
    if growth is None or order is None:
        return None
    if growth < order:
        return 1
    return math.floor(growth / order) + 1


def kl_path(guide, prior):
    """``"analytic"`` if a closed-form (or quadrature) KL is registered for this pair, else ``"monte-carlo"``."""
    try:
        kl_divergence(guide, prior)
    except NotImplementedError:
        return "monte-carlo"
    return "analytic"
