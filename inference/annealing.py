r"""The annealed density path of a pair's local latents, and Hamiltonian Monte Carlo along it.

For one batch of B data points and M independent chains per point, every local latent site of the pair
(the sites inside the data plate; globals are fixed first, :func:`~.plates.local_pair`) is held as one
unconstrained tensor ``u`` of shape ``(M, B, D)``: each site's value is mapped to the real line by
``biject_to`` of its support, its chain and data dims moved to the front, the rest flattened, and the
sites concatenated.  :class:`AnnealingPath` gives, per chain and point, the log-densities

.. math::

    \log f_\beta(u) = \log f_0(z) + \beta\,\big(\log p(x, z) - \log f_0(z)\big) + \log\lvert J(u)\rvert,
    \qquad z = T(u),

with :math:`f_0 = q(z \mid x)` (the guide) or :math:`p(z)` (the prior); :math:`f_1` is the unnormalised
posterior and :math:`f_0` is normalised, so annealed importance sampling along the path estimates
:math:`p(x)` (:mod:`~pyro_vae.inference.ais`).

:func:`hmc_transition` is one Metropolis-adjusted HMC move per chain that leaves :math:`f_\beta` invariant,
with Pyro's velocity Verlet integrator (``pyro.ops.integrator``) on the sum of the chains' potentials
(they are independent, so each chain's gradient is its own) and a step size per data point.  Written
here rather than taken from ``pyro.infer.HMC`` because that kernel runs one chain of one model with one
step size; AIS needs thousands of independent chains, each point with its own step size, moved in one
batched pass.
"""

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.ops.integrator import velocity_verlet
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import biject_to

from pyro_vae import checks
from pyro_vae.errors import ConfigError

from .iwae import _frame, _per_datapoint
from .plates import PARTICLE_PLATE
from .traces import guide_dependences

BASES = ("guide", "prior")


def _max_plate_nesting(trace):
    dims = [-frame.dim for site in trace.nodes.values() if site["type"] == "sample"
            for frame in site["cond_indep_stack"] if frame.vectorized]
    return max(dims, default=0)


def in_chains(fn, chains, dim):
    """``fn`` run inside a plate of ``chains`` independent chains at ``dim`` (left of all of its own plates)."""
    def in_chains(*args, **kwargs):
        with pyro.plate(PARTICLE_PLATE, chains, dim=dim):
            return fn(*args, **kwargs)

    return in_chains


class _Layout:
    """Where one latent site's value sits in ``u``: its chain and data dims, the shape of the rest, its
    support's bijection and its columns ``[start, stop)``."""

    def __init__(self, name, site, data_plate, start):
        if site["fn"].support.is_discrete:
            raise ConfigError(f"site {name!r} is discrete ({type(site['fn']).__name__}): annealing moves the latents by "
                              "Hamiltonian Monte Carlo, which needs continuous ones; estimate log p(x) by IS (evaluate's "
                              "default) for this pair")
        self.name, self.transform = name, biject_to(site["fn"].support)
        value, event_dim = site["value"], site["fn"].event_dim
        batch_dims = value.dim() - event_dim
        self.chain_dim = batch_dims + _frame(site, PARTICLE_PLATE).dim
        self.data_dim = batch_dims + _frame(site, data_plate).dim
        self.batch_dims = batch_dims
        moved = value.movedim((self.chain_dim, self.data_dim), (0, 1))
        self.rest = moved.shape[2:]
        self.start, self.stop = start, start + max(1, moved[0, 0].numel())

    def unflatten(self, u):
        return u[..., self.start:self.stop].reshape(*u.shape[:2], *self.rest).movedim((0, 1), (self.chain_dim, self.data_dim))

    def flatten(self, value):
        return value.movedim((self.chain_dim, self.data_dim), (0, 1)).reshape(value.shape[self.chain_dim],
                                                                            value.shape[self.data_dim], -1)


