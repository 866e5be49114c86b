r"""What a richer guide or prior buys, under the same estimators: ``pyro-vae analyze guides``.

For a one-layer model (the catalogue VAE) and the two-stochastic-layer model of Burda, Grosse &
Salakhutdinov (2016, :class:`~pyro_vae.models.TwoLayerVAE`), each guide of ``guides`` (the diagonal
Normal, the low-rank-plus-diagonal Normal, inverse autoregressive flows of 2 and 4 layers:
:mod:`pyro_vae.guides`) is fitted under each objective of ``objectives``, and the one-layer model also
with a VampPrior (Tomczak & Welling 2018) and the diagonal guide.  On the test split, per fit:

* ``log_likelihood``: importance-sampled :math:`\log p(x)` with K = ``importance_samples`` draws of the fit's
  own guide, and ``log_likelihood_se`` (the larger of the delta-method and replicate errors,
  :func:`~pyro_vae.inference.log_likelihood`);
* ``fraction_khat_above_0.7`` and ``fraction_khat_above_threshold``: shares of points whose PSIS
  :math:`\hat k` is above 0.7 and above ArviZ's threshold for K;
* ``test_elbo`` from ``elbo_draws`` draws per point, ± its Monte Carlo error (a fixed count: the adaptive
  default of :func:`~pyro_vae.inference.elbo_terms` would take up to 1,000 draws a point for the
  VampPrior's Monte Carlo KL against 500 components); ``approximation_gap`` and ``amortisation_gap`` on the first
  ``gap_points`` test points (Cremer et al. 2018, :func:`~pyro_vae.inference.gaps.inference_gaps`); for
  a flow the per-point guide refits its base distribution under the transforms the encoder conditioned,
  so its approximation gap is an upper bound and its amortisation gap a lower bound (see there);
* on the same ``gap_points`` points, ``log_likelihood_ais`` by annealed importance sampling (T = ``ais_steps``,
  M = ``ais_chains``, :mod:`~pyro_vae.inference.ais`; its error is finite where IS's is not) beside
  ``log_likelihood_is_on_subset``, and the gaps re-measured against it (``total_gap_ais``,
  ``approximation_gap_ais``, :func:`~pyro_vae.inference.gaps.gaps_against`).  The subset is the same for every
  fit, so fits are compared point for point: the errors shown are Monte Carlo errors on those points, and
  differences between fits of a few tenths of a nat are resolved by 100 points (the full preset) where the
  per-point estimates' errors are that small; ``figures/guides_ais.png`` shows both estimates per fit;
* ``bracket_*``: the bidirectional bracket (:mod:`~pyro_vae.inference.bdmc`) on ``bracket_points`` points
  simulated from the fitted model, for the first guide's fit under the first objective of each model;
* ``active_units`` (:math:`\mathrm{Var}_x \mu_j` above 0.01 of the prior variance, summed over the
  latent sites) and ``seconds_per_epoch``.

Beside them on MNIST, Burda et al.'s published test log-likelihoods (binarised MNIST, 60,000 training
images, K = 5,000): one layer VAE -86.76, IWAE k=5 -85.54; two layers VAE -85.33, IWAE k=5 -83.89.
Ours train on the 8,000 training images of the MNIST test files (:mod:`pyro_vae.data`) and so are
comparable in direction, not in level.  Figure ``guides.png``: log p(x) ± 2 SE against the k-hat share.
"""

import functools
import math

from pyro_vae.inference import elbo_terms, importance_log_weights, latent_statistics, log_likelihood
from pyro_vae.inference.ais import ais_log_likelihood
from pyro_vae.inference.bdmc import bdmc
from pyro_vae.inference.gaps import gaps_against, inference_gaps
from pyro_vae.inference.objectives import parse_objective
from pyro_vae.errors import ConfigError
from pyro_vae.sweep import run_sweep

from . import Study
from .common import TRAINING_KEYS, begin, figure_title, finish, fit_fresh
from .options import study_presets

