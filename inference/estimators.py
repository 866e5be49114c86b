r"""The estimators of a fitted pair's numbers, each with its Monte Carlo standard error.

ELBO terms, in nats per data point, with :math:`\beta = 1` and no subsample scaling whatever objective
trained the pair:

.. math::

    \mathrm{ELBO}(x) = \underbrace{E_{q(z\mid x)}[\log p(x \mid z)]}_{\text{reconstruction}}
        - \underbrace{\mathrm{KL}(q(z \mid x) \,\|\, p(z))}_{\text{KL}},

each expectation estimated from S draws per data point (the KL in closed form or by quadrature where
one is registered for the (guide, prior) pair, then exactly, else by Monte Carlo from the same draws).
The standard error is the Monte Carlo one of the mean over the given points,
:math:`\mathrm{se} = \sqrt{\sum_i \widehat{\mathrm{Var}}_s(\ell_{is}) / S} / N`: the points are fixed,
only the draws vary.  A (guide, prior) pair whose KL is infinite (:mod:`pyro_vae.kl`: a Cauchy guide
against a Normal prior) has ELBO :math:`-\infty`, reported so with the reason, although every finite
sample of its Monte Carlo KL is finite.

The log importance weights of K draws per point (:func:`importance_log_weights`), from which
:mod:`~pyro_vae.inference.weights` makes the importance-sampled :math:`\log p(x)` (Burda et al. 2016) and its
errors.

This is the one place these numbers are computed: ``fit``'s validation and final metrics,
``evaluate``, ``compare``, ``compare-runs`` and the studies call these functions.
"""

import math
from pathlib import Path

import pyro
import torch
from pyro.infer.util import is_validation_enabled
from torch.distributions.kl import kl_divergence

from pyro_vae import checks
from pyro_vae.errors import RunDirError, UnsafeFileError
from pyro_vae.files import load_tensors, save_tensors
from pyro_vae.kl import base_distribution, min_particles_for_finite_bound

from .iwae import IWAE
from .plates import data_plate_of, find_data_plate, is_local
from .traces import mean_field_valid, random_state_kept, trace_pair

#: The standard error the default number of ELBO draws aims at, in nats per data point.
TARGET_SE = 0.006  # so that the error, itself estimated from the draws, stays under 0.01
#: Pilot draws per point that size the default S, and the most draws per point it may choose.
PILOT_DRAWS, MAX_DRAWS = 8, 1000
TERMS = ("reconstruction", "kl", "elbo")


def _kl_terms(guide_site, model_site, closed_form):
    """The KL term of a latent site per element of its batch shape: in closed form where registered and
    ``closed_form`` (:func:`~.traces.mean_field_valid`: the model's density at the site depends only on
    latents drawn before it), else the Monte Carlo term log q - log p at the draw."""
    if closed_form:
        try:
            return kl_divergence(guide_site["fn"], model_site["fn"])
        except NotImplementedError:
            pass
    value = guide_site["value"]
    return guide_site["fn"].log_prob(value) - model_site["fn"].log_prob(value)


def _has_enumerated_sites(model_trace, guide_trace):
    return any(site["type"] == "sample" and site["infer"].get("enumerate") and name not in guide_trace.nodes
               for name, site in model_trace.nodes.items())


def _enumerated_elbo(model, guide, x, batch_size):
    """ELBO per data point with the model's enumerated sites summed out exactly (``TraceEnum_ELBO``)."""
    elbo = pyro.infer.TraceEnum_ELBO()
    return -sum(elbo.loss(model, guide, batch) for batch in x.split(batch_size)) / len(x)


def infinite_kl(model_trace, guide_trace):
    """Why the ELBO is :math:`-\\infty` (a latent site whose KL is infinite by the tails of its pair), or None."""
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and name in model_trace.nodes:
            q, p = base_distribution(site["fn"]), base_distribution(model_trace.nodes[name]["fn"])
            needed = min_particles_for_finite_bound(q, p)
            if needed is not None and needed > 1:
                return (f"KL(q || p) at site {name!r} is infinite: a {type(q).__name__} guide's tails are too heavy for a "
                        f"{type(p).__name__} prior, so the ELBO is -inf (its Monte Carlo estimate is finite for every "
                        "sample, and meaningless)")
    return None


