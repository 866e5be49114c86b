"""Objectives by name, and the checks of which (guide, prior, objective) combinations are valid.

=========== ============================================================ =======================
name        Pyro estimator                                               KL term
=========== ============================================================ =======================
elbo        ``pyro.infer.Trace_ELBO``                                    Monte Carlo
meanfield   :class:`~pyro_vae.inference.mean_field.MeanFieldELBO`        analytic where a KL is
            (``TraceMeanField_ELBO``, scoring only what it reads)        registered, else Monte Carlo
iwae        :class:`~pyro_vae.inference.iwae.IWAE` (K particles)          inside the weights
stl         :class:`~pyro_vae.inference.path_gradients.STL`: the ELBO,    Monte Carlo, path
            gradient without the score term (Roeder et al. 2017)         derivative only
iwae-dreg   :class:`~pyro_vae.inference.path_gradients.IWAEDReG`: IWAE,   inside the weights
            doubly reparameterised gradient (Tucker et al. 2019)
enum        ``pyro.infer.TraceEnum_ELBO``: discrete sites marked for     exact sums over the
            enumeration are summed out (the Gaussian mixture)            enumerated sites
=========== ============================================================ =======================

With ``particles = K > 1`` the ELBOs average K vectorised draws; IWAE takes the log-mean-exp.
A spec ``"name:K"`` (``iwae:50``) names an objective and its particles at once (:func:`parse_objective`).
"""

import pyro
from pyro import poutine

from pyro_vae.errors import ConfigError
from pyro_vae.kl import base_distribution, kl_path, min_particles_for_finite_bound
from pyro_vae.registry import Registry

from .iwae import IWAE
from .mean_field import MeanFieldELBO
from .path_gradients import IWAEDReG, STL
from .traces import trace_pair

OBJECTIVES = Registry("objective")


def _check_particles(particles):
    if isinstance(particles, bool) or int(particles) != particles or particles < 1:
        raise ConfigError(f"particles must be a positive integer, got {particles!r}")
    return int(particles)


@OBJECTIVES.register("elbo")
def _elbo(particles=1):
    return pyro.infer.Trace_ELBO(num_particles=particles, vectorize_particles=particles > 1)


@OBJECTIVES.register("meanfield")
def _meanfield(particles=1):
    return MeanFieldELBO(num_particles=particles, vectorize_particles=particles > 1)


@OBJECTIVES.register("iwae")
def _iwae(particles=5):
    return IWAE(num_particles=particles)


@OBJECTIVES.register("stl")
def _stl(particles=1):
    return STL(num_particles=particles, vectorize_particles=particles > 1)


@OBJECTIVES.register("iwae-dreg")
def _iwae_dreg(particles=5):
    return IWAEDReG(num_particles=particles)


#: Objectives whose bound is importance-weighted (the K-particle tail rule applies, not a finite KL).
IMPORTANCE_WEIGHTED = ("iwae", "iwae-dreg", "IWAE", "IWAEDReG")


@OBJECTIVES.register("enum")
def _enum(particles=1):
    return pyro.infer.TraceEnum_ELBO(num_particles=particles, vectorize_particles=particles > 1)


def parse_objective(spec):
    """``"iwae:50"`` -> ``("iwae", 50)``; ``"elbo"`` -> ``("elbo", None)`` (the objective's default K)."""
    name, _, particles = str(spec).partition(":")
    OBJECTIVES.get(name)
    if not particles:
        return name, None
    try:
        return name, _check_particles(int(particles))
    except (ValueError, ConfigError):
        raise ConfigError(f"objective {spec!r}: expected NAME or NAME:K with K a positive integer, e.g. iwae:50") from None


def default_particles(name):
    """K when none is given: 5 for the importance-weighted objectives, else 1."""
    return 5 if name in IMPORTANCE_WEIGHTED else 1


def make_objective(objective="elbo", particles=1):
    """An ELBO instance from a registered name (an ``ELBO`` instance is returned as is)."""
    if not isinstance(objective, str):
        return objective
    return OBJECTIVES.get(objective)(particles=_check_particles(particles))


def _latent_pairs(model, guide, x):
    """(name, guide distribution, model distribution) for every latent site, from one traced pass."""
    with poutine.block():
        model_trace, guide_trace = trace_pair(model, guide, x)
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and name in guide_trace.nodes:
            yield name, guide_trace.nodes[name]["fn"], site["fn"]


def check_objective(objective, particles, model, guide, x):
    """Refuse a combination whose objective is infinite, and say how each KL is computed.

    Uses the tail rule of :mod:`pyro_vae.kl`: a KL objective (``elbo``, ``meanfield``) needs a
    finite KL; ``iwae`` with K particles needs K at least the minimum for a finite bound.

    :returns: ``{site: "analytic" | "monte-carlo"}``, the KL path ``meanfield`` takes per site.
    :raises ConfigError: naming the site, the two families and what would be valid.
    """
    name = objective if isinstance(objective, str) else type(objective).__name__
    paths = {}
    for site, q, p in _latent_pairs(model, guide, x):
        needed = min_particles_for_finite_bound(q, p)
        pair = f"{_family(q)} guide -> {_family(p)} prior at site {site!r}"
        if needed is not None and needed > 1:
            if name in IMPORTANCE_WEIGHTED:
                if particles < needed:
                    raise ConfigError(
                        f"{name} with {particles} particle(s) is -inf for a {pair}: the prior's log-density falls faster "
                        f"than the guide's tails allow; use --particles {needed} or more"
                    )
            else:
                raise ConfigError(
                    f"{name} is -inf for a {pair}: KL(q || p) is infinite because E_q[-log p(z)] diverges under the "
                    f"guide's heavy tails; use a cauchy or studentt prior, a normal guide, or --objective iwae "
                    f"with --particles {needed} or more"
                )
        paths[site] = kl_path(q, p)
    return paths


def _family(distribution):
    return type(base_distribution(distribution)).__name__