NAME = "guides"
STUDY = Study("diagonal, low-rank and flow guides and a VampPrior on one- and two-layer models: log p(x), k-hat, "
              "gaps (Burda et al. 2016)",
              quick_minutes=0.5, full_minutes=100)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", models=("one-layer", "two-layer"), guides=("normal", "lowrank", "iaf:2"),
               objectives=("elbo",), vamp_components=10, one_layer=dict(latent_dim=4, hidden=(32,)),
               two_layer=dict(latent_dims=(8, 4), hidden=((32,), (16,))), likelihood="bernoulli", epochs=3,
               batch_size=128, lr=3e-3, importance_samples=100, elbo_draws=20, gap_points=20, gap_steps=20, ais_steps=20, ais_chains=8,
               bracket_points=4, seed=0, executor="local", workers=None),
    full=dict(data="mnist", models=("one-layer", "two-layer"), guides=("normal", "lowrank", "iaf:2", "iaf:4"),
              objectives=("elbo", "iwae:5"), vamp_components=500, one_layer=dict(latent_dim=50, hidden=(200, 200)),
              two_layer=dict(latent_dims=(100, 50), hidden=((200, 200), (100, 100))), likelihood="bernoulli",
              epochs=100, batch_size=100, lr=1e-3, importance_samples=5000, elbo_draws=100, gap_points=100, gap_steps=300, ais_steps=500,
              ais_chains=32, bracket_points=20, seed=0, executor="local", workers=None),
)
#: Burda et al. (2016), Table 1: test log p(x), binarised MNIST, K = 5,000.
PUBLISHED = {("one-layer", "elbo"): -86.76, ("one-layer", "iwae:5"): -85.54,
             ("two-layer", "elbo"): -85.33, ("two-layer", "iwae:5"): -83.89}


def guide_options(spec):
    """``"iaf:4"`` -> ``("iaf", {"layers": 4})``, ``"lowrank:3"`` -> ``("lowrank", {"rank": 3})``, ``"normal"`` -> ``("normal", {})``:
    the number is the one option a guide family declares in its registry."""
    from pyro_vae.guides import GUIDES

    name, _, number = spec.partition(":")
    counted = {part: next(iter(options)) for part in GUIDES.names() if len(options := GUIDES.options(part)) == 1}
    if number and name not in counted:
        raise ConfigError(f"guide {spec!r}: only {' and '.join(f'{part}:{option.upper()}' for part, option in counted.items())} "
                          "take a number")
    return name, ({counted[name]: int(number)} if number else {})


def build(model, event_shape, guide, prior, preset):
    """The pair of one task: the catalogue VAE (``one-layer``) or the two-layer VAE with ``guide``."""
    from pyro_vae.models import VAE, TwoLayerVAE

    name, options = guide_options(guide)
    if model == "one-layer":
        prior_options = {"components": preset["vamp_components"]} if prior == "vamp" else None
        return VAE(event_shape, **preset["one_layer"], guide=name, guide_options=options, prior=prior,
                   prior_options=prior_options, likelihood=preset["likelihood"])
    return TwoLayerVAE(event_shape, **preset["two_layer"], guide=name, guide_options=options,
                       likelihood=preset["likelihood"])


def _active_units(pair, x):
    """Active units summed over the guide's latent sites (:func:`~pyro_vae.inference.latent_statistics`)."""
    from pyro_vae.inference.traces import guide_latent_sites

    return sum(latent_statistics(pair.model, pair.guide, x, site=site)["active_units"]
               for site in guide_latent_sites(pair.guide, x))


def _gaps(pair, x, preset):
    """The gap split on the first ``gap_points`` test points against IS and against AIS, and both estimates there."""
    subset = x[: preset["gap_points"]]
    gaps = inference_gaps(pair.model, pair.guide, subset, particles=preset["importance_samples"], steps=preset["gap_steps"],
                          seed=preset["seed"])
    ais = ais_log_likelihood(pair.model, pair.guide, subset, steps=preset["ais_steps"], chains=preset["ais_chains"],
                             seed=preset["seed"])
    row = {key: gaps[key] for name in ("approximation_gap", "amortisation_gap") for key in (name, f"{name}_mc_se")}
    row["log_likelihood_is_on_subset"], row["log_likelihood_is_on_subset_mc_se"] = gaps["log_likelihood"], gaps["log_likelihood_mc_se"]
    row.update(gaps_against(gaps, ais["per_datapoint"], ais["per_datapoint_mc_se"] ** 2, "ais"))
    row["ais_fraction_khat_above_threshold"] = ais.get("fraction_khat_above_threshold", math.nan)
    row["ais_acceptance"] = ais["acceptance"]
    return row