class AnnealingPath:
    r"""The log-densities :math:`\log f_0` and :math:`\log p(x, z)` (module doc) of a pair's local latents on
    the rows of ``x``, ``chains`` chains each, at unconstrained values ``u`` of shape ``(chains, len(x), D)``.

    :param base: ``"guide"`` (:math:`f_0 = q(z \mid x)`) or ``"prior"`` (:math:`f_0 = p(z)`).
    """

    def __init__(self, model, guide, x, chains, data_plate, base="guide"):
        checks.one_of("base", base, BASES)
        self.x, self.chains, self.data_plate, self.base = x, chains, data_plate, base
        with torch.no_grad(), poutine.block():
            probe = prune_subsample_sites(poutine.trace(guide).get_trace(x))
            nesting = max(_max_plate_nesting(probe), _max_plate_nesting(
                prune_subsample_sites(poutine.trace(poutine.replay(model, trace=probe)).get_trace(x))))
        self.plate_dim = -(nesting + 1)
        self.model, self.guide = in_chains(model, chains, self.plate_dim), in_chains(guide, chains, self.plate_dim)
        # the probe above validated the guide's distributions; these are kept for the moves, whose proposals
        # may leave the support's numerical range (hmc_transition rejects them)
        with torch.no_grad(), poutine.block(), pyro.validation_enabled(False):
            guide_trace = prune_subsample_sites(poutine.trace(self.guide).get_trace(x))
        self.layouts, start = [], 0
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site["is_observed"]:
                if _frame(site, data_plate) is None:
                    raise ConfigError(f"site {name!r} is outside the data plate {data_plate!r}; fix the global latents "
                                      "first (plates.local_pair)")
                self.layouts.append(_Layout(name, site, data_plate, start))
                start = self.layouts[-1].stop
        self._guide_trace = guide_trace
        # A guide whose sites depend on x alone (no site on another's draw) is traced once: its
        # distributions are kept and only their log-densities are recomputed at each move.
        self._fixed_guide = base == "guide" and not guide_dependences(guide, x)

    def initial(self):
        """``u`` drawn from :math:`f_0`: the guide's draw (traced at construction) or a fresh prior draw."""
        if self.base == "guide":
            trace = self._guide_trace
        else:
            with torch.no_grad(), poutine.block():
                trace = prune_subsample_sites(poutine.trace(self.model).get_trace(self.x))
        return self.flatten({layout.name: trace.nodes[layout.name]["value"] for layout in self.layouts})

    def flatten(self, values):
        """``u`` of the latent values ``{site: z}`` (each in the chains' layout)."""
        return torch.cat([layout.flatten(layout.transform.inv(values[layout.name].detach())) for layout in self.layouts],
                         dim=-1)

    def log_densities(self, u):
        r"""``(log f0, log p(x, z), log|J|)``, each ``(chains, len(x))``, at ``u``."""
        values, log_jacobian = {}, 0.0
        for layout in self.layouts:
            free = layout.unflatten(u)
            values[layout.name] = z = layout.transform(free)
            ladj = layout.transform.log_abs_det_jacobian(free, z)
            log_jacobian = log_jacobian + self._reduce(ladj.reshape(*ladj.shape[:layout.batch_dims], -1).sum(-1)
                                                       if ladj.dim() > layout.batch_dims else ladj, layout)
        model_trace = prune_subsample_sites(poutine.trace(poutine.condition(self.model, data=values)).get_trace(self.x))
        model_trace.compute_log_prob()
        unknown = [name for name, site in model_trace.nodes.items()
                   if site["type"] == "sample" and not site["is_observed"] and name not in values]
        if unknown:
            raise ConfigError(f"the model samples {unknown[0]!r}, which the guide does not: annealing needs every local "
                              "latent in the guide (a site summed out by enumeration is not supported)")
        latent = self._sum(model_trace, lambda site: site["name"] in values)
        joint = latent + self._sum(model_trace, lambda site: site["is_observed"] and site["name"] not in values)
        if self.base == "prior":
            return latent, joint, log_jacobian
        if self._fixed_guide:
            base = 0.0
            for layout in self.layouts:
                site = self._guide_trace.nodes[layout.name]
                log_prob = scale_and_mask(site["fn"].log_prob(values[layout.name]), site["scale"], site["mask"])
                base = base + self._per_point(log_prob, site)
        else:
            guide_trace = prune_subsample_sites(poutine.trace(poutine.condition(self.guide, data=values)).get_trace(self.x))
            guide_trace.compute_log_prob()
            base = self._sum(guide_trace, lambda site: site["name"] in values)
        return base, joint, log_jacobian

    def _sum(self, trace, keep):
        """Per (chain, point) sum of the log-densities of the sample sites ``keep`` selects (a latent
        conditioned on a value shows as observed: the callers select by name)."""
        total = 0.0
        for site in trace.nodes.values():
            if site["type"] == "sample" and keep(site):
                total = total + self._per_point(site["log_prob"], site)
        return total

    def _per_point(self, log_prob, site):
        frame = _frame(site, self.data_plate)
        if frame is None:
            raise ConfigError(f"site {site['name']!r} is outside the data plate {self.data_plate!r}")
        scale = frame.full_size / frame.size if frame.full_size else 1.0
        chain_frame = _frame(site, PARTICLE_PLATE)
        return _per_datapoint(log_prob / scale, chain_frame.dim, frame.dim).expand(self.chains, len(self.x))

    def _reduce(self, ladj, layout):
        return ladj.movedim((layout.chain_dim, layout.data_dim), (0, 1)).reshape(self.chains, len(self.x), -1).sum(-1)



def log_f(parts, beta):
    """``log f_beta`` per (chain, point) from :meth:`AnnealingPath.log_densities`' parts."""
    base, joint, log_jacobian = parts
    return base + beta * (joint - base) + log_jacobian


def hmc_transition(path, u, parts, beta, step_size, leapfrog_steps):
    r"""One Metropolis-adjusted HMC move of every chain, invariant for :math:`f_\beta` (identity mass matrix).

    :param u: ``(M, B, D)`` positions, and ``parts`` their :meth:`AnnealingPath.log_densities`.
    :param step_size: ``(B,)``, one per data point.
    :returns: ``(u, parts, accepted)`` after the move; ``accepted`` is ``(M, B)`` booleans.
    """
    proposal = {}

    def potential(state):
        proposal["parts"] = path.log_densities(state["u"])
        return -log_f(proposal["parts"], beta).sum()

    momentum = torch.randn_like(u)
    # a trajectory may leave the support's numerical range (a rate that underflows to 0): it is then rejected
    # below, so its distributions are not validated (the caller's setting checked the starting point)
    with torch.enable_grad(), pyro.validation_enabled(False):
        position, moved, _, _ = velocity_verlet({"u": u.detach()}, {"u": momentum}, potential, lambda r: r,
                                                step_size[None, :, None], leapfrog_steps)
    new_parts = tuple(part.detach() for part in proposal["parts"])
    log_accept = (log_f(new_parts, beta) - 0.5 * (moved["u"].detach() ** 2).sum(-1)) - (
        log_f(parts, beta) - 0.5 * (momentum**2).sum(-1))
    log_accept = torch.nan_to_num(log_accept, nan=-math.inf)  # a diverged trajectory is rejected
    accepted = torch.log(torch.rand_like(log_accept)) < log_accept
    u = torch.where(accepted[..., None], position["u"].detach(), u)
    parts = tuple(torch.where(accepted, new, old) for new, old in zip(new_parts, parts))
    return u, parts, accepted
