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

import math
from pathlib import Path

import pyro
import pyro.distributions as dist
from pyro.infer.util import is_validation_enabled
import torch
from torch.distributions.kl import kl_divergence

from pyro_vae import checks
from pyro_vae.kl import base_distribution  # importing pyro_vae.kl registers the KLs torch lacks
from pyro_vae.errors import ConfigError, RunDirError, UnsafeFileError
from pyro_vae.contract import missing, owner_module
from pyro_vae.guides import location, scale
from pyro_vae.files import atomic_write, load_tensors, save_tensors

from .iwae import IWAE
from .plates import data_plate_of, find_data_plate, is_local, local_pair
from .traces import latent_site, observed_log_prob, random_state_kept, trace_pair


def _site_kl(guide_site, model_site):
    try:
        return kl_divergence(guide_site["fn"], model_site["fn"]).sum()
    except NotImplementedError:
        value = guide_site["value"]
        return (guide_site["fn"].log_prob(value) - model_site["fn"].log_prob(value)).sum()


def _has_enumerated_sites(model, guide, x):
    with random_state_kept(x.device):  # a look at the sites must not shift the random stream
        model_trace, guide_trace = trace_pair(model, guide, x)
    return any(site["type"] == "sample" and site["infer"].get("enumerate") and name not in guide_trace.nodes
               for name, site in model_trace.nodes.items())


def _enumerated_elbo(model, guide, x, batch_size):
    """ELBO per data point with the model's enumerated sites summed out exactly (``TraceEnum_ELBO``)."""
    elbo = pyro.infer.TraceEnum_ELBO()
    return -sum(elbo.loss(model, guide, batch) for batch in x.split(batch_size)) / len(x)


@torch.no_grad()
def elbo_terms(model, guide, x, batch_size=1000, particles=1, data_plate=None):
    """Mean ``elbo``, ``reconstruction`` and ``kl`` per data point of ``x`` (floats, nats).

    ``x`` is split into batches of ``batch_size`` so memory stays bounded.  Sites inside the data plate
    (found whatever its name, or ``data_plate``) are summed over the data points; a site outside it
    (a global latent: a hierarchical prior, a learned global scale) is counted once per data set, its
    term averaged over the batches (each draws the globals afresh), whatever ``batch_size``.  Then
    ``kl`` includes ``global_kl / N``, and ``local_kl`` (per point) and ``global_kl`` (nats for the whole
    data set) are reported too.  A model with sites marked for enumeration (and absent from the guide)
    gets only ``elbo``, with those sites summed out exactly: no KL term is defined.
    """
    if _has_enumerated_sites(model, guide, x[:1]):
        return {"elbo": _enumerated_elbo(model, guide, x, batch_size)}
    if data_plate is None:
        data_plate = find_data_plate(model, guide, x[:batch_size])
    local = {"reconstruction": 0.0, "kl": 0.0}
    once = {"reconstruction": 0.0, "kl": 0.0}  # sums over batches of the global sites' terms
    has_globals, batches = False, 0
    for batch in x.split(batch_size):
        batches += 1
        for _ in range(particles):
            model_trace, guide_trace = trace_pair(model, guide, batch)
            if batches == 1:  # a named plate is checked on the first traced batch
                data_plate_of(model_trace, len(batch), data_plate)
            for name, site in model_trace.nodes.items():
                if site["type"] != "sample":
                    continue
                if site["is_observed"]:
                    key, term = "reconstruction", site["fn"].log_prob(site["value"]).sum().item()
                else:
                    key, term = "kl", _site_kl(guide_trace.nodes[name], site).item()
                totals = local if is_local(site, data_plate) else once
                has_globals |= totals is once and key == "kl"
                totals[key] += term / particles
    n = len(x)
    result = {"reconstruction": (local["reconstruction"] + once["reconstruction"] / batches) / n,
              "kl": (local["kl"] + once["kl"] / batches) / n}
    if has_globals:
        result.update(local_kl=local["kl"] / n, global_kl=once["kl"] / batches)
    result["elbo"] = result["reconstruction"] - result["kl"]
    return result


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
    rows = _load_partial(checkpoint, key, x.device)
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
            _save_partial(checkpoint, key, rows)
    return torch.cat(rows)


