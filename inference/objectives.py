"""Objectives by name, their capabilities, and the checks of which combinations are valid.

The objectives, their estimators, what each can do and its K by default are listed on the :doc:`parts page </parts>`,
written from :data:`OBJECTIVES` and each class's :class:`Capabilities`: an objective registered here appears there and
in ``--objective`` with nothing else to edit.

One grammar everywhere (``fit``, ``compare``, the CLI, Python): ``NAME`` or ``NAME:K``
(``iwae:50``), or an ``ELBO`` instance.  What an objective can do is declared on its class
(:class:`Capabilities`, read by :func:`capabilities`), so a user's subclass of
:class:`~pyro_vae.inference.iwae.IWAE`, passed as an instance, is importance-weighted because it is one.
"""

from dataclasses import dataclass

import pyro
from pyro import poutine

from pyro_vae import checks
from pyro_vae.errors import ConfigError
from pyro_vae.kl import kl_path, min_particles_for_finite_bound
from pyro_vae.registry import Registry

from .iwae import IWAE
from .mean_field import MeanFieldELBO
from .path_gradients import IWAEDReG, STL
from .plates import global_latents
from .traces import (family_name, guide_dependences, mean_field_valid, random_state_kept, refuse_unreparameterised,
                     trace_pair)


@dataclass(frozen=True)
class Capabilities:
    """What an objective is, read from attributes of its class (defaults: a Monte Carlo ELBO).

    :ivar importance_weighted: the bound is a log-mean-exp of K importance weights (the K-particle
        tail rule applies, not a finite KL; every latent must be local to a data point).
    :ivar default_particles: K when none is given.
    :ivar path_derivative: the gradient keeps only the path derivative through the guide's draws
        (the guide's sites must be reparameterisable transforms of a parameter-free base).
    :ivar kl: how the KL term is computed: ``monte-carlo``, ``analytic-where-registered``,
        ``inside-weights`` or ``enumerated``.
    :ivar reparameterised_only: the gradient has no score-function term, so it is right only when every
        latent site of the guide is reparameterised (Pyro's ``TraceMeanField_ELBO`` checks this only with
        validation on; with it off it returns the gradient of the KL term alone).
    :ivar independent_guide_sites: the gradient is unbiased only when no latent site of the guide takes
        another latent draw as input (a guide q(z2 | z1, x) is refused, :func:`~.traces.guide_dependences`).
    """

    importance_weighted: bool = False
    default_particles: int = 1
    path_derivative: bool = False
    kl: str = "monte-carlo"
    reparameterised_only: bool = False
    independent_guide_sites: bool = False


#: Pyro's own estimators cannot carry our attributes; their capabilities, by class (subclasses included).
_PYRO_CAPABILITIES = {
    pyro.infer.TraceMeanField_ELBO: {"kl": "analytic-where-registered", "reparameterised_only": True},
    pyro.infer.TraceEnum_ELBO: {"kl": "enumerated"},
}


def capabilities(objective):
    """:class:`Capabilities` of an ``ELBO`` instance or class, from attributes declared on its class."""
    cls = objective if isinstance(objective, type) else type(objective)
    declared = {}
    for base, values in _PYRO_CAPABILITIES.items():
        if issubclass(cls, base):
            declared.update(values)
    for key in Capabilities.__dataclass_fields__:
        if hasattr(cls, key):
            declared[key] = getattr(cls, key)
    return Capabilities(**declared)


OBJECTIVES = Registry("objective")
OBJECTIVES.register("elbo", about="Pyro's ELBO, its KL term by Monte Carlo (Kingma & Welling 2014)")(pyro.infer.Trace_ELBO)
OBJECTIVES.register("meanfield")(MeanFieldELBO)
OBJECTIVES.register("iwae")(IWAE)
OBJECTIVES.register("stl")(STL)
OBJECTIVES.register("iwae-dreg")(IWAEDReG)
OBJECTIVES.register("enum", about="Pyro's ELBO with the discrete sites marked for enumeration summed out exactly (the "
                    "Gaussian mixture)")(pyro.infer.TraceEnum_ELBO)


def _check_particles(particles):
    return checks.positive_int("particles", particles)


def parse_objective(spec, particles=None):
    """``"iwae:50"`` -> ``("iwae", 50)``; ``"elbo"`` -> ``("elbo", 1)``: the name and K.

    K comes from the spec, else ``particles``, else the class's ``default_particles``; a spec's K
    and a different ``particles`` are refused as a contradiction.
    """
    text = str(spec)
    name, colon, count = text.partition(":")
    cls = OBJECTIVES.get(name)
    if colon:
        try:
            k = _check_particles(int(count) if count.strip().lstrip("+").isdigit() else float("nan"))
        except ConfigError:
            raise ConfigError(f"objective {text!r}: expected NAME or NAME:K with K a positive integer, e.g. iwae:50") from None
        if particles is not None and _check_particles(particles) != k:
            raise ConfigError(f"objective {text!r} names {k} particles but particles={particles} was given; give K once")
        return name, k
    if particles is not None:
        return name, _check_particles(particles)
    return name, capabilities(cls).default_particles


