r"""The importance-weighted bound (IWAE), correct under minibatch subsampling.

For each data point :math:`x_i` and :math:`K` reparameterised draws
:math:`z_{ik} \sim q_\phi(z \mid x_i)`,

.. math::

    \mathcal L_K = \sum_{i=1}^{N} E\Big[\log \frac1K \sum_{k=1}^K w_{ik}\Big],
    \qquad \log w_{ik} = \log p_\theta(x_i \mid z_{ik}) + \beta\,\big(\log p(z_{ik}) - \log q_\phi(z_{ik} \mid x_i)\big),

(Burda, Grosse & Salakhutdinov 2016; :math:`\beta = 1` is the bound proper), estimated on a
minibatch of size B as :math:`\frac{N}{B} \sum_{i \in \text{batch}} \log \frac1K \sum_k w_{ik}`.
:math:`\mathcal L_1` is the ELBO and :math:`\mathcal L_K \uparrow \log p(x)` as K grows.

Why not ``pyro.infer.RenyiELBO(alpha=0)``: it applies the subsample scale N/B to each log weight
*before* the log-mean-exp, computing :math:`\log \frac1K \sum_k w_k^{N/B}` (pyro-ppl/pyro#3104,
#2220).  Here the scale is divided out of every site's log-density first and applied to the
per-datapoint bound after, as NumPyro does since its PR #1608.  Particles are vectorised with an
outer ``pyro.plate``, so a K-particle step is one batched pass.

Scales: a ``poutine.scale(s)`` around the pair (or Pyro's subsample scale N/B) is read off the observed
sites, divided out of every site's log-density and multiplied onto the bound, so it multiplies the loss,
as it does for Pyro's ELBOs; what a latent site carries beyond it (``beta``,
:class:`~pyro_vae.inference.handlers.LatentScaleMessenger`) stays inside the weights.

Requirements, checked with a clear error: every sample site lies inside the data plate (found
whatever its name, :mod:`pyro_vae.inference.plates`, or named by ``data_plate``), since a bound
over global latents does not factorise over data points; every guide site is reparameterisable when a
gradient is taken (without one, for evaluation, a discrete site is weighed like any other).
"""

import math

import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace

from pyro_vae.errors import ConfigError

from .plates import PARTICLE_PLATE, data_plate_of


def _frame(site, name):
    for frame in site["cond_indep_stack"]:
        if frame.name == name:
            return frame
    return None


def _per_datapoint(log_prob, particle_dim, data_dim):
    """Sum ``log_prob`` over every dim but the particle and data dims; return shape (K or 1, B or 1)."""
    while log_prob.dim() < -min(particle_dim, data_dim):
        log_prob = log_prob.unsqueeze(0)
    other = [d for d in range(-log_prob.dim(), 0) if d not in (particle_dim, data_dim)]
    if other:
        log_prob = log_prob.sum(other, keepdim=True)
    return log_prob.reshape(log_prob.shape[particle_dim], log_prob.shape[data_dim])