def _load_partial(path, key, device):
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


def _save_partial(path, key, rows):
    state = {"key": key, "rows": [row.cpu() for row in rows]}
    save_tensors(path, state)


def log_likelihood(log_weights):
    r"""Importance-sampled :math:`\log p(x_i) \approx \log \frac1K \sum_k w_{ik}` (Burda et al. 2016)
    and its Monte Carlo standard error from ``(N, K)`` log weights.

    The standard error per data point is the delta-method one,
    :math:`\mathrm{se}_i = \sqrt{\widehat{\mathrm{Var}}(\tilde w) / K}` with
    :math:`\tilde w_k = w_k / \bar w`; the error of the mean over N points is
    :math:`\sqrt{\sum_i \mathrm{se}_i^2} / N`.  (It understates the error where the weights are
    heavy-tailed: read it beside PSIS :math:`\hat k`.)
    """
    num = log_weights.shape[1]
    per_point = torch.logsumexp(log_weights, dim=1) - math.log(num)
    relative = torch.exp(log_weights - per_point[:, None] - math.log(num)) * num  # w / mean(w)
    variance = ((relative - 1) ** 2).sum(1) / max(num - 1, 1) / num
    return {
        "per_datapoint": per_point,
        "per_datapoint_mc_se": variance.sqrt(),
        "log_likelihood": per_point.mean().item(),
        "log_likelihood_mc_se": (variance.sum().sqrt() / len(per_point)).item(),
    }


# ---------------------------------------------------------------- per-latent statistics


@torch.no_grad()
def latent_statistics(model, guide, x, site=None, batch_size=1000, active_threshold=0.01):
    r"""Per latent coordinate j, over the data points x (seed 000, Table 1 and Section 4):

    * ``var_mu``: :math:`\mathrm{Var}_x(\mu_j(x))`, the spread of the posterior means;
      the coordinate is ``active`` when it exceeds ``active_threshold`` (Burda et al. 2016's
      :math:`\mathrm{Cov}_x(E_q[z_j]) > 0.01`);
    * ``mean_sigma2``: :math:`E_x[\sigma_j^2(x)]`;  ``moment_sum``: their sum, the variance of the
      aggregate posterior :math:`q(z_j) = E_x q(z_j \mid x)`, which is 1 when the KL term works;
    * ``mean_mu``: :math:`E_x[\mu_j(x)]`, which should be 0;
    * ``kl``: :math:`E_x \mathrm{KL}(q(z_j \mid x) \| p(z_j))` (closed form where registered, else the
      Monte Carlo term of one draw; NaN for a prior that does not factorise).

    For a guide without mean and variance (Cauchy) :math:`\mu` and :math:`\sigma` are its location
    and scale; ``moments`` says which was used.  A correlated (multivariate normal) guide is read
    through its marginals, so ``kl`` is then the KL of each marginal.
    """
    locs, scales, kls, moments = [], [], [], None
    for batch in x.split(batch_size):
        model_trace, guide_trace = trace_pair(model, guide, batch)
        node = latent_site(guide_trace, site)
        q, p = base_distribution(node["fn"]), base_distribution(model_trace.nodes[node["name"]]["fn"])
        if isinstance(q, dist.MultivariateNormal):  # per coordinate: its marginals
            q = dist.Normal(q.loc, q.stddev)
        locs.append(location(q))
        scales.append(scale(q))
        moments = "mean/sd" if isinstance(q, dist.Normal) else "location/scale"
        kls.append(_per_coordinate_kl(q, p, node["value"]))
    loc, sd, kl = torch.cat(locs), torch.cat(scales), torch.cat(kls)
    var_mu = loc.var(0, unbiased=False)
    mean_sigma2 = (sd**2).mean(0)
    active = var_mu > active_threshold
    return {
        "var_mu": var_mu.tolist(),
        "mean_sigma2": mean_sigma2.tolist(),
        "moment_sum": (var_mu + mean_sigma2).tolist(),
        "mean_mu": loc.mean(0).tolist(),
        "kl": kl.mean(0).tolist(),
        "active": active.tolist(),
        "active_units": int(active.sum()),
        "moments": moments,
        "site": node["name"],
    }


