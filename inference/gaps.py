r"""The inference gap split into approximation and amortisation gaps (Cremer, Li & Duvenaud 2018).

For a fitted model and data points x, with :math:`q_\phi(z \mid x)` the amortised guide and
:math:`q^*_x` a guide of the same family whose parameters are optimised for x alone (decoder fixed),

.. math::

    \underbrace{\log p(x) - \mathrm{ELBO}(q_\phi)}_{\text{inference gap}}
    = \underbrace{\log p(x) - \mathrm{ELBO}(q^*_x)}_{\text{approximation gap}}
    + \underbrace{\mathrm{ELBO}(q^*_x) - \mathrm{ELBO}(q_\phi)}_{\text{amortisation gap}}.

The approximation gap is :math:`\mathrm{KL}(q^*_x \| p(z \mid x))`, the price of the family; the
amortisation gap is what the encoder loses by sharing its parameters across data points.

Estimates: K importance draws from each guide give both its ELBO (the mean log weight) and an
importance-sampled :math:`\log p(x)` (the log-mean weight).  Both importance estimates are stochastic
lower bounds on :math:`\log p(x)`, so the larger is the tighter; :math:`\log p(x)` is the one whose
*mean over the points* is larger, chosen once for the whole set (choosing per point would bias it
upward by selecting noise; once per set, with means thousands of standard errors apart, the bias is
negligible).  Which proposal wins depends on the problem: a mean-field :math:`q^*_x` fitted by the
reverse KL is narrower than a correlated posterior, and on the correlated linear-Gaussian test problem
its estimate falls 0.25 nats (5 standard errors) short of the amortised one; on MNIST it is the better
proposal by about 1 nat.  Both are reported (``log_likelihood_amortised_proposal``,
``log_likelihood_optimised_proposal``), and ``log_likelihood_proposal`` names the one used.
Standard errors are Monte Carlo errors of the K
draws (the data points are what they are), combined in quadrature: conservative for the total gap,
whose two terms come from the same draws and are positively correlated.

The same-family guide :math:`q^*_x` is built from the amortised guide's own distributions: every
latent site whose distribution is a location-scale family (Normal, Laplace, Cauchy, StudentT with
fixed df, ...) gets a location and a softplus-scale parameter per data point, initialised at the
amortised values and optimised with Adam on the ELBO (analytic KL where torch has it, ``particles``
vectorised draws, cosine-decayed learning rate).  Sites are optimised as independent given x.
"""

import math

import pyro
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyro_vae.errors import ConfigError
from pyro_vae.kl import base_distribution

from .estimators import BYTES_PER_PARTICLE_FEATURE, importance_log_weights, log_likelihood
from .objectives import make_objective
from .plates import find_data_plate, local_pair
from .traces import random_state_kept


def _location_scale_sites(guide, x):
    """``{site: (family, loc, scale, extra_kwargs, event_ndims)}`` of the amortised guide at ``x``."""
    with torch.no_grad(), random_state_kept(x.device), poutine.block():
        trace = poutine.trace(guide).get_trace(x)
    sites = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        base = base_distribution(site["fn"])
        if not (hasattr(base, "loc") and hasattr(base, "scale") and "scale" in base.arg_constraints):
            raise ConfigError(
                f"the gap split optimises a guide of the amortised guide's family per data point; site {name!r} has a "
                f"{type(base).__name__}, not a location-scale family (Normal, Laplace, Cauchy, StudentT)"
            )
        extra = {k: getattr(base, k) for k in base.arg_constraints if k not in ("loc", "scale") and k in vars(base)}
        sites[name] = (type(base), base.loc, base.scale, extra, site["fn"].event_dim - base.event_dim)
    return sites


class LocalGuide:
    """A guide with its own location and scale per data point for each latent site (``q*_x``).

    Called with exactly the data points it was built for (checked), so that row i keeps its parameters.
    """

    def __init__(self, sites, data_plate="data"):
        self.data_plate = data_plate
        self.sites = {}
        for name, (family, loc, scale, extra, event_ndims) in sites.items():
            raw = scale + torch.log(-torch.expm1(-scale))  # inverse softplus
            self.sites[name] = (family, loc.detach().clone().requires_grad_(), raw.detach().clone().requires_grad_(),
                                {k: v.detach() for k, v in extra.items()}, event_ndims)
        self.num_points = next(iter(self.sites.values()))[1].shape[0] if self.sites else 0

    def parameters(self):
        return [tensor for _, loc, raw, _, _ in self.sites.values() for tensor in (loc, raw)]

    def __call__(self, x):
        if x.shape[0] != self.num_points:
            raise ConfigError(f"this local guide holds parameters for {self.num_points} data points, got {x.shape[0]}")
        with pyro.plate(self.data_plate, x.shape[0]):
            for name, (family, loc, raw, extra, event_ndims) in self.sites.items():
                pyro.sample(name, family(loc=loc, scale=F.softplus(raw), **extra).to_event(event_ndims))