def _bracket(pair, x, preset, setting):
    """The bidirectional bracket for the first guide's fit under the first objective, per model; NaN elsewhere."""
    model, guide, prior, objective = setting
    keys = ("bracket_lower", "bracket_upper", "bracket_width", "bracket_width_se")
    if (guide, prior, objective) != (preset["guides"][0], "normal", preset["objectives"][0]) or not preset["bracket_points"]:
        return dict.fromkeys(keys, math.nan)
    result = bdmc(pair.model, pair.guide, x[: preset["bracket_points"]], steps=preset["ais_steps"],
                  chains=preset["ais_chains"], seed=preset["seed"])
    return {key: result[key.removeprefix("bracket_")] for key in keys}


def fit_and_score(run_dir, data, model, guide, prior, objective, preset):
    """One task: fit one pair under one objective, then every number of the module doc on the test split."""
    name, particles = parse_objective(objective)
    pair, result = fit_fresh(functools.partial(build, model, tuple(data["train"].shape[1:]), guide, prior, preset),
                             data["train"], preset["seed"], val=data["val"], objective=name, particles=particles,
                             dynamic_binarization=True, out=run_dir / "fit", progress=False,
                             **{key: preset[key] for key in TRAINING_KEYS if key in preset and key != "seed"})
    test = data["test"]
    terms = elbo_terms(pair.model, pair.guide, test, particles=preset["elbo_draws"])
    estimate = log_likelihood(importance_log_weights(pair.model, pair.guide, test, preset["importance_samples"], seed=preset["seed"]))
    khat = estimate["psis"]["khat"] if estimate["psis"] is not None else None
    return {"layers": model, "guide": guide, "prior": prior, "objective": objective,
            "log_likelihood": estimate["log_likelihood"], "log_likelihood_se": estimate["log_likelihood_se"],
            "fraction_khat_above_0.7": float((khat > 0.7).mean()) if khat is not None else math.nan,
            "fraction_khat_above_threshold": estimate.get("fraction_khat_above_threshold", math.nan),
            "test_elbo": terms["elbo"], "test_elbo_mc_se": terms["elbo_mc_se"], **_gaps(pair, test, preset),
            **_bracket(pair, test, preset, (model, guide, prior, objective)),
            "active_units": _active_units(pair, test),
            "seconds_per_epoch": result.metrics["train_seconds"] / result.metrics["epochs"],
            "description": pair.describe()}


def _settings(preset):
    """``(model, guide, prior, objective)`` of every fit: each model x guide x objective, and the VampPrior."""
    settings = [(model, guide, "normal", objective) for model in preset["models"] for guide in preset["guides"]
                for objective in preset["objectives"]]
    if "one-layer" in preset["models"]:
        settings += [("one-layer", "normal", "vamp", objective) for objective in preset["objectives"]]
    return settings