def _per_coordinate_kl(q, p, value):
    if isinstance(p, dist.MixtureSameFamily):
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
    :math:`z_j = ` the prior's location (0 for the built-in priors),
    :math:`\mathrm{gain}_j = E_x[-\log p(x \mid z^{(j)})] - E_x[-\log p(x \mid z)]`, in nats per data
    point (seed 000, Section 5: a latent collapses when its gain falls below its KL).
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
    base = base_distribution(prior)
    loc = getattr(base, "loc", None)
    if loc is None:  # a mixture: its mean
        loc = prior.mean
    return loc.expand(like.shape)


@torch.no_grad()
def aggregate_posterior(stats, model, guide, x, site=None):
    r"""First two moments of the aggregate posterior :math:`q(z) = E_x q(z \mid x)` against the prior's.

    Mean :math:`E_x \mu(x)` and variance :math:`\mathrm{Var}_x \mu(x) + E_x \sigma^2(x)` per
    coordinate (from :func:`latent_statistics`), beside the prior's mean and variance (NaN or inf
    where the prior has none, e.g. Cauchy).
    """
    model_trace, guide_trace = trace_pair(model, guide, x[:2])
    prior = model_trace.nodes[latent_site(guide_trace, site)["name"]]["fn"]
    prior_mean, prior_variance = prior.mean, prior.variance
    while prior_mean.dim() > 1:
        prior_mean, prior_variance = prior_mean[0], prior_variance[0]
    return {
        "mean": stats["mean_mu"],
        "variance": stats["moment_sum"],
        "prior_mean": prior_mean.tolist(),
        "prior_variance": prior_variance.tolist(),
    }


# ---------------------------------------------------------------- everything at once


