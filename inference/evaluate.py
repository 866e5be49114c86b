r"""``evaluate``: every number of a fitted pair in one call, and the files a run directory gets from it.

The estimators live in :mod:`~pyro_vae.inference.estimators` (ELBO terms, importance-sampled
log-likelihood, each with its Monte Carlo error) and :mod:`~pyro_vae.inference.latents` (per-latent
statistics); the terminal text in :mod:`pyro_vae.summaries`, the figures in :mod:`pyro_vae.plots`.
"""

from dataclasses import asdict
from pathlib import Path

import pyro
import torch

from pyro_vae import checks
from pyro_vae.contract import describe_pair, missing, owner_module
from pyro_vae.errors import ConfigError
from pyro_vae.files import atomic_write
from pyro_vae.options import documented

from .estimators import elbo_terms, importance_log_weights
from .options import EvaluateOptions
from .weights import log_likelihood, point_se
from .calibration import calibration
from .latents import aggregate_posterior, collapsed_generation_difference, latent_statistics, reconstruction_gain
from .plates import find_data_plate, local_pair
from .refine import OPTIMISATION_PARTICLES, refine
from .traces import guide_latent_sites

#: The file where an evaluation keeps its finished batches of AIS chains until it ends (resumable).
AIS_PARTIAL = "ais.partial.pt"
#: The numbers of an AIS estimate that go into ``evaluation.json``.
AIS_KEYS = ("log_likelihood", "log_likelihood_se", "log_likelihood_mc_se", "log_likelihood_replicate_se", "acceptance",
            "khat_threshold", "fraction_khat_above_threshold", "points_without_error", "log_likelihood_finite_points",
            "log_likelihood_finite_points_se", "notes")

#: Why the analyses of one latent site are skipped for a guide with several (none named).
SEVERAL_SITES = "the guide has several latent sites; name one with site=... for these"


