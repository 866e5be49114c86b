"""What a fitted pair's latents say: per-coordinate statistics against the prior, reconstruction
gains, the aggregate posterior, and, for a pair that can generate, what collapsed latents change."""

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from torch.distributions.kl import kl_divergence

from pyro_vae.guides import location, moments_label, scale
from pyro_vae.kl import base_distribution

from .traces import latent_site, observed_log_prob, random_state_kept, trace_pair


@torch.no_grad()
def latent_statistics(model, guide, x, site=None, batch_size=1000, active_threshold=0.01):
    r"""Per latent coordinate j, over the data points x (Asperti 2019, Table 1 and Section 4), against the
    prior's own variance :math:`v_j` (:func:`prior_moments`: 1 for a standard Normal, :math:`2b^2` for a
    Laplace of scale b, :math:`\nu/(\nu - 2)` for a Student-t, the mixture's variance):

    * ``var_mu``: :math:`\mathrm{Var}_x(\mu_j(x))`, the spread of the posterior means; the coordinate
      is ``active`` when it exceeds ``active_threshold`` times :math:`v_j` (Burda et al. 2016's
      :math:`\mathrm{Cov}_x(E_q[z_j]) > 0.01` for a unit-variance prior);
    * ``mean_sigma2``: :math:`E_x[\sigma_j^2(x)]`;  ``moment_sum``: their sum, the variance of the
      aggregate posterior :math:`q(z_j) = E_x q(z_j \mid x)`, which is :math:`v_j` when the KL term works
      (the moment law, Asperti 2019 Section 4, stated there for :math:`v_j = 1`); ``prior_variance``: :math:`v_j`,
      and ``prior_mean`` beside it;
    * ``mean_mu``: :math:`E_x[\mu_j(x)]`, which should be the prior's mean (0);
    * ``kl``: :math:`E_x \mathrm{KL}(q(z_j \mid x) \| p(z_j))` (closed form where registered, else the
      Monte Carlo term of one draw; NaN for a prior that does not factorise).

    A prior without a variance (Cauchy) has no moment law: ``moment_law`` says so, and ``active`` is
    read against its squared scale.  For a guide without mean and variance (Cauchy) :math:`\mu` and
    :math:`\sigma` are its location and scale; ``moments`` says which was used.  A correlated
    (multivariate or low-rank normal) guide is read through its marginals, so ``kl`` is then the KL of each
    marginal.  A flow guide (``iaf``) has neither marginals nor moments in closed form: :math:`\mu` and
    :math:`\sigma` are its Monte Carlo mean and sd (:class:`pyro_vae.guides.FlowPosterior`), ``kl`` is NaN.
    """
    locs, scales, kls, moments = [], [], [], None
    for batch in x.split(batch_size):
        model_trace, guide_trace = trace_pair(model, guide, batch)
        node = latent_site(guide_trace, site)
        q, p = base_distribution(node["fn"]), base_distribution(model_trace.nodes[node["name"]]["fn"])
        if isinstance(q, (dist.MultivariateNormal, dist.LowRankMultivariateNormal)):  # per coordinate: its marginals
            q = dist.Normal(q.loc, q.stddev)
        locs.append(location(q))
        scales.append(scale(q))
        moments = moments_label(node["fn"])
        kls.append(_per_coordinate_kl(q, p, node["value"]))
    loc, sd, kl = torch.cat(locs), torch.cat(scales), torch.cat(kls)
    var_mu = loc.var(0, unbiased=False)
    mean_sigma2 = (sd**2).mean(0)
    prior_mean, prior_variance, prior_scale = prior_moments(prior_site(model, x[:batch_size], node["name"]), loc.shape[1:])
    reference, law = prior_variance, "aggregate-posterior variance = prior variance"
    if not bool(torch.isfinite(prior_variance).all()):
        reference, law = prior_scale**2, "undefined: the prior has no variance ('active' is read against its squared scale)"
    active = var_mu > active_threshold * reference
    return {
        "var_mu": var_mu.tolist(),
        "mean_sigma2": mean_sigma2.tolist(),
        "moment_sum": (var_mu + mean_sigma2).tolist(),
        "mean_mu": loc.mean(0).tolist(),
        "kl": kl.mean(0).tolist(),
        "active": active.tolist(),
        "active_units": int(active.sum()),
        "prior_mean": prior_mean.tolist(),
        "prior_variance": prior_variance.tolist(),
        "active_threshold": (active_threshold * reference).tolist(),
        "moment_law": law,
        "moments": moments,
        "site": node["name"],
    }