def optimise_local_guide(model, guide, x, steps=500, lr=0.05, particles=16, data_plate=None):
    """``q*_x``: the amortised guide's family with parameters optimised for each row of ``x`` alone."""
    local = LocalGuide(_location_scale_sites(guide, x), find_data_plate(model, guide, x, data_plate))
    params = local.parameters()
    objective = make_objective("meanfield", particles)
    optimiser = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        loss = objective.differentiable_loss(model, local, x)
        grads = torch.autograd.grad(loss, params)  # the decoder's parameters stay as they are
        for p, g in zip(params, grads):
            p.grad = g
        optimiser.step()
        schedule.step()
    return local


def _bound_terms(log_weights):
    """Per point: ELBO (mean log weight) and IS log p(x), each with its Monte Carlo variance."""
    estimate = log_likelihood(log_weights)
    return {"elbo": log_weights.mean(1), "elbo_var": log_weights.var(1) / log_weights.shape[1],
            "log_p": estimate["per_datapoint"], "log_p_var": estimate["per_datapoint_mc_se"] ** 2}


def inference_gaps(model, guide, x, particles=1000, steps=500, lr=0.05, optimisation_particles=16, block_size=100,
                   seed=0, data_plate=None):
    """Split :math:`\\log p(x) - \\mathrm{ELBO}(q_\\phi)` into approximation and amortisation gaps.

    :param x: the data points (a few hundred), on the model's device.
    :param particles: importance draws K per point and guide.
    :param steps, lr, optimisation_particles: the per-point optimisation of ``q*_x``.
    :param block_size: points optimised and weighed together (memory).
    :param data_plate: the data plate's name (None: found). A pair with global latents is split
        conditional on one draw of them from the guide (:func:`~pyro_vae.inference.plates.local_pair`).

    The caller's random state is left as it was.

    :returns: mean nats per data point for ``log_likelihood`` (and both proposals' estimates),
        ``elbo_amortised``, ``elbo_optimised``,
        ``total_gap``, ``approximation_gap``, ``amortisation_gap``, each with ``*_mc_se``, and the
        per-point values under ``per_datapoint``.
    """
    with random_state_kept(x.device):
        return _inference_gaps(model, guide, x, particles, steps, lr, optimisation_particles, block_size, seed, data_plate)


def _inference_gaps(model, guide, x, particles, steps, lr, optimisation_particles, block_size, seed, data_plate):
    pyro.set_rng_seed(seed)
    data_plate = find_data_plate(model, guide, x[:block_size], data_plate)
    model, guide, _ = local_pair(model, guide, x[:block_size], data_plate)
    per_point = {key: [] for key in ("log_likelihood_amortised_proposal", "log_likelihood_optimised_proposal",
                                     "elbo_amortised", "elbo_optimised")}
    variances = {key: [] for key in per_point}
    for block in x.split(block_size):
        local = optimise_local_guide(model, guide, block, steps, lr, optimisation_particles, data_plate)
        # all points of a block in one chunk, so the local guide sees the rows it was built for
        memory = BYTES_PER_PARTICLE_FEATURE * block[0].numel() * min(particles, 100) * len(block)
        with torch.no_grad():
            amortised = _bound_terms(importance_log_weights(model, guide, block, particles, data_plate=data_plate))
            optimised = _bound_terms(importance_log_weights(model, local, block, particles, max_memory=memory, data_plate=data_plate))
        for key, value, variance in (("log_likelihood_amortised_proposal", amortised["log_p"], amortised["log_p_var"]),
                                     ("log_likelihood_optimised_proposal", optimised["log_p"], optimised["log_p_var"]),
                                     ("elbo_amortised", amortised["elbo"], amortised["elbo_var"]),
                                     ("elbo_optimised", optimised["elbo"], optimised["elbo_var"])):
            per_point[key].append(value)
            variances[key].append(variance)
    per_point = {key: torch.cat(values) for key, values in per_point.items()}
    variances = {key: torch.cat(values) for key, values in variances.items()}
    proposal = max(("amortised", "optimised"), key=lambda name: per_point[f"log_likelihood_{name}_proposal"].mean().item())
    per_point["log_likelihood"] = per_point[f"log_likelihood_{proposal}_proposal"]
    variances["log_likelihood"] = variances[f"log_likelihood_{proposal}_proposal"]
    per_point["total_gap"] = per_point["log_likelihood"] - per_point["elbo_amortised"]
    per_point["approximation_gap"] = per_point["log_likelihood"] - per_point["elbo_optimised"]
    per_point["amortisation_gap"] = per_point["elbo_optimised"] - per_point["elbo_amortised"]
    variances["total_gap"] = variances["log_likelihood"] + variances["elbo_amortised"]
    variances["approximation_gap"] = variances["log_likelihood"] + variances["elbo_optimised"]
    variances["amortisation_gap"] = variances["elbo_optimised"] + variances["elbo_amortised"]
    n = len(x)
    result = {}
    for key, values in per_point.items():
        result[key] = values.mean().item()
        result[f"{key}_mc_se"] = math.sqrt(variances[key].sum().item()) / n
    result["log_likelihood_proposal"] = proposal
    result["per_datapoint"] = {key: values.detach().cpu() for key, values in per_point.items()}
    return result