@documented(EvaluateOptions)
def evaluate(model, guide, x, *, site=None, module=None, out=None, data_plate=None, options=None, **values):
    r"""Evaluate a fitted model/guide pair on data ``x``: one call for every number of a run.

    Computes, in nats per data point, each with its Monte Carlo standard error: the ELBO and its terms
    (:func:`~pyro_vae.inference.estimators.elbo_terms` with ``elbo_draws`` draws per point, by default as
    many as an error of about 0.01 needs; a global latent's KL counted once per data set; an infinite
    KL reported as such), the importance-sampled log-likelihood with K = ``importance_samples`` and its delta-method
    and replicate errors, PSIS k-hat per point and the PSIS log-likelihood (for K >= 25;
    :func:`~pyro_vae.inference.weights.log_likelihood`), per-latent statistics against the prior's
    own variance (:func:`~pyro_vae.inference.latents.latent_statistics`), reconstruction gains and the
    aggregate-posterior moments; for an owner with ``generate`` and ``prior`` (the VAE), the mean absolute
    change of generated data when collapsed latents are set to 0.  A guide with several latent sites and
    no ``site`` named (the two-layer VAE's z1, z2) gets the per-latent statistics of each under
    ``latents_by_site`` (``active_units_by_site``), and the analyses of one site are skipped.

    A pair with global latents (outside the data plate) gets its per-point quantities (log-likelihood,
    PSIS, latent statistics) *conditional on one draw of the globals from the guide*, recorded under
    ``conditioned_on``.  ``diagnostics`` lists what ran and what was skipped, with the reason
    (:mod:`pyro_vae.contract`).

    With ``refine_steps`` S, each point's guide parameters are also refined by S gradient steps from the
    encoder's output (semi-amortised, :func:`~pyro_vae.inference.refine.refine`): ``elbo_amortised``,
    ``elbo_refined`` and ``refinement_gain`` (the amortisation gap S steps close), each with ``*_mc_se``
    and per point.  Off by default: it optimises every point (on the 179 digits test points, 20 steps took
    as long as the K = 1000 importance sampling for the catalogue VAE, about 8 s on 2 shared CPU cores, and
    5 times as long for Burda's two-layer VAE); a guide without location and scale parameters (nor a flow on
    such a base) skips it, with the reason.

    With ``ais`` (:class:`~pyro_vae.inference.ais.AISOptions`), :math:`\log p(x)` is also estimated by annealed
    importance sampling (:mod:`~pyro_vae.inference.ais`) on every point or on those whose IS k-hat is above
    the threshold (then ``ais.combined_log_likelihood`` takes AIS there and IS elsewhere), and the
    bidirectional bracket (:mod:`~pyro_vae.inference.bdmc`) is run on ``ais.bracket_points`` points simulated
    from the model: all under ``ais``.

    With ``calibration`` N > 0, q(z|x) is checked by simulation-based calibration on N draws from the model
    (:mod:`~pyro_vae.inference.calibration`; skipped, with the reason, for a model that does not observe x
    itself): rank uniformity and interval coverage per latent coordinate under ``calibration``, and
    ``figures/calibration.png`` with ``out``.

    With ``out`` the importance weights are kept chunk by chunk in ``out/evaluation.partial.pt`` until
    the end, so an interrupted evaluation re-run with the same arguments resumes; it then writes
    ``evaluation.json``, ``posterior.nc`` (q(z|x) draws for the first ``inference_points`` points as
    ArviZ InferenceData, :func:`~pyro_vae.inference.diagnostics.posterior_inference_data`) and figures
    under ``out/figures``.

    :param site: the guide's latent site of the per-latent analyses (default: its only one).
    :param module: ``nn.Module`` owning the pair's parameters (default: owner of a bound ``model``).
    :param out: the run directory to write ``evaluation.json``, ``posterior.nc`` and figures into (None: nothing written).
    :param str data_plate: the name of the plate over data points (default: found, see :mod:`pyro_vae.contract`).
    :param options: an :class:`~pyro_vae.inference.options.EvaluateOptions`; the keywords below replace its fields.
    {options}
    :returns: dict of the numbers (JSON-able), with ``khat`` and ``log_likelihood_per_datapoint`` lists.
    """
    options = EvaluateOptions.build(options, **values)
    particles, inference_points, draws, alpha, seed = (options.importance_samples, options.inference_points, options.draws,
                                                       options.alpha, options.seed)
    max_memory, elbo_draws, refine_steps, ais, calibration = (options.max_memory, options.elbo_draws, options.refine_steps,
                                                              options.ais, options.calibration)
    module = owner_module(model, module)
    x = _checked_data(module, x)
    checks.check_work({"points": min(inference_points, len(x)), "draws a point": draws}, "posterior.nc's draws")
    if refine_steps is not None:
        checks.check_work({"points": len(x), "steps": refine_steps,
                           "draws a step": OPTIMISATION_PARTICLES}, "--refine-steps")
    pyro.set_rng_seed(seed)
    data_plate = find_data_plate(model, guide, x[:1000], data_plate)
    result = {"num_datapoints": len(x), "importance_samples": particles, "data_plate": data_plate}
    ran, skipped = ["elbo"], {}
    result.update(elbo_terms(model, guide, x, particles=elbo_draws, data_plate=data_plate))
    model, guide, fixed = local_pair(model, guide, x[:1000], data_plate)
    if fixed:
        result["conditioned_on"] = {name: value.tolist() for name, value in fixed.items()}
    partial = Path(out) / "evaluation.partial.pt" if out is not None else None
    log_weights = importance_log_weights(model, guide, x, particles, max_memory, data_plate=data_plate, seed=seed,
                                         checkpoint=partial)
    estimate = log_likelihood(log_weights)
    khat = _add_log_likelihood(result, estimate, ran, skipped)
    if ais is not None:
        _add_ais(result, (model, guide), x, ais, estimate, dict(seed=seed, data_plate=data_plate, max_memory=max_memory),
                 out, ran, skipped)
    # what follows draws from a stream of its own: a resumed evaluation drew fewer chunks of weights above
    pyro.set_rng_seed((seed * 1_000_003 - 1) % 2**32)
    stats = _add_latents(result, model, guide, x, site, module, ran, skipped)
    if refine_steps is not None:
        _add_refinement(result, model, guide, x, refine_steps, seed, data_plate, ran, skipped)
    if calibration:
        _add_calibration(result, (model, guide), x, calibration, seed, data_plate, out, ran, skipped)
    result["diagnostics"] = {"ran": ran, "skipped": skipped}
    if out is not None:
        _write_evaluation(out, result, model, guide, x, module, stats, khat, inference_points, draws, alpha)
        partial.unlink(missing_ok=True)
        (Path(out) / AIS_PARTIAL).unlink(missing_ok=True)
    return result


def _checked_data(module, x):
    x = checks.as_data(x, "evaluation", checks.parameter_dtype(module))
    if module is not None:
        check = getattr(module, "check_data", None)
        if check is not None:
            check(x)
        module.eval()
    return x


