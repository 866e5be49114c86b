r"""Per-datapoint ELBO, reconstruction and KL terms of any model/guide pair.

.. math::

    \mathrm{ELBO}(x) = \underbrace{E_{q(z\mid x)}[\log p(x \mid z)]}_{\text{reconstruction}}
        - \underbrace{\mathrm{KL}(q(z \mid x) \,\|\, p(z))}_{\text{KL}},

in nats per data point, always with :math:`\beta = 1` and no subsample scaling, whatever objective
trained the pair.  The KL of a latent site is computed in closed form (or quadrature) where a KL is
registered for its (guide, prior) pair and by Monte Carlo from the same draw otherwise; the
reconstruction term is a Monte Carlo estimate from ``particles`` draws.  This is the one place
these numbers are computed.
"""

import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from torch.distributions.kl import kl_divergence

import pyro_vae.kl  # noqa: F401  (registers the KLs torch lacks)


def trace_pair(model, guide, x):
    """Guide trace and the model's trace replayed against it, subsample sites pruned, nothing scored."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


def _site_kl(guide_site, model_site):
    try:
        return kl_divergence(guide_site["fn"], model_site["fn"]).sum()
    except NotImplementedError:
        value = guide_site["value"]
        return (guide_site["fn"].log_prob(value) - model_site["fn"].log_prob(value)).sum()


@torch.no_grad()
def elbo_terms(model, guide, x, batch_size=1000, particles=1):
    """Mean ``elbo``, ``reconstruction`` and ``kl`` per data point of ``x`` (floats, nats).

    Sites are assumed local (inside the data plate); ``x`` is split into batches of
    ``batch_size`` so memory stays bounded.
    """
    totals = {"reconstruction": 0.0, "kl": 0.0}
    for batch in x.split(batch_size):
        for _ in range(particles):
            model_trace, guide_trace = trace_pair(model, guide, batch)
            for name, site in model_trace.nodes.items():
                if site["type"] != "sample":
                    continue
                if site["is_observed"]:
                    totals["reconstruction"] += site["fn"].log_prob(site["value"]).sum().item() / particles
                else:
                    totals["kl"] += _site_kl(guide_trace.nodes[name], site).item() / particles
    n = len(x)
    result = {key: value / n for key, value in totals.items()}
    result["elbo"] = result["reconstruction"] - result["kl"]
    return result
