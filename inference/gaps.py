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
latent site whose distribution has a location and a scale (:data:`OPTIMISED`: a location-scale family
such as Normal, Laplace, Cauchy or StudentT with fixed df; the low-rank-plus-diagonal Normal with its
``cov_factor`` U and ``cov_diag``; a full-covariance Normal through its Cholesky factor) gets those
parameters per data point, unconstrained through softplus where they are positive, initialised at the
amortised values and optimised with Adam on the ELBO (``particles`` vectorised draws, cosine-decayed
learning rate; the KL in closed form where torch has it and :func:`~.traces.mean_field_valid` says it is the
ELBO's term, else by Monte Carlo).  A site whose amortised parameters depend on an upstream latent draw
(z2 of :class:`~pyro_vae.models.TwoLayerVAE`, :math:`q(z_2 \mid z_1)`) keeps that dependence: its
per-point parameters are offsets added to the amortised parameters' unconstrained values, initialised at
zero (for a Normal, :math:`q^*_x(z_2 \mid z_1) = F(\mu_\phi(z_1) + a_x,\ \mathrm{softplus}(\rho_\phi(z_1) + b_x))`), so
:math:`q^*_x` starts exactly at :math:`q_\phi` and stays in its family (free parameters from one draw of
z1 would make a mean-field guide, poorer than the amortised one, and start it elsewhere).  A family
whose distribution is a flow, a ``TransformedDistribution`` (the ``iaf`` guide, or a user's flow), keeps
the transforms its encoder conditioned and gets its *base* distribution per point: for the ``iaf`` guide
:math:`q^*_x = T_{h(x)} \# \mathcal N(a_x, \mathrm{diag}\, b_x^2)`, starting at the encoder's
:math:`(\mu(x), s(x))`.  That family is narrower than a flow whose weights are optimised per point
(Cremer et al.'s local flow), so for a flow the reported approximation gap is an upper bound on that
family's and the amortisation gap a lower bound.  A family without a location and a spread in its base
is refused with the reason.  The same optimiser, with a few steps, is
the semi-amortised refinement of :mod:`pyro_vae.inference.refine`.
"""

import inspect
import math

import pyro
import torch
from pyro.distributions import constraints
from torch.distributions import Independent, TransformedDistribution, transform_to
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from pyro_vae import checks
from pyro_vae.errors import ConfigError

from .estimators import BYTES_PER_PARTICLE_FEATURE, importance_log_weights
from .weights import log_likelihood
from .objectives import make_objective
from .plates import find_data_plate, local_pair
from .traces import latent_sites, random_state_kept


#: The parameters the per-point guide optimises, where a site's distribution has them, each through the
#: bijection from the reals onto its constraint: softplus for a scale (as the catalogue's encoders emit it)
#: and softplus on a Cholesky factor's diagonal.  Other parameters (a Student-t's df) stay as they are.
OPTIMISED = {"loc": constraints.real, "scale": constraints.softplus_positive, "cov_factor": constraints.real,
             "cov_diag": constraints.softplus_positive, "scale_tril": constraints.softplus_lower_cholesky}
#: MultivariateNormal's other forms of its scale_tril, which the per-point guide replaces.
_ALTERNATIVES = ("covariance_matrix", "precision_matrix")


def _innermost(distribution):
    """The distribution inside any ``Independent`` and ``TransformedDistribution`` wrappers."""
    while isinstance(distribution, (Independent, TransformedDistribution)):
        distribution = distribution.base_dist
    return distribution


def _with_base(distribution, base):
    """``distribution`` with its innermost distribution replaced by ``base``, its ``Independent`` and
    ``TransformedDistribution`` wrappers (and their transforms) kept."""
    if isinstance(distribution, Independent):
        return type(distribution)(_with_base(distribution.base_dist, base), distribution.reinterpreted_batch_ndims)
    if isinstance(distribution, TransformedDistribution):
        # a flow's class takes (base, transforms); a LogNormal's takes (loc, scale): it becomes a plain transformed one
        kind = type(distribution) if "base_distribution" in inspect.signature(type(distribution)).parameters \
            else pyro.distributions.TransformedDistribution
        return kind(_with_base(distribution.base_dist, base), distribution.transforms)
    return base


def _site_parameters(name, fn):
    """``(family, {parameter: value}, fixed_kwargs, fn)`` of a guide site's distribution ``fn``: the family
    and parameters (those of :data:`OPTIMISED` it has) of its innermost distribution, :func:`_innermost`;
    refuses a family without a location and a spread."""
    base = _innermost(fn)
    params = {k: getattr(base, k) for k in OPTIMISED if k in base.arg_constraints and hasattr(base, k)}
    if "loc" not in params or len(params) < 2:
        raise ConfigError(
            f"per-point optimisation of the guide (gap split, refinement) needs sites with a location and a scale "
            f"(Normal, Laplace, Cauchy, StudentT, LowRankMultivariateNormal, MultivariateNormal, or a flow on one); "
            f"site {name!r} has a {type(base).__name__}"
        )
    fixed = {k: getattr(base, k) for k in base.arg_constraints
             if k not in OPTIMISED and k not in _ALTERNATIVES and k in vars(base)}
    return type(base), params, fixed, fn


def _conditional_sites(guide, x, names):
    """The latent sites whose guide parameters depend on an upstream latent draw (by autograd, from a rerun
    of the guide with every draw a fresh leaf)."""
    with random_state_kept(x.device), poutine.block(), torch.enable_grad():
        with torch.no_grad():
            trace = poutine.trace(guide).get_trace(x)
        leaves = {name: trace.nodes[name]["value"].detach().requires_grad_() for name in names}
        rerun = poutine.trace(poutine.condition(guide, data=leaves)).get_trace(x)
        conditional = set()
        for i, name in enumerate(names):
            outputs = [t for t in _site_parameters(name, rerun.nodes[name]["fn"])[1].values() if t.requires_grad]
            upstream = [leaves[n] for n in names[:i]]
            if outputs and upstream:
                grads = torch.autograd.grad(sum(t.sum() for t in outputs), upstream, allow_unused=True)
                if any(g is not None for g in grads):
                    conditional.add(name)
    return conditional


def _guide_sites(guide, x):
    """``{site: _site_parameters(...)}`` of the amortised guide at ``x``, and the names of the sites whose
    parameters depend on an upstream draw (:func:`_conditional_sites`)."""
    with torch.no_grad(), random_state_kept(x.device), poutine.block():
        trace = poutine.trace(guide).get_trace(x)
    trace = prune_subsample_sites(trace)
    sites = {name: _site_parameters(name, trace.nodes[name]["fn"]) for name in latent_sites(trace)}
    return sites, _conditional_sites(guide, x, list(sites))


class LocalGuide:
    """The amortised guide with its own parameters per data point for each latent site (``q*_x``).

    ``sites[name] = (family, {parameter: unconstrained tensor}, fixed_kwargs, amortised distribution)``, each
    parameter the image of its tensor under the bijection of :data:`OPTIMISED`; for a site in ``conditional``
    (its amortised parameters depend on an upstream draw) the tensors are offsets added to the amortised
    parameters' unconstrained values (module doc).  The per-point distribution is the amortised one with its
    innermost distribution replaced (:func:`_with_base`), so a flow keeps its transforms.  Runs the amortised guide with each site's distribution
    replaced, so called with exactly the data points it was built for (checked), so that row i keeps its
    parameters.
    """

    def __init__(self, guide, sites, conditional=()):
        self.guide, self.conditional = guide, set(conditional)
        self.sites = {}
        for name, (family, params, fixed, amortised) in sites.items():
            unconstrained = {k: torch.zeros_like(v) if name in self.conditional else transform_to(OPTIMISED[k]).inv(v)
                             for k, v in params.items()}
            self.sites[name] = (family, {k: v.detach().clone().requires_grad_() for k, v in unconstrained.items()},
                                {k: v.detach() for k, v in fixed.items()}, amortised)
        self.num_points = self.parameters()[0].shape[0] if self.sites else 0

    def parameters(self):
        return [tensor for _, unconstrained, _, _ in self.sites.values() for tensor in unconstrained.values()]

    def __call__(self, x):
        if x.shape[0] != self.num_points:
            raise ConfigError(f"this local guide holds parameters for {self.num_points} data points, got {x.shape[0]}")
        with _PerPointSites(self):
            self.guide(x)

    def distribution(self, name, amortised=None):
        """Site ``name``'s per-point distribution, given its amortised one in this run of the guide (needed only
        for a conditional site; another keeps the one it was built from, which depends on the data alone)."""
        family, unconstrained, fixed, built_from = self.sites[name]
        shell = amortised if name in self.conditional else built_from
        base = _innermost(amortised) if name in self.conditional else None
        params = {}
        for k, value in unconstrained.items():
            bijection = transform_to(OPTIMISED[k])
            if base is not None:
                value = bijection.inv(getattr(base, k)) + value
            params[k] = bijection(value)
        return _with_base(shell, family(**params, **fixed))


class _PerPointSites(poutine.messenger.Messenger):
    """Replaces the distribution of each of a :class:`LocalGuide`'s sites by its per-point one."""

    def __init__(self, local):
        super().__init__()
        self.local = local

    def _pyro_sample(self, msg):
        if msg["name"] in self.local.sites and not msg["is_observed"]:
            msg["fn"] = self.local.distribution(msg["name"], msg["fn"])


def optimise_local_guide(model, guide, x, steps=500, lr=0.05, particles=16):
    """``q*_x``: the amortised guide's family with parameters optimised for each row of ``x`` alone, by
    ``steps`` Adam steps from the amortised values (module doc)."""
    local = LocalGuide(guide, *_guide_sites(guide, x))
    params = local.parameters()
    objective = make_objective("meanfield", particles)  # Monte Carlo KLs where mean field fails (MeanFieldELBO)
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


def optimised_bounds(model, guide, x, particles, steps, lr, optimisation_particles, block_size, seed, data_plate):
    """Per point, for the amortised guide and for ``q*_x`` after ``steps`` steps: :func:`_bound_terms` from
    ``particles`` importance draws, as ``{"amortised": {...}, "optimised": {...}}`` (the caller's random
    state kept; a pair with global latents conditional on one draw of them, :func:`local_pair`)."""
    checks.check_work({"points": len(x), "steps": steps, "draws a step": optimisation_particles}, "the per-point refinement")
    with random_state_kept(x.device):
        pyro.set_rng_seed(seed)
        data_plate = find_data_plate(model, guide, x[:block_size], data_plate)
        model, guide, _ = local_pair(model, guide, x[:block_size], data_plate)
        blocks = {"amortised": [], "optimised": []}
        for block in x.split(block_size):
            local = optimise_local_guide(model, guide, block, steps, lr, optimisation_particles)
            # all points of a block in one chunk, so the local guide sees the rows it was built for
            memory = BYTES_PER_PARTICLE_FEATURE * block[0].numel() * min(particles, 100) * len(block)
            with torch.no_grad():
                blocks["amortised"].append(_bound_terms(importance_log_weights(model, guide, block, particles,
                                                                               data_plate=data_plate)))
                blocks["optimised"].append(_bound_terms(importance_log_weights(model, local, block, particles,
                                                                               max_memory=memory, data_plate=data_plate)))
    return {name: {key: torch.cat([terms[key] for terms in found]) for key in found[0]} for name, found in blocks.items()}


def summarise(per_point, variances):
    """Means over the points of ``{key: (N,) values}`` with Monte Carlo errors ``*_mc_se`` from the per-point
    ``variances``; the values under ``per_datapoint`` and their errors under ``per_datapoint_mc_se``."""
    result = {}
    for key, values in per_point.items():
        result[key] = values.mean().item()
        result[f"{key}_mc_se"] = math.sqrt(variances[key].sum().item()) / len(values)
    result["per_datapoint"] = {key: values.detach().cpu() for key, values in per_point.items()}
    result["per_datapoint_mc_se"] = {key: variance.detach().cpu().sqrt() for key, variance in variances.items()}
    return result


def inference_gaps(model, guide, x, particles=1000, steps=500, lr=0.05, optimisation_particles=16, block_size=100,
                   seed=0, data_plate=None):
    """Split :math:`\\log p(x) - \\mathrm{ELBO}(q_\\phi)` into approximation and amortisation gaps.

    :param x: the data points (a few hundred), on the model's device.
    :param particles: importance draws K per point and guide.
    :param steps: Adam steps of the per-point optimisation of ``q*_x``.
    :param lr: its learning rate.
    :param optimisation_particles: its draws per step.
    :param block_size: points optimised and weighed together (memory).
    :param data_plate: the data plate's name (None: found). A pair with global latents is split
        conditional on one draw of them from the guide (:func:`~pyro_vae.inference.plates.local_pair`).

    The caller's random state is left as it was.

    :returns: mean nats per data point for ``log_likelihood`` (and both proposals' estimates),
        ``elbo_amortised``, ``elbo_optimised``,
        ``total_gap``, ``approximation_gap``, ``amortisation_gap``, each with ``*_mc_se``, and the
        per-point values and errors under ``per_datapoint`` and ``per_datapoint_mc_se``.
    """
    bounds = optimised_bounds(model, guide, x, particles, steps, lr, optimisation_particles, block_size, seed, data_plate)
    per_point, variances = {}, {}
    for name, terms in bounds.items():
        per_point[f"log_likelihood_{name}_proposal"], variances[f"log_likelihood_{name}_proposal"] = terms["log_p"], terms["log_p_var"]
        per_point[f"elbo_{name}"], variances[f"elbo_{name}"] = terms["elbo"], terms["elbo_var"]
    proposal = max(("amortised", "optimised"), key=lambda name: per_point[f"log_likelihood_{name}_proposal"].mean().item())
    per_point["log_likelihood"] = per_point[f"log_likelihood_{proposal}_proposal"]
    variances["log_likelihood"] = variances[f"log_likelihood_{proposal}_proposal"]
    per_point["total_gap"] = per_point["log_likelihood"] - per_point["elbo_amortised"]
    per_point["approximation_gap"] = per_point["log_likelihood"] - per_point["elbo_optimised"]
    per_point["amortisation_gap"] = per_point["elbo_optimised"] - per_point["elbo_amortised"]
    variances["total_gap"] = variances["log_likelihood"] + variances["elbo_amortised"]
    variances["approximation_gap"] = variances["log_likelihood"] + variances["elbo_optimised"]
    variances["amortisation_gap"] = variances["elbo_optimised"] + variances["elbo_amortised"]
    result = summarise(per_point, variances)
    result["log_likelihood_proposal"] = proposal
    return result


def gaps_against(gaps, log_likelihood, variance, name):
    r"""The total and approximation gaps of an :func:`inference_gaps` result re-measured against another
    estimate of :math:`\log p(x)` on the same points (AIS: ``name="ais"``), per point ``log_likelihood`` with
    Monte Carlo ``variance``: ``log_likelihood_<name>``, ``total_gap_<name>``, ``approximation_gap_<name>``, each
    with ``*_mc_se`` (the amortisation gap does not involve :math:`\log p(x)`)."""
    elbo, elbo_variance = gaps["per_datapoint"], gaps["per_datapoint_mc_se"]
    log_likelihood, variance = log_likelihood.detach().cpu().double(), variance.detach().cpu().double()
    per_point = {f"log_likelihood_{name}": log_likelihood,
                 f"total_gap_{name}": log_likelihood - elbo["elbo_amortised"],
                 f"approximation_gap_{name}": log_likelihood - elbo["elbo_optimised"]}
    variances = {f"log_likelihood_{name}": variance,
                 f"total_gap_{name}": variance + elbo_variance["elbo_amortised"] ** 2,
                 f"approximation_gap_{name}": variance + elbo_variance["elbo_optimised"] ** 2}
    result = summarise(per_point, variances)
    del result["per_datapoint"], result["per_datapoint_mc_se"]
    return result