def _add_log_likelihood(result, estimate, ran, skipped):
    """The IS numbers into ``result``; returns the k-hat per point (None where PSIS was skipped)."""
    ran.append("importance-sampled log-likelihood")
    result.update({key: estimate[key] for key in ("log_likelihood", "log_likelihood_mc_se", "log_likelihood_replicate_se",
                                                  "log_likelihood_se", "khat_threshold", "points_without_error")})
    result.update({key: estimate[key] for key in ("log_likelihood_finite_points", "log_likelihood_finite_points_se")
                   if key in estimate})
    result["log_likelihood_per_datapoint"] = estimate["per_datapoint"].tolist()
    notes = dict(estimate["notes"])
    smoothed = estimate["psis"]
    if smoothed is None:
        skipped["PSIS"] = notes.pop("PSIS")
    if notes:
        result["log_likelihood_notes"] = notes
    if smoothed is None:
        return None
    ran.append("PSIS")
    result.update({
        "psis_log_likelihood": float(smoothed["psis_log_likelihood"].mean()),
        "fraction_khat_above_threshold": estimate["fraction_khat_above_threshold"],
        "fraction_khat_above_0.5": smoothed["fraction_khat_above_0.5"],
        "fraction_khat_above_0.7": smoothed["fraction_khat_above_0.7"],
        "khat": smoothed["khat"].tolist(),
    })
    return smoothed["khat"]


def _add_ais(result, pair, x, options, estimate, settings, out, ran, skipped):
    """AIS (where ``options.where`` says) and the bidirectional bracket into ``result["ais"]`` (evaluate's doc)."""
    from .ais import ais_log_likelihood
    from .bdmc import bdmc

    khat = estimate["psis"]["khat"] if estimate["psis"] is not None else None
    if options.where == "unreliable" and khat is not None:
        index = torch.nonzero(torch.as_tensor(khat) > result["khat_threshold"]).flatten()
    else:
        index = torch.arange(len(x))
        if options.where == "unreliable":
            skipped["IS k-hat for choosing AIS's points"] = "no k-hat below 25 particles: AIS ran on every point"
    block = {**asdict(options), "points": len(index)}
    try:
        _check_annealable(pair, x, settings["data_plate"])
    except ConfigError as error:  # a discrete latent
        skipped["AIS"] = str(error)
        return
    if len(index):
        checkpoint = Path(out) / AIS_PARTIAL if out is not None else None
        ais = ais_log_likelihood(*pair, x[index.to(x.device)], **options.annealing(), **settings, checkpoint=checkpoint)
        block.update({key: ais[key] for key in AIS_KEYS if key in ais})
        block["per_datapoint"], block["acceptance_per_datapoint"] = ais["per_datapoint"].tolist(), ais["acceptance_per_datapoint"].tolist()
        block["indices"] = index.tolist()
        ran.append(f"AIS (T = {options.steps}, M = {options.chains}) on {len(index)} points")
        if options.where == "unreliable":
            block.update(_combined(estimate, ais, index))
    if options.bracket_points:
        try:
            bracket = bdmc(*pair, x[:options.bracket_points], **options.annealing(), data_plate=settings["data_plate"],
                           seed=settings["seed"])
        except ConfigError as error:  # a model that does not observe x itself
            skipped["bidirectional bracket"] = str(error)
        else:
            block["bracket"] = {key: value for key, value in bracket.items() if not key.endswith("_per_datapoint")}
            ran.append(f"bidirectional bracket on {bracket['points']} simulated points")
    result["ais"] = block


def _check_annealable(pair, x, data_plate):
    """Raise the one-line reason when the pair's latents cannot be annealed (a discrete site)."""
    from .annealing import AnnealingPath

    AnnealingPath(*pair, x[:1], 1, data_plate)


def _combined(estimate, ais, index):
    """Per point AIS where it ran and IS elsewhere: the mean and its error."""
    per_point, se = estimate["per_datapoint"].clone(), point_se(estimate).clone()
    per_point[index], se[index] = ais["per_datapoint"], point_se(ais)
    return {"combined_log_likelihood": per_point.mean().item(),
            "combined_log_likelihood_se": (se.pow(2).sum().sqrt() / len(se)).item()}


def _add_calibration(result, pair, x, simulations, seed, data_plate, out, ran, skipped):
    """The calibration check into ``result["calibration"]``, and its figure under ``out``."""
    from pyro_vae import plots
    from pyro_vae.contract import describe_pair

    try:
        checked = calibration(*pair, x, simulations=simulations, seed=seed, data_plate=data_plate)
    except ConfigError as error:  # a model that does not observe x itself
        skipped["calibration of q(z|x)"] = str(error)
        return
    result["calibration"] = {key: value for key, value in checked.items() if key != "pit"}
    ran.append(f"calibration of q(z|x) ({simulations} simulations)")
    if out is not None:
        plots.plot_calibration(checked, Path(out) / "figures" / "calibration.png", model=describe_pair(pair[0]))
        ran.append("calibration figure")