def evaluate(model, guide, x, *, particles=1000, max_memory=DEFAULT_MAX_MEMORY, site=None, module=None, out=None,
             inference_points=20, draws=1000, chains=4, alpha=1.0, seed=0, data_plate=None):
    r"""Evaluate a fitted model/guide pair on data ``x``: one call for every number of a run.

    Computes, in nats per data point: the ELBO and its terms (:func:`elbo_terms`; a global latent's
    KL counted once per data set), the importance-sampled log-likelihood with K = ``particles`` and
    its Monte Carlo error (:func:`log_likelihood`), PSIS k-hat per point and the PSIS log-likelihood
    (:func:`~pyro_vae.inference.diagnostics.psis`), per-latent statistics (:func:`latent_statistics`),
    reconstruction gains (:func:`reconstruction_gain`) and the aggregate-posterior moments
    (:func:`aggregate_posterior`); for an owner with ``generate`` and ``prior`` (the VAE), the mean
    absolute change of generated data when collapsed latents are set to 0.

    A pair with global latents (outside the data plate) gets its per-point quantities (log-likelihood,
    PSIS, latent statistics) *conditional on one draw of the globals from the guide*, recorded under
    ``conditioned_on``.  ``diagnostics`` lists what ran and what was skipped, with the reason
    (:mod:`pyro_vae.contract`).

    With ``out`` the importance weights are kept chunk by chunk in ``out/evaluation.partial.pt`` until
    the end, so an interrupted evaluation re-run with the same arguments resumes; it then writes
    ``evaluation.json``, ``posterior.nc`` (q(z|x) draws for the first
    ``inference_points`` points as ArviZ InferenceData) and figures under ``out/figures``.

    :returns: dict of the numbers (JSON-able), with ``khat`` and ``log_likelihood_per_datapoint`` lists.
    """
    from .diagnostics import psis

    module = owner_module(model, module)
    particles, inference_points = checks.positive_int("particles", particles), checks.positive_int("inference_points", inference_points)
    draws, chains = checks.positive_int("draws", draws), checks.positive_int("chains", chains)
    alpha, seed = checks.finite_float("alpha", alpha), checks.seed("seed", seed)
    checks.positive_int("max_memory", max_memory)
    dtype = checks.parameter_dtype(module)
    x = checks.as_data(x, "evaluation", dtype)
    if module is not None:
        check = getattr(module, "check_data", None)
        if check is not None:
            check(x)
        module.eval()
    pyro.set_rng_seed(seed)
    data_plate = find_data_plate(model, guide, x[:1000], data_plate)
    result = {"num_datapoints": len(x), "particles": int(particles), "data_plate": data_plate}
    ran, skipped = ["elbo"], {}
    result.update(elbo_terms(model, guide, x, data_plate=data_plate))
    model, guide, fixed = local_pair(model, guide, x[:1000], data_plate)
    if fixed:
        result["conditioned_on"] = {name: value.tolist() for name, value in fixed.items()}
    partial = Path(out) / "evaluation.partial.pt" if out is not None else None
    log_weights = importance_log_weights(model, guide, x, particles, max_memory, data_plate=data_plate, seed=seed,
                                         checkpoint=partial)
    estimate = log_likelihood(log_weights)
    smoothed = psis(log_weights)
    ran += ["importance-sampled log-likelihood", "PSIS"]
    result.update({
        "log_likelihood": estimate["log_likelihood"],
        "log_likelihood_mc_se": estimate["log_likelihood_mc_se"],
        "psis_log_likelihood": float(smoothed["psis_log_likelihood"].mean()),
        "fraction_khat_above_0.5": smoothed["fraction_khat_above_0.5"],
        "fraction_khat_above_0.7": smoothed["fraction_khat_above_0.7"],
    })
    stats = None
    try:
        stats = latent_statistics(model, guide, x, site)
    except ConfigError as error:  # several local latents and no site named
        skipped["per-latent statistics"] = str(error)
    if stats is not None:
        gains = reconstruction_gain(model, guide, x, site)
        result["latents"] = {**stats, "reconstruction_gain": gains["gain"]}
        result["active_units"] = stats["active_units"]
        result["aggregate_posterior"] = aggregate_posterior(stats, model, guide, x, site)
        ran += ["per-latent statistics", "reconstruction gains", "aggregate posterior"]
        reason = missing(module, "generate", "prior")
        if reason is None:
            result["collapsed_generation_mean_abs_difference"] = collapsed_generation_difference(module, stats["active"])
            ran.append("collapsed-latent generation")
        else:
            skipped["collapsed-latent generation"] = reason
    result["khat"] = smoothed["khat"].tolist()
    result["log_likelihood_per_datapoint"] = estimate["per_datapoint"].tolist()
    result["diagnostics"] = {"ran": ran, "skipped": skipped}
    if out is not None:
        _write_evaluation(out, result, model, guide, x, module, stats, smoothed["khat"], inference_points, draws, chains, alpha)
        partial.unlink(missing_ok=True)
    return result


@torch.no_grad()
def collapsed_generation_difference(vae, active, n=1000):
    r""":math:`E_{z \sim p(z)} \overline{|E[x \mid z] - E[x \mid z_{\text{active}}, 0]|}`: how much
    generation changes when the collapsed latents are set to 0 (seed 000, Fig. 3 claims: not at all)."""
    z = vae.prior().sample((n,))
    zeroed = torch.where(torch.as_tensor(active, device=z.device), z, torch.zeros_like(z))
    return (vae.generate(n, "mean", z=z) - vae.generate(n, "mean", z=zeroed)).abs().mean().item()