class IWAE(ELBO):
    """Importance-weighted bound with ``num_particles`` vectorised particles (Burda et al. 2016; see module doc).

    :param int num_particles: K.
    :param str data_plate: name of the plate over data points (None: found in each call's model trace).
    """

    importance_weighted = True
    default_particles = 5
    kl = "inside-weights"
    name = "iwae"  # what its messages call it

    def __init__(self, num_particles=5, data_plate=None, max_plate_nesting=float("inf")):
        if int(num_particles) != num_particles or num_particles < 1:
            raise ConfigError(f"particles must be a positive integer, got {num_particles!r}")
        super().__init__(num_particles=int(num_particles), max_plate_nesting=max_plate_nesting, vectorize_particles=True)
        self.data_plate = data_plate

    def _get_trace(self, model, guide, args, kwargs):
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def log_weights(self, model, guide, *args, **kwargs):
        """Per-datapoint log importance weights ``(K, B)`` (beta applied, the loss scale removed), and the loss
        scale: N/B under subsampling times any ``poutine.scale`` around the pair (module doc)."""
        log_w, loss_scale, _ = self._log_weights(model, guide, args, kwargs)
        return log_w, loss_scale

    def _guide_log_prob(self, site):
        """The guide site's scaled log-density (the path-derivative estimators replace it)."""
        return site["log_prob"]

    def _log_weights(self, model, guide, args, kwargs):
        """``(log_w, data_scale, guide_sites)``, with ``(site, particle_dim, data_dim)`` per guide site."""
        if not args or not hasattr(args[0], "__len__"):
            raise ConfigError(f"{self.name}: the model and guide take no data as their first argument; an importance-weighted "
                              f"bound is a log-mean over each data point's particles, so it needs model(x) and guide(x); for a pair without data "
                              f"use elbo, or pyro.infer.RenyiELBO(alpha=0), the same bound over the whole trace")
        model_trace, guide_trace = next(self._get_traces(model, guide, args, kwargs))
        data_plate = self.data_plate or data_plate_of(model_trace, len(args[0]))
        loss_scale = self._loss_scale(model_trace)
        log_w, data_scale, guide_sites = 0.0, None, []
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for name, site in trace.nodes.items():
                if site["type"] != "sample":
                    continue
                frame = _frame(site, data_plate)
                if frame is None:
                    raise ConfigError(
                        f"{self.name}: site {name!r} is outside the data plate {data_plate!r}; the importance-weighted "
                        f"bound needs every sample site to be local to a data point"
                    )
                # a draw without a reparameterised path only matters for a gradient: evaluation (no grad) weighs any
                if sign < 0 and not site["fn"].has_rsample and torch.is_grad_enabled():
                    raise ConfigError(f"{self.name}: guide site {name!r} ({type(site['fn']).__name__}) is not reparameterisable")
                scale = frame.full_size / frame.size if frame.full_size else 1.0
                if data_scale is None:
                    data_scale = scale
                elif not math.isclose(scale, data_scale):
                    raise ConfigError(f"{self.name}: site {name!r} is subsampled by {scale}, others by {data_scale}")
                particles = _frame(site, PARTICLE_PLATE)
                if particles is not None:
                    particle_dim = particles.dim
                else:  # K = 1: no particle plate; any dim left of the site's plates serves
                    particle_dim = min(f.dim for f in site["cond_indep_stack"] if f.vectorized) - 1
                log_prob = site["log_prob"] if sign > 0 else self._guide_log_prob(site)
                log_w = log_w + sign * _per_datapoint(log_prob / loss_scale, particle_dim, frame.dim)
                if sign < 0:
                    guide_sites.append((site, particle_dim, frame.dim))
        return log_w, loss_scale, guide_sites

    def _loss_scale(self, model_trace):
        """The scale of the observed sites (N/B under subsampling, times any ``poutine.scale`` around the pair):
        divided out of every site's log-density and applied to the bound, so it multiplies the loss."""
        scales = {float(site["scale"]) for site in model_trace.nodes.values()
                  if site["type"] == "sample" and site["is_observed"] and not torch.is_tensor(site["scale"])}
        if any(torch.is_tensor(site["scale"]) for site in model_trace.nodes.values()
               if site["type"] == "sample" and site["is_observed"]) or len(scales) > 1:
            raise ConfigError(f"{self.name}: the observed sites carry different scales ({sorted(scales)} or a tensor); the "
                              "importance-weighted bound needs one scale for the whole log-likelihood")
        return scales.pop() if scales else 1.0

    def differentiable_loss(self, model, guide, *args, **kwargs):
        """Negative bound, differentiable (the reparameterised IWAE gradient)."""
        log_w, data_scale = self.log_weights(model, guide, *args, **kwargs)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.num_particles)
        return -data_scale * bound.sum()

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:  # a pair with nothing to learn has no gradient to take, as for Trace_ELBO
            loss.backward()
        return loss.item()