def _add_refinement(result, model, guide, x, steps, seed, data_plate, ran, skipped):
    """The refined and amortised ELBOs of :func:`~pyro_vae.inference.refine.refine` into ``result``."""
    try:
        refined = refine(model, guide, x, steps=steps, seed=seed, data_plate=data_plate)
    except ConfigError as error:  # a guide family without a location and a scale
        skipped["refinement"] = str(error)
        return
    for key in ("elbo_amortised", "elbo_refined", "refinement_gain"):
        result[key], result[f"{key}_mc_se"] = refined[key], refined[f"{key}_mc_se"]
        result[f"{key}_per_datapoint"] = refined["per_datapoint"][key].tolist()
    result["refinement"] = {key: refined[key] for key in ("steps", "lr", "draws")}
    ran.append(f"refinement ({steps} steps)")


def _add_latents(result, model, guide, x, site, module, ran, skipped):
    """Per-latent statistics, gains, aggregate posterior and collapsed generation into ``result``."""
    sites = guide_latent_sites(guide, x) if site is None else [site]
    if len(sites) > 1:
        _add_latents_by_site(result, model, guide, x, sites, ran, skipped)
        return None
    try:
        stats = latent_statistics(model, guide, x, site)
    except ConfigError as error:  # a site named that the guide lacks
        skipped["per-latent statistics"] = str(error)
        return None
    gains = reconstruction_gain(model, guide, x, site)
    result["latents"] = {**stats, "reconstruction_gain": gains["gain"]}
    result["active_units"] = stats["active_units"]
    result["aggregate_posterior"] = aggregate_posterior(stats)
    ran += ["per-latent statistics", "reconstruction gains", "aggregate posterior"]
    reason = missing(module, "generate", "prior")
    if reason is None:
        result["collapsed_generation_mean_abs_difference"] = collapsed_generation_difference(module, stats["active"])
        ran.append("collapsed-latent generation")
    else:
        skipped["collapsed-latent generation"] = reason
    return stats


def _add_latents_by_site(result, model, guide, x, sites, ran, skipped):
    """Per-latent statistics of each of several latent sites (e.g. z1 and z2 of a two-layer VAE) into ``result``."""
    result["latents_by_site"] = {name: latent_statistics(model, guide, x, name) for name in sites}
    result["active_units_by_site"] = {name: stats["active_units"] for name, stats in result["latents_by_site"].items()}
    ran.append(f"per-latent statistics of {', '.join(sites)}")
    skipped["reconstruction gains, aggregate posterior, collapsed-latent generation"] = SEVERAL_SITES


def _write_evaluation(out, result, model, guide, x, module, stats, khat, inference_points, draws, alpha):
    from pyro_vae import plots
    from pyro_vae.files import write_json

    from .diagnostics import posterior_inference_data

    out = Path(out)
    figures = out / "figures"
    ran, skipped = result["diagnostics"]["ran"], result["diagnostics"]["skipped"]
    name = describe_pair(model, module)
    if khat is not None:
        plots.plot_khat(khat, figures / "khat.png", result["khat_threshold"], result["importance_samples"], model=name)
    if stats is None:
        skipped["posterior.nc and the latent-variance figure"] = skipped.get("per-latent statistics", SEVERAL_SITES)
    else:
        attrs = {"prior": repr(getattr(module, "prior", "")), "likelihood": repr(getattr(module, "likelihood", ""))}
        idata = posterior_inference_data(model, guide, x[:inference_points], draws=draws, site=stats["site"], attrs=attrs)
        atomic_write(out / "posterior.nc", lambda tmp: idata.to_netcdf(str(tmp)))
        plots.plot_latent_variances(stats, figures / "latent_variances.png", model=name)
        ran += ["posterior.nc", "latent-variance figure"]
    reason = missing(module, "generate", "event_shape", "reconstruct")
    if reason is None and len(module.event_shape) != 3:
        reason = f"event_shape {tuple(module.event_shape)} is not an image (channels, height, width)"
    if reason is None and stats is None:
        reason = "no per-latent statistics"
    if reason is None:
        # evaluated_*: the fit's own reconstructions_samples.png (drawn on its test split) stays as it was
        plots.plot_reconstructions_and_samples(module, x, figures / "evaluated_reconstructions_samples.png",
                                               title=f"{name}: evaluated points")
        plots.plot_generation_modes(module, x, figures / "generation_modes.png", stats["active"], alpha=alpha, title=name)
        active = [j for j, a in enumerate(stats["active"]) if a]
        if active:
            plots.plot_latent_traversals(module, active[:10], figures / "latent_traversals.png", title=name)
        ran.append("image figures")
    else:
        skipped["image figures (reconstructions, generation modes, traversals)"] = reason
    write_json(out / "evaluation.json", result)