def _per_point(term, site, data_plate, rows):
    """A local site's term summed over everything but the data plate: shape ``(rows,)``."""
    dim = next(frame.dim for frame in site["cond_indep_stack"] if frame.name == data_plate)
    term = term.expand(*([1] * max(0, -dim - term.dim())), *term.shape) if term.dim() < -dim else term
    return term.movedim(dim, 0).reshape(term.shape[dim], -1).sum(1).expand(rows)


def _trace_terms(model, guide, batch, data_plate):
    """One traced draw: per-row reconstruction and KL ``(2, rows)``, and the global sites' ``(2,)``."""
    model_trace, guide_trace = trace_pair(model, guide, batch)
    local = torch.zeros(2, len(batch), dtype=torch.float64, device=batch.device)
    once = torch.zeros(2, dtype=torch.float64, device=batch.device)
    closed_form = mean_field_valid(model_trace, guide_trace)
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        key = 0 if site["is_observed"] else 1
        term = site["fn"].log_prob(site["value"]) if key == 0 else _kl_terms(guide_trace.nodes[name], site, closed_form)
        if is_local(site, data_plate):
            local[key] += _per_point(term, site, data_plate, len(batch)).double()
        else:
            once[key] += term.sum().double()
    return local, once, model_trace, guide_trace