def format_latent_table(result):
    """The per-latent table (seed 000, Table 1) as text."""
    latents = result["latents"]
    mu, sigma = ("mu", "sigma") if latents["moments"] == "mean/sd" else ("loc", "scale")
    lines = [f"{'j':>3} {'Var(' + mu + ')':>10} {'E[' + sigma + '^2]':>12} {'sum':>7} {'mean ' + mu:>9} "
             f"{'KL':>7} {'gain':>8}  active"]
    for j in range(len(latents["var_mu"])):
        lines.append(
            f"{j:>3} {latents['var_mu'][j]:>10.4f} {latents['mean_sigma2'][j]:>12.4f} {latents['moment_sum'][j]:>7.3f} "
            f"{latents['mean_mu'][j]:>9.3f} {latents['kl'][j]:>7.3f} {latents['reconstruction_gain'][j]:>8.3f}  "
            f"{'yes' if latents['active'][j] else 'no'}"
        )
    return "\n".join(lines)


def format_summary(result):
    """The headline numbers of :func:`evaluate` and what ran or was skipped, as text."""
    kl = f"KL {result['kl']:.3f}"
    if "global_kl" in result:
        kl += f", of which global {result['global_kl']:.3f} nats for all {result['num_datapoints']} points"
    given = ""
    if "conditioned_on" in result:
        given = " | " + ", ".join(result["conditioned_on"])
        kl += f"; per-point numbers given one draw of {', '.join(result['conditioned_on'])} from the guide"
    line = (
        f"ELBO {result['elbo']:.3f} (reconstruction {result['reconstruction']:.3f}, {kl}); "
        f"log p(x{given}) ~ {result['log_likelihood']:.3f} +- {result['log_likelihood_mc_se']:.3f} (IS, K={result['particles']}), "
        f"PSIS {result['psis_log_likelihood']:.3f}; k-hat > 0.7 for {result['fraction_khat_above_0.7']:.1%} of "
        f"{result['num_datapoints']} points"
    )
    if "latents" in result:
        line += f"; {result['active_units']} of {len(result['latents']['active'])} latents active"
    diagnostics = result.get("diagnostics", {})
    lines = [line, "ran: " + ", ".join(diagnostics.get("ran", []))]
    lines += [f"skipped: {name} ({reason})" for name, reason in diagnostics.get("skipped", {}).items()]
    return "\n".join(lines)


def _write_evaluation(out, result, model, guide, x, module, stats, khat, inference_points, draws, chains, alpha):
    from pyro_vae import plots
    from pyro_vae.files import write_json

    from .diagnostics import posterior_inference_data

    out = Path(out)
    figures = out / "figures"
    ran, skipped = result["diagnostics"]["ran"], result["diagnostics"]["skipped"]
    plots.plot_khat(khat, figures / "khat.png")
    if stats is None:
        skipped["posterior.nc and the latent-variance figure"] = skipped["per-latent statistics"]
    else:
        params = dict(module.state_dict()) if isinstance(module, torch.nn.Module) else None
        attrs = {"prior": repr(getattr(module, "prior", "")), "likelihood": repr(getattr(module, "likelihood", ""))}
        idata = posterior_inference_data(model, guide, x[:inference_points], draws=max(1, draws // chains), chains=chains,
                                         site=stats["site"], params=params, attrs=attrs)
        atomic_write(out / "posterior.nc", lambda tmp: idata.to_netcdf(str(tmp)))
        plots.plot_latent_variances(stats, figures / "latent_variances.png")
        ran += ["posterior.nc", "latent-variance figure"]
    reason = missing(module, "generate", "event_shape")
    if reason is None and len(module.event_shape) != 3:
        reason = f"event_shape {tuple(module.event_shape)} is not an image (channels, height, width)"
    if reason is None and stats is None:
        reason = "no per-latent statistics"
    if reason is None:
        plots.plot_reconstructions_and_samples(module, x, figures / "reconstructions_samples.png")
        plots.plot_generation_modes(module, figures / "generation_modes.png", stats["active"], alpha=alpha)
        active = [j for j, a in enumerate(stats["active"]) if a]
        if active:
            plots.plot_latent_traversals(module, active[:10], figures / "latent_traversals.png")
        ran.append("image figures")
    else:
        skipped["image figures (reconstructions, generation modes, traversals)"] = reason
    write_json(out / "evaluation.json", result)