def prior_moments(prior, shape):
    r"""Mean, variance and scale of a prior site's distribution per latent coordinate, each of ``shape``
    (NaN or inf where it has none: a Cauchy has no mean or variance; a family without a scale gets its sd).

    ``prior`` may be a batch over the data plate.  Its rows are the same distribution for an
    unconditional prior; for a conditional one, :math:`p(z_1 \mid z_2)` with :math:`z_2` drawn per row
    from its own prior (:func:`prior_site`), they are draws of the mixing variable and the moments are the
    marginal's, by the law of total variance over the rows,
    :math:`\mathrm{Var}(z_1) = \overline{\mathrm{Var}(z_1 \mid z_2)} + \widehat{\mathrm{Var}}\big(E[z_1 \mid z_2]\big)`
    (a Monte Carlo estimate from as many draws as rows); the scale is then the rows' mean scale.
    """
    shape = torch.Size(shape)

    def rows(value):
        value = value.double()  # a distribution's moments are tensors where its parameters are
        return value.expand(*value.shape[: max(value.dim() - len(shape), 0)], *shape).reshape(-1, *shape)

    base = base_distribution(prior)
    scale = getattr(base, "scale", None)
    if scale is None:
        scale = prior.variance.sqrt()
    means, variances = rows(prior.mean), rows(prior.variance)
    variance = variances.mean(0) + means.var(0, unbiased=False)
    return means.mean(0), torch.where(torch.isfinite(variance), variance, variances.mean(0)), rows(scale).mean(0)


def prior_site(model, x, name):
    """Site ``name``'s distribution in a run of ``model`` on ``x`` with every latent drawn from the prior
    (no guide), so a conditional prior's rows mix over its parents' prior (:func:`prior_moments`); the
    caller's random state is kept."""
    with random_state_kept(x.device):
        return prune_subsample_sites(poutine.trace(model).get_trace(x)).nodes[name]["fn"]


def _per_coordinate_kl(q, p, value):
    if isinstance(p, dist.MixtureSameFamily) or q.event_shape:  # no per-coordinate factors: a joint q or p
        return torch.full_like(value.reshape(-1, value.shape[-1]), float("nan"))
    try:
        kl = kl_divergence(q, p)
    except NotImplementedError:
        kl = q.log_prob(value) - p.log_prob(value)
    return kl.expand(value.shape).reshape(-1, value.shape[-1])


@torch.no_grad()
def reconstruction_gain(model, guide, x, site=None, batch_size=1000):
    r"""Per latent j: how much worse the data are explained when :math:`z_j` is fixed to its prior location.

    With :math:`z = \mu(x)` (the guide's location) and :math:`z^{(j)}` equal to it except
    that :math:`z_j` is set to the prior's location (0 for the built-in priors),
    :math:`\mathrm{gain}_j = E_x[-\log p(x \mid z^{(j)})] - E_x[-\log p(x \mid z)]`, in nats per data
    point (Asperti 2019, Section 5: a latent collapses when its gain falls below its KL).
    """
    totals, base_total = None, 0.0
    for batch in x.split(batch_size):
        model_trace, guide_trace = trace_pair(model, guide, batch)
        node = latent_site(guide_trace, site)
        z = location(node["fn"])
        prior_location = _prior_location(model_trace.nodes[node["name"]]["fn"], z)
        base = observed_log_prob(model, batch, {node["name"]: z})
        base_total += base.sum().item()
        gains = []
        for j in range(z.shape[-1]):
            fixed = z.clone()
            fixed[..., j] = prior_location[..., j]
            gains.append((base - observed_log_prob(model, batch, {node["name"]: fixed})).sum().item())
        totals = gains if totals is None else [a + b for a, b in zip(totals, gains)]
    return {"gain": [g / len(x) for g in totals], "reconstruction_log_prob": base_total / len(x)}


def _prior_location(prior, like):
    """The prior's location in z's own space (:func:`~pyro_vae.guides.location`: a mixture's or a LogNormal's
    mean, a location-scale family's loc)."""
    return location(prior).expand(like.shape)


@torch.no_grad()
def aggregate_posterior(stats):
    r"""First two moments of the aggregate posterior :math:`q(z) = E_x q(z \mid x)` against the prior's.

    Mean :math:`E_x \mu(x)` and variance :math:`\mathrm{Var}_x \mu(x) + E_x \sigma^2(x)` per
    coordinate, beside the prior's mean and variance (:func:`prior_moments`, the marginal's for a conditional
    prior; NaN or inf where the prior has none, e.g. Cauchy), all from :func:`latent_statistics`'s ``stats``.
    """
    return {
        "mean": stats["mean_mu"],
        "variance": stats["moment_sum"],
        "prior_mean": stats["prior_mean"],
        "prior_variance": stats["prior_variance"],
    }


@torch.no_grad()
def collapsed_generation_difference(vae, active, n=1000):
    r""":math:`E_{z \sim p(z)} \overline{|E[x \mid z] - E[x \mid z_{\text{active}}, 0]|}`: how much
    generation changes when the collapsed latents are set to 0 (Asperti 2019, Fig. 3 claims: not at all)."""
    z = vae.prior().sample((n,))
    zeroed = torch.where(torch.as_tensor(active, device=z.device), z, torch.zeros_like(z))
    return (vae.generate(n, "mean", z=z) - vae.generate(n, "mean", z=zeroed)).abs().mean().item()