def make_objective(objective="elbo", particles=None, data_plate=None):
    """An ELBO instance from a spec ``NAME`` or ``NAME:K`` (an ``ELBO`` instance is returned as is).

    :param data_plate: passed to importance-weighted objectives (None: they find the plate per call).
    """
    if not isinstance(objective, str):
        if not isinstance(objective, pyro.infer.ELBO):
            raise ConfigError(f"objective must be a name ({', '.join(OBJECTIVES.names())}), NAME:K, or a pyro.infer.ELBO "
                              f"instance; got {type(objective).__name__}")
        if not callable(getattr(objective, "differentiable_loss", None)):  # Pyro's RenyiELBO, TraceGraph_ELBO, ...
            raise ConfigError(f"objective {type(objective).__name__} has no differentiable_loss, which fit and its checks "
                              f"need; use a registered name ({', '.join(OBJECTIVES.names())}) or an ELBO that has one")
        return objective
    name, k = parse_objective(objective, particles)
    cls = OBJECTIVES.get(name)
    if capabilities(cls).importance_weighted:
        return cls(num_particles=k, data_plate=data_plate)
    return cls(num_particles=k, vectorize_particles=k > 1)


def _latent_pairs(model_trace, guide_trace):
    """(name, guide distribution, model distribution) for every latent site."""
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and name in guide_trace.nodes:
            yield name, guide_trace.nodes[name]["fn"], site["fn"]


def check_objective(elbo, model, guide, x, data_plate):
    """Refuse a combination whose objective is infinite or undefined, and say how each KL is computed.

    Uses the tail rule of :mod:`pyro_vae.kl`: a KL objective (``elbo``, ``meanfield``) needs a finite
    KL; an importance-weighted one with K particles needs K at least the minimum for a finite bound,
    and every latent site inside the data plate.  Then the loss is computed once (random streams
    kept), so that a guide an estimator cannot serve is refused before anything is written.

    :param elbo: an ELBO instance (:func:`make_objective`).
    :returns: ``{site: "analytic" | "monte-carlo"}``, the KL path ``meanfield`` takes per site.
    :raises ConfigError: naming the objective, the site, the two families and what would be valid.
    """
    name = _describe(elbo)
    able = capabilities(elbo)
    with random_state_kept(x.device), poutine.block():
        model_trace, guide_trace = trace_pair(model, guide, x)
        if able.importance_weighted:
            outside = global_latents(model_trace, guide_trace, data_plate)
            if outside:
                raise ConfigError(
                    f"{name}: latent site {outside[0]!r} is outside the data plate {data_plate!r}; an importance-weighted "
                    f"bound needs every latent local to a data point (a global latent couples them): use elbo, meanfield or stl"
                )
        if able.reparameterised_only:
            for site_name, site in guide_trace.nodes.items():
                if site["type"] == "sample" and not site["is_observed"]:
                    refuse_unreparameterised(name, site_name, site)
        if able.independent_guide_sites:
            dependent = guide_dependences(guide, x)
            if dependent:
                site, inputs = next(iter(dependent.items()))
                raise ConfigError(
                    f"{name}: guide site {site!r} takes the draw of {inputs[0]!r} as input, and {name}'s gradient holds only "
                    f"for guide sites independent given x (it is biased here); use iwae:{elbo.num_particles} (the same bound, "
                    f"its plain gradient) or stl")
        paths = {}
        closed_form = mean_field_valid(model_trace, guide_trace)
        for site, q, p in _latent_pairs(model_trace, guide_trace):
            needed = min_particles_for_finite_bound(q, p)
            pair = f"{family_name(q)} guide -> {family_name(p)} prior at site {site!r}"
            if needed is not None and needed > 1:
                if not able.importance_weighted:
                    raise ConfigError(
                        f"{name} is -inf for a {pair}: KL(q || p) is infinite because E_q[-log p(z)] diverges under the "
                        f"guide's heavy tails; use a cauchy or studentt prior, a normal guide, or --objective iwae:{needed} or more"
                    )
                if elbo.num_particles < needed:
                    raise ConfigError(
                        f"{name} with {elbo.num_particles} particle(s) is -inf for a {pair}: the prior's log-density falls "
                        f"faster than the guide's tails allow; use --particles {needed} or more"
                    )
            paths[site] = kl_path(q, p) if closed_form else "monte-carlo"
        elbo.differentiable_loss(model, guide, x)  # with its graph: some estimators refuse to run without
    return paths


def _describe(elbo):
    for name in OBJECTIVES.names():
        if type(elbo) is OBJECTIVES.get(name):
            return f"{name}:{elbo.num_particles}" if elbo.num_particles > 1 or capabilities(elbo).importance_weighted else name
    return type(elbo).__name__

