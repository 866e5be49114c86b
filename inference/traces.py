"""Tracing helpers shared by evaluation, diagnostics and fitting."""

import random
from contextlib import contextmanager

import numpy
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites

from pyro_vae.errors import ConfigError
from pyro_vae.kl import base_distribution


@contextmanager
def random_state_kept(device):
    """A context after which torch's (CPU, and ``device`` if CUDA), NumPy's and Python's random streams
    are as they were before, whatever it drew or seeded (``pyro.set_rng_seed`` seeds all three)."""
    device = torch.device(device)
    python_state, numpy_state = random.getstate(), numpy.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(python_state)
        numpy.random.set_state(numpy_state)


class _EnumerationRefused(Messenger):
    def __init__(self, estimator):
        super().__init__()
        self.estimator = estimator

    def _pyro_sample(self, msg):
        how = msg["infer"].get("enumerate")
        if how in ("parallel", "sequential") and not msg["is_observed"]:
            raise ConfigError(
                f"{self.estimator}: site {msg['name']!r} is marked for enumeration (infer={{'enumerate': {how!r}}}), which "
                f"{self.estimator} neither does nor replaces with a score-function gradient; use enum, which sums it out")


def refuse_enumeration(fn, estimator):
    """``fn`` refusing, at its first site marked for enumeration, in one line naming ``estimator``.

    An estimator that neither enumerates nor takes a score-function gradient would otherwise sample the
    site and fail later in the user's own code (a pair written for enumeration asserts enumerated shapes,
    as in pyro-ppl's ``tests/infer/test_valid_models.py``) or in Pyro's internals."""
    return _EnumerationRefused(estimator)(fn)


def family_name(distribution):
    """The name of the family under a distribution's wrappers (``Normal`` for ``Normal(...).to_event(1)``)."""
    return type(base_distribution(distribution)).__name__


def refuse_unreparameterised(estimator, name, site):
    """Raise, in one line, that ``estimator``'s gradient has no score-function term for guide site ``name``
    when its distribution has no ``rsample`` (a Bernoulli, a Categorical, a ``NonreparameterizedNormal``)."""
    if not getattr(site["fn"], "has_rsample", False):
        raise ConfigError(f"{estimator}: guide site {name!r} ({family_name(site['fn'])}) is not "
                          f"reparameterised, and {estimator}'s gradient has no score-function term for it; use elbo, "
                          f"which has one")


def trace_pair(model, guide, x):
    """Guide trace and the model's trace replayed against it, subsample sites pruned, nothing scored."""
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return prune_subsample_sites(model_trace), prune_subsample_sites(guide_trace)


def latent_sites(trace):
    """The names of a trace's latent (unobserved sample) sites, in the order they were drawn."""
    return [name for name, node in trace.nodes.items() if node["type"] == "sample" and not node["is_observed"]]


def guide_latent_sites(guide, x):
    """The names of ``guide``'s latent sites, from one trace on two rows of ``x``; random state kept."""
    with random_state_kept(x.device), poutine.block():
        return latent_sites(prune_subsample_sites(poutine.trace(guide).get_trace(x[:2])))


def guide_dependences(guide, x):
    """``{site: [latent sites its distribution depends on]}`` for the guide's latent sites whose distribution
    takes another latent draw as input (q(z2 | z1, x)); empty for a guide whose sites are independent given x.

    Found by autograd, not by reading the code: the guide is replayed with each draw a leaf tensor, and a
    site depends on the draws its log-density's parameters have a gradient in (random streams kept)."""
    with random_state_kept(x.device), poutine.block(), torch.enable_grad():
        first = poutine.trace(guide).get_trace(x)
        names = latent_sites(prune_subsample_sites(first))
        for name in names:
            first.nodes[name]["value"] = first.nodes[name]["value"].detach().requires_grad_()
        again = poutine.trace(poutine.replay(guide, trace=first)).get_trace(x)
        found = {}
        for name in names:
            others = [other for other in names if other != name]
            log_prob = again.nodes[name]["fn"].log_prob(again.nodes[name]["value"].detach()).sum()
            if not others or not log_prob.requires_grad:
                continue
            grads = torch.autograd.grad(log_prob, [first.nodes[o]["value"] for o in others], allow_unused=True)
            depends = [other for other, grad in zip(others, grads) if grad is not None]
            if depends:
                found[name] = depends
    return found


def latent_site(guide_trace, site=None):
    """The guide's latent site named ``site``, or its only latent site when ``site`` is None."""
    latents = latent_sites(guide_trace)
    if site is None:
        if len(latents) != 1:
            raise ConfigError(f"the guide has latent sites {latents}; name the one to analyse (site=...)")
        site = latents[0]
    if site not in latents:
        raise ConfigError(f"the guide has no latent site {site!r}; its latent sites are {latents}")
    return guide_trace.nodes[site]


def observed_log_prob(model, x, values, batch_shape=None):
    """Sum of the observed sites' log-densities with latent sites fixed to ``values``.

    ``values`` maps latent site names to tensors; the sites they name are excluded from the sum.
    Returns a tensor of ``batch_shape`` (default ``(len(x),)``; ``(S, len(x))`` when the call sits in
    an outer plate of S draws), any further dims of a site's log-density summed out.
    """
    batch_shape = tuple(batch_shape or (len(x),))
    trace = poutine.trace(poutine.condition(model, data=values)).get_trace(x)
    total = torch.zeros(batch_shape, device=x.device)
    for name, site in prune_subsample_sites(trace).nodes.items():
        if site["type"] == "sample" and site["is_observed"] and name not in values:
            log_prob = site["fn"].log_prob(site["value"])
            while log_prob.dim() > len(batch_shape):
                log_prob = log_prob.sum(-1)
            total = total + log_prob.expand(batch_shape)
    return total


def mean_field_valid(model_trace, guide_trace):
    """Whether the closed-form KL at every latent site is a term of the ELBO: each latent the model samples
    before a site, the guide samples before it too, so the model's density there is read at draws made
    before the site's own (Pyro's order condition of ``TraceMeanField_ELBO``; sufficient, not necessary).
    A two-layer VAE fails it: the model's p(z1 | z2) is read at a z2 drawn from q(z2 | z1)."""
    model_order, guide_order = latent_sites(model_trace), latent_sites(guide_trace)
    return all(set(model_order[:model_order.index(name)]) <= set(guide_order[:guide_order.index(name)])
               for name in guide_order if name in model_order)