class _ElboDraws:
    """Running sums of one pair's ELBO terms over draws, per data point and per batch and draw."""

    def __init__(self, model, guide, x, batch_size, data_plate, has_globals):
        self.pair, self.data_plate, self.n, self.rows_per_trace = (model, guide), data_plate, len(x), batch_size
        self.batches = list(x.split(batch_size))
        zeros = [torch.zeros(3, len(b), dtype=torch.float64, device=x.device) for b in self.batches]
        self.sums, self.squares = zeros, [z.clone() for z in zeros]
        self.totals = [[] for _ in self.batches]  # per draw: the batch's (3,) share of the data set's terms
        self.global_kl = [[] for _ in self.batches]
        self.draws, self.infinite, self._checked, self.has_globals = 0, None, False, has_globals

    def add(self, draws):
        for b, batch in enumerate(self.batches):
            done = 0
            while done < draws:
                # Without global sites the rows are independent: t copies of a batch in one trace are t draws.
                t = 1 if self.has_globals else max(1, min(draws - done, self.rows_per_trace // len(batch)))
                self._add_trace(b, batch, t)
                done += t
        self.draws += draws

    def _add_trace(self, b, batch, copies):
        tiled = batch.repeat(copies, *([1] * (batch.dim() - 1))) if copies > 1 else batch
        local, once, model_trace, guide_trace = _trace_terms(*self.pair, tiled, self.data_plate)
        if not self._checked:  # a named plate is checked on the first traced batch
            data_plate_of(model_trace, len(tiled), self.data_plate)
            self.infinite = infinite_kl(model_trace, guide_trace)
            self._checked = True
        rows = torch.stack([local[0], local[1], local[0] - local[1]]).reshape(3, copies, len(batch))
        self.sums[b] += rows.sum(1)
        self.squares[b] += (rows**2).sum(1)
        share = len(batch) / self.n  # a global site's terms count once per data set
        totals = rows.sum(2) + share * torch.stack([once[0], once[1], once[0] - once[1]])[:, None]
        self.totals[b].extend(totals.T)
        self.global_kl[b].append(share * once[1])

    def mean_and_se(self):
        """Per data point: the (3,) means of reconstruction, KL, ELBO and their Monte Carlo errors."""
        s = self.draws
        mean = sum(torch.stack(t).mean(0) for t in self.totals) / self.n
        if s < 2:
            return mean, torch.full_like(mean, math.nan)
        if self.has_globals:  # draws of the globals couple a batch's points: its totals are the iid unit
            variance = sum(torch.stack(t).var(0) for t in self.totals)
        else:
            variance = sum(((q - m**2 / s) / (s - 1)).clamp(min=0).sum(1) for m, q in zip(self.sums, self.squares))
        return mean, (variance / s).sqrt() / self.n

    def draws_for(self, target):
        """Draws per point for an ELBO standard error of about ``target`` (:data:`MAX_DRAWS` at most)."""
        se = self.mean_and_se()[1][2].item()
        if not math.isfinite(se):
            return self.draws
        return min(MAX_DRAWS, max(self.draws, math.ceil(self.draws * (se / target) ** 2)))

    def result(self):
        mean, se = self.mean_and_se()
        result = {"draws": self.draws}
        for index, name in enumerate(TERMS):
            result[name], result[f"{name}_mc_se"] = mean[index].item(), se[index].item()
        if self.has_globals:
            result["global_kl"] = sum(torch.stack(g).mean().item() for g in self.global_kl)
            result["local_kl"] = result["kl"] - result["global_kl"] / self.n
        if self.infinite is not None:
            result.update(kl=math.inf, elbo=-math.inf, kl_mc_se=math.nan, elbo_mc_se=math.nan, infinite=self.infinite)
        return result


@torch.no_grad()
def elbo_terms(model, guide, x, batch_size=1000, particles=None, data_plate=None):
    """Mean ``elbo``, ``reconstruction`` and ``kl`` per data point of ``x`` and their Monte Carlo standard
    errors ``*_mc_se`` (floats, nats; module doc), from ``draws`` draws per point.

    :param particles: draws S per data point.  None: :data:`PILOT_DRAWS` draws estimate the error, which
        sets S for an ELBO error of about :data:`TARGET_SE` (at most :data:`MAX_DRAWS`; the pilot draws
        count among the S, which are fixed before the rest are drawn).  One draw gives no error (NaN).

    ``x`` is split into batches of ``batch_size`` so memory stays bounded.  Sites inside the data plate
    (found whatever its name, or ``data_plate``) are summed over the data points; a site outside it
    (a global latent: a hierarchical prior, a learned global scale) is counted once per data set, its
    terms weighted by each batch's share of the points (each batch draws the globals afresh), whatever
    ``batch_size``.  Then ``kl`` includes ``global_kl / N``, and ``local_kl`` (per point) and
    ``global_kl`` (nats for the whole data set) are reported too.  A KL that is infinite by the tails of
    its (guide, prior) pair gives ``kl = inf``, ``elbo = -inf`` and the reason under ``infinite``.  A
    model with sites marked for enumeration (and absent from the guide) gets only ``elbo``, with those
    sites summed out exactly: no KL term is defined.
    """
    with random_state_kept(x.device):  # a look at the sites must not shift the random stream
        model_trace, guide_trace = trace_pair(model, guide, x[:1])
    if _has_enumerated_sites(model_trace, guide_trace):
        return {"elbo": _enumerated_elbo(model, guide, x, batch_size), "draws": 1, "elbo_mc_se": math.nan}
    if data_plate is None:
        data_plate = find_data_plate(model, guide, x[:batch_size])
    has_globals = any(site["type"] == "sample" and not is_local(site, data_plate) for site in model_trace.nodes.values())
    draws = _ElboDraws(model, guide, x, batch_size, data_plate, has_globals)
    if particles is not None:
        checks.check_work({"points": len(x), "draws a point": checks.positive_int("particles", particles)}, "the ELBO terms")
    draws.add(PILOT_DRAWS if particles is None else particles)
    needed = draws.draws_for(TARGET_SE) if particles is None else draws.draws
    if needed > draws.draws:
        draws.add(needed - draws.draws)
    return draws.result()


# ---------------------------------------------------------------- importance-sampled log-likelihood

#: Bytes assumed per (particle, data point, data feature) when sizing chunks: logits, log-densities
#: and the decoder's last activations in float32, with room to spare.
BYTES_PER_PARTICLE_FEATURE = 32

#: Default memory per chunk of importance samples.  Smaller chunks stay in cache and reuse the
#: allocator's blocks: on 2 CPU cores (784-400-20, K = 1000) 128 MiB chunks ran 1.75-1.95x faster than
#: 1 GiB ones (``benchmarks/bench_loglik_throughput.py --max-memory``; 64 MiB and 256 MiB were slower).
DEFAULT_MAX_MEMORY = 2**27


@torch.no_grad()
def importance_log_weights(model, guide, x, particles=1000, max_memory=DEFAULT_MAX_MEMORY, data_plate=None, seed=None,
                           checkpoint=None):
    r"""Log importance weights :math:`\log p(x_i, z_{ik}) - \log q(z_{ik} \mid x_i)`, shape ``(N, K)``.

    Draws :math:`z_{ik} \sim q(z \mid x_i)` with vectorised particles (the same machinery as
    :class:`~pyro_vae.inference.iwae.IWAE`), in chunks of data points and particles sized so that one
    chunk needs about ``max_memory`` bytes, whatever K and N.

    :param seed: seed each chunk of data points by ``(seed, chunk)``, so a resumed evaluation draws
        what an uninterrupted one would (default: the global random stream, unseeded).
    :param checkpoint: file to keep finished chunks in (written atomically after each); an
        interrupted evaluation called again with the same file, data, K and seed continues where it
        stopped and returns the same weights.
    """
    particles = checks.positive_int("particles", particles)
    max_memory = checks.positive_int("max_memory", max_memory)
    checks.check_finite(x, "data")
    checks.check_memory(len(x) * particles * x.element_size(), f"the ({len(x)}, {particles}) log importance weights of "
                        f"{len(x)} data points at K = {particles}", x.device)
    per_pair = BYTES_PER_PARTICLE_FEATURE * max(1, x[0].numel())
    points = max(1, min(len(x), int(max_memory // (per_pair * min(particles, 100)))))
    chunk = max(1, min(particles, int(max_memory // (per_pair * points))))
    key = {"num_datapoints": len(x), "particles": particles, "points": points, "seed": seed}
    rows = load_chunks(checkpoint, key, x.device)
    estimators = {}
    for k in {chunk, particles % chunk} - {0}:
        # a first call settles max_plate_nesting (drawing once), so that seeded chunks draw alike
        estimators[k] = IWAE(num_particles=k, data_plate=data_plate)
        estimators[k].log_weights(model, guide, x[:points])  # a chunk of points, as a guide built for them expects
    # Every data point's first chunk of particles runs with the caller's validation setting (its data
    # and distribution parameters checked); its further chunks repeat the same distributions for other
    # draws and skip the argument and support checks (8% faster at K = 1000).
    validate = is_validation_enabled()
    for index, batch in enumerate(x.split(points)):
        if index < len(rows):
            continue
        if seed is not None:
            pyro.set_rng_seed((seed * 1_000_003 + index) % 2**32)
        columns, done = [], 0
        while done < particles:
            k = min(chunk, particles - done)
            with pyro.validation_enabled(validate and done == 0):
                log_w, _ = estimators[k].log_weights(model, guide, batch)
            columns.append(log_w.T)
            done += k
        rows.append(torch.cat(columns, dim=1))
        if checkpoint is not None:
            save_chunks(checkpoint, key, rows)
    return torch.cat(rows)


def load_chunks(path, key, device):
    """The finished chunks kept in ``path`` by an evaluation with the same ``key`` (its data, sizes and seed), or
    none: a missing, torn or foreign file starts over; a planted pickle is refused."""
    if path is None or not Path(path).exists():
        return []
    try:
        state = load_tensors(path, map_location=device)  # a planted pickle is refused (UnsafeFileError), never run
    except UnsafeFileError:
        raise
    except RunDirError:  # a torn or foreign file: start over rather than trust it
        return []
    if not isinstance(state, dict) or state.get("key") != key or not isinstance(state.get("rows"), list):
        return []  # another evaluation's chunks: start over
    return list(state["rows"])


def save_chunks(path, key, rows):
    """Keep the finished chunks ``rows`` (tensors) under ``key`` in ``path``, atomically."""
    state = {"key": key, "rows": [row.cpu() for row in rows]}
    save_tensors(path, state)