def _key(setting):
    return ",".join(part.replace(":", "=") for part in setting)


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    """Run the study (module doc) and write ``results.csv``, ``headline.json`` and ``figures/guides.png``."""
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    tasks = {_key(setting): dict(data=splits, model=setting[0], guide=setting[1], prior=setting[2],
                                 objective=setting[3], preset=preset) for setting in _settings(preset)}
    results = run_sweep(fit_and_score, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                        progress=progress)
    rows = list(results.values())
    if preset["data"] == "mnist":
        for row in rows:
            published = PUBLISHED.get((row["layers"], row["objective"])) if row["guide"] == "normal" and row["prior"] == "normal" else None
            row["published_log_likelihood"] = published if published is not None else math.nan
    _plot(rows, out / "figures" / "guides.png", preset)
    names = [_key((r["layers"], r["guide"], r["prior"], r["objective"])) for r in rows]
    best = max(zip(names, rows), key=lambda named: named[1]["log_likelihood"])[0]
    headline = {"best": best, "log_likelihood_by_fit": {n: r["log_likelihood"] for n, r in zip(names, rows)},
                "log_likelihood_se_by_fit": {n: r["log_likelihood_se"] for n, r in zip(names, rows)},
                "fraction_khat_above_0.7_by_fit": {n: r["fraction_khat_above_0.7"] for n, r in zip(names, rows)},
                "log_likelihood_ais_by_fit": {n: r["log_likelihood_ais"] for n, r in zip(names, rows)},
                "log_likelihood_ais_se_by_fit": {n: r["log_likelihood_ais_mc_se"] for n, r in zip(names, rows)},
                "approximation_gap_ais_by_fit": {n: r["approximation_gap_ais"] for n, r in zip(names, rows)},
                "bracket_width_by_fit": {n: r["bracket_width"] for n, r in zip(names, rows) if math.isfinite(r["bracket_width"])},
                "ais_points": preset["gap_points"]}
    _plot_ais(names, rows, out / "figures" / "guides_ais.png", preset)
    return finish(out, rows, headline, started)


def _plot_ais(names, rows, path, preset):
    """Per fit, on the same first ``gap_points`` test points: IS and AIS log p(x) ± 2 SE, hollow where infinite."""
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    figure, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.6))
    for y, row in enumerate(rows):
        for estimate, offset, colour, label in (("log_likelihood_is_on_subset", 0.15, "tab:blue", f"IS, K = {preset['importance_samples']}"),
                                                ("log_likelihood_ais", -0.15, "tab:orange",
                                                 f"AIS, T = {preset['ais_steps']}, M = {preset['ais_chains']}")):
            se = row[f"{estimate}_mc_se"]
            finite = math.isfinite(se)
            ax.errorbar(row[estimate], y + offset, xerr=2 * se if finite else None, fmt="o", color=colour, capsize=3,
                        mfc=None if finite else "none", label=label if y == 0 else None)
    ax.set_yticks(range(len(rows)), [name.replace(",", ", ") for name in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"test log p(x) on the first {preset['gap_points']} test points (± 2 Monte Carlo SE)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    figure.suptitle(figure_title(f"IS against AIS on {preset['data']}", "hollow marker: standard error infinite"),
                    fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)


def _plot(rows, path, preset):
    """log p(x) ± 2 SE against the share of points with k-hat above 0.7: a panel per objective, a colour
    per guide (the VampPrior its own), a marker per model."""
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    objectives = list(preset["objectives"])
    figure, axes = plt.subplots(1, len(objectives), figsize=(5.2 * len(objectives), 4.2), squeeze=False, sharey=True)
    labels = list(dict.fromkeys(row["guide"] if row["prior"] != "vamp" else "normal + VampPrior" for row in rows))
    colours = dict(zip(labels, plt.get_cmap("tab10").colors))
    markers = {"one-layer": "o", "two-layer": "s"}
    for ax, objective in zip(axes[0], objectives):
        for row in (r for r in rows if r["objective"] == objective):
            label = row["guide"] if row["prior"] != "vamp" else "normal + VampPrior"
            finite = math.isfinite(row["log_likelihood_se"])
            ax.errorbar(row["fraction_khat_above_0.7"], row["log_likelihood"],
                        yerr=2 * row["log_likelihood_se"] if finite else None, fmt=markers[row["layers"]],
                        color=colours[label], mfc=None if finite else "none", capsize=3,
                        label=f"{row['layers']}, {label}")
        ax.set_title(objective)
        ax.set_xlabel("share of test points with k-hat > 0.7")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test log p(x), IS with K = {preset['importance_samples']} (± 2 SE)")
    axes[0][-1].legend(fontsize=7, loc="best")
    figure.suptitle(figure_title(f"Richer guides on {preset['data']}: likelihood against posterior fit "
                                 f"({preset['epochs']} epochs)", "hollow marker: standard error infinite "
                                 "(a point with k-hat >= 1)"), fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)
