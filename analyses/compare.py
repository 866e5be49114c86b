r"""Compare inference objectives on one model: bounds, likelihoods, gradient SNR, gap split, NUTS.

The same model is fitted once per objective and seed, ``replicates`` seeds each (in parallel, through
:mod:`pyro_vae.sweep`); per objective, as mean and standard error over seeds, on the test split:

* ``test_elbo``, ``test_kl`` (beta = 1, analytic KL where registered);
* ``log_likelihood``: importance-sampled :math:`\log p(x)` with K = ``importance_samples`` draws of the
  objective's own guide, and its Monte Carlo standard error;
* ``gap``: ``log_likelihood - test_elbo``; ``active_units`` (:math:`\mathrm{Var}_x \mu_j > 0.01`);
  ``seconds_per_epoch``.

Objectives are ranked by ``log_likelihood``, best first; an objective whose mean is below the best of
its rank group (the group's first) by less than the larger of the two seed-to-seed standard deviations
shares that rank (``=`` in the table, on the leader too) instead of being ordered.

At the parameters of the first objective's first-seed fit (one parameter point for all, as
Rainforth et al. 2018 measure): the gradient SNR (:mod:`pyro_vae.inference.gradient_snr`) of every
objective's estimator, and of every importance-weighted one (``iwae``, ``iwae-dreg``) at each K of ``snr_particles``.  For each
objective's first-seed fit: the inference gap split (:mod:`pyro_vae.inference.gaps`).  For the
reference fit: NUTS draws of :math:`p(z \mid x)` for ``nuts_points`` test points compared with
:math:`q(z \mid x)`, and with PSIS :math:`\hat k` (:mod:`pyro_vae.inference.reference`).

Python users compare their own pair with :func:`compare`, giving a picklable ``make_module()``
(e.g. ``functools.partial(MyModule, ...)``) that returns an ``nn.Module`` with ``model`` and ``guide``.
"""

import functools
import math
import statistics

import numpy as np
import pyro
import torch

from pyro_vae.errors import ConfigError
from pyro_vae.inference.weights import shown
from pyro_vae.inference import elbo_terms, importance_log_weights, latent_statistics, log_likelihood
from pyro_vae.inference.diagnostics import psis
from pyro_vae.inference.gaps import inference_gaps
from pyro_vae.inference.gradient_snr import gradient_snr, parameter_groups
from pyro_vae.inference.objectives import OBJECTIVES, capabilities, parse_objective
from pyro_vae.inference.options import FitOptions
from pyro_vae.options import documented
from pyro_vae.inference.plates import find_data_plate, local_pair
from pyro_vae.inference.trainer import load_parameters
from pyro_vae.inference.reference import compare_with_guide, nuts_posterior, plot_marginals
from pyro_vae.models import VAE
from pyro_vae.contract import describe_pair
from pyro_vae.factories import ModelFactory, pair_module
from pyro_vae.files import atomic_write, write_csv
from pyro_vae.rundir import RunDir
from pyro_vae.sweep import run_sweep

from . import Study
from .common import begin, finish, fit_fresh
from .options import CompareOptions, study_presets

NAME = "compare"
STUDY = Study("objectives side by side: ELBO, IS log-likelihood, gaps, gradient SNR and a NUTS reference",
              quick_minutes=1, full_minutes=60)
#: The fields of FitOptions that compare sets for each fit (the objective spec's name and K, the seed) or takes
#: from its own options and the data; every other field reaches each fit as the preset or the caller gives it.
PER_FIT = ("objective", "particles", "seed", "device", "dynamic_binarization")
_FIT_DEFAULTS = FitOptions().values(exclude=PER_FIT)
PRESETS = study_presets(
    NAME,
    quick=dict(_FIT_DEFAULTS, data="digits", objectives=("elbo", "stl", "iwae:5", "iwae-dreg:5"), replicates=2, latent_dim=4,
               hidden=(64,), prior="normal", guide="normal", likelihood="bernoulli", network="mlp", epochs=8, batch_size=64,
               lr=3e-3, importance_samples=100, snr_particles=(1, 5), snr_draws=20, snr_points=64, gap_points=30, gap_steps=100,
               nuts_points=3, nuts_samples=100, nuts_warmup=100, nuts_chains=2, executor="local", workers=None,
               device="cpu", seed=0, model=None, model_kwargs=None, data_plate=None),
    full=dict(_FIT_DEFAULTS, data="mnist", objectives=("elbo", "meanfield", "iwae:5", "iwae:50", "iwae-dreg:5", "stl"),
              replicates=3, latent_dim=20, hidden=(400,), prior="normal", guide="normal", likelihood="bernoulli", network="mlp",
              epochs=50, batch_size=128, lr=1e-3, importance_samples=1000, snr_particles=(1, 5, 50), snr_draws=100,
              snr_points=100, gap_points=200, gap_steps=500, nuts_points=10, nuts_samples=500, nuts_warmup=500,
              nuts_chains=4, executor="local", workers=None, device="cpu", seed=0, model=None, model_kwargs=None,
              data_plate=None),
)
METRICS = ("test_elbo", "test_kl", "log_likelihood", "gap", "active_units", "seconds_per_epoch")


def fit_and_evaluate(run_dir, make_module, data, objective, particles, seed, eval_particles, dynamic_binarization,
                     device="cpu", data_plate=None, fit_options=None):
    """One task of the sweep: fit ``make_module()`` under one objective and seed, evaluate on the test split.

    :param fit_options: ``{field: value}`` of :class:`~pyro_vae.inference.options.FitOptions` for the fit, beside the
        per-fit ones (:data:`PER_FIT`)."""
    pair, result = fit_fresh(functools.partial(_built_on_cpu, make_module), data["train"], seed, val=data["val"],
                             objective=objective, particles=particles, device=device,
                             dynamic_binarization=dynamic_binarization, out=run_dir / "fit", progress=False,
                             data_plate=data_plate, **(fit_options or {}))
    test = data["test"].to(device)
    terms = elbo_terms(pair.model, pair.guide, test, data_plate=result.data_plate)
    model, guide, _ = local_pair(pair.model, pair.guide, test, result.data_plate)
    estimate = log_likelihood(importance_log_weights(model, guide, test, eval_particles, seed=seed, data_plate=result.data_plate))
    return {
        # no KL term where sites are enumerated
        "objective": f"{objective}:{particles}", "seed": seed, "test_elbo": terms["elbo"], "test_kl": terms.get("kl", math.nan),
        **shown(estimate), "log_likelihood_mc_se": estimate["log_likelihood_mc_se"],
        "gap": estimate["log_likelihood"] - terms["elbo"],
        "active_units": _active_units(model, guide, test),
        "seconds_per_epoch": result.metrics["train_seconds"] / result.metrics["epochs"],
    }


def _active_units(model, guide, x):
    try:
        return latent_statistics(model, guide, x)["active_units"]
    except ConfigError:  # several local latent sites: no single latent table
        return math.nan


def _built_on_cpu(make_module):
    """``make_module()`` with its tensors made on the CPU whatever torch's default device: the same
    initial weights from a seed on every device (``fit`` and ``_fitted`` move it)."""
    with torch.device("cpu"):
        return make_module()


def _fitted(make_module, run_dir, device):
    """The pair of a finished task, rebuilt and loaded from its checkpoint, in eval mode where it is a module."""
    checkpoint = RunDir(run_dir / "fit").load_checkpoint(map_location=device)
    pair = _built_on_cpu(make_module)
    module = pair_module(pair)
    load_parameters(checkpoint, module)
    if module is not None:
        module.to(device).eval()
    return pair


def summarise(fits, objectives):
    """Mean, standard error and seed-to-seed sd per objective and metric; ranks with ties (module doc)."""
    rows = []
    for spec in objectives:
        runs = [r for r in fits if r["objective"] == spec]
        row = {"objective": spec, "replicates": len(runs), "log_likelihood_estimator": runs[0].get("log_likelihood_estimator", "")}
        for metric in METRICS + ("log_likelihood_mc_se", "fraction_khat_above_threshold"):
            values = [r[metric] for r in runs]
            row[metric] = statistics.fmean(values)
            # statistics.stdev raises on a NaN or infinite value (a skipped PSIS, an infinite KL): nan then
            finite = len(values) > 1 and all(math.isfinite(v) for v in values)
            row[f"{metric}_sd"] = statistics.stdev(values) if finite else float("nan")
            row[f"{metric}_se"] = row[f"{metric}_sd"] / math.sqrt(len(values))
        rows.append(row)
    rows.sort(key=lambda r: -r["log_likelihood"])
    rank, leader = 0, None
    for position, row in enumerate(rows):
        spread = max(_finite(row["log_likelihood_sd"]), _finite(leader["log_likelihood_sd"])) if leader else 0.0
        if leader is None or leader["log_likelihood"] - row["log_likelihood"] >= spread:
            rank, leader = position + 1, row
            row["rank"] = str(rank)
        else:
            row["rank"] = f"={rank}"
            leader.setdefault("ties", []).append(row["objective"])
    for row in rows:
        row["rank"] = f"={row['rank']}" if row.get("ties") else row["rank"]
        row["ties"] = ", ".join(row.get("ties", []))
    return rows


def _finite(value):
    return 0.0 if math.isnan(value) else value


def format_table(rows):
    """The summary as a fixed-width text table (mean +- standard error over seeds)."""
    columns = ("log_likelihood", "test_elbo", "gap", "test_kl", "active_units", "seconds_per_epoch")
    lines = [f"{'rank':>4}  {'objective':<14}" + "".join(f"{c:>22}" for c in columns)]
    for row in rows:
        cells = "".join(f"{row[c]:>12.3f} +- {_finite(row[c + '_se']):<6.3f}" for c in columns)
        lines.append(f"{row['rank']:>4}  {row['objective']:<14}{cells}")
    ties = [f"{r['objective']} ~ {r['ties']}" for r in rows if r["ties"]]
    if ties:
        lines.append("not ranked apart (difference below the seed-to-seed spread): " + "; ".join(ties))
    return "\n".join(lines)


@documented(CompareOptions)
def compare(make_module, data, out, objectives, *, dynamic_binarization=False, progress=None, options=None,
            fit_options=None, **values):
    """Fit ``make_module()`` under every objective spec (``"elbo"``, ``"iwae:50"``, ...), ``replicates`` seeds each,
    and write the comparison (module doc) into ``out``.

    :param make_module: a picklable callable returning a pair (:mod:`pyro_vae.contract`): a
        ``functools.partial`` of a class, or a :class:`~pyro_vae.factories.ModelFactory` for a user's file.
    :param data: ``{"train", "val", "test"}`` tensors.
    :param out: the directory of the comparison: its tables, figures and one folder per fit.
    :param objectives: objective specs, ``NAME`` or ``NAME:K`` (``"iwae:50"``), each fitted ``replicates`` times.
    :param dynamic_binarization: draw every fit's training minibatches afresh from Bernoulli(x).
    :param options: a :class:`~pyro_vae.analyses.options.CompareOptions`; keywords of its fields replace them.
    :param fit_options: a :class:`~pyro_vae.inference.options.FitOptions` for every fit; keywords such as ``epochs=50``,
        ``lr=1e-3`` or ``clip_norm=5.0`` replace its fields.  Its fields in :data:`PER_FIT` are compare's to set.
    :returns: ``{"summary": rows, "fits": rows, "snr": rows, "gaps": rows, "nuts": {...}, "skipped": {what: why}}``;
        a diagnostic the pair cannot serve (e.g. an importance-weighted SNR for a pair with a global latent,
        the gap split for a flow guide) is skipped and named with the reason.

    {options}
    """
    if "objective" in values:
        raise ConfigError("compare fits one model per objective: give them as objectives=[...], not objective=")
    own = CompareOptions.keywords()
    options = CompareOptions.build(options, **{key: value for key, value in values.items() if key in own})
    shared = FitOptions.build(fit_options, **{key: value for key, value in values.items() if key not in own})
    shared = shared.values(exclude=PER_FIT)
    seed, particles, device, data_plate = options.seed, options.importance_samples, options.device, options.data_plate
    specs = ["{}:{}".format(*parse_objective(spec)) for spec in objectives]
    if len(set(specs)) != len(specs):
        raise ConfigError(f"objectives repeat: {', '.join(specs)}")
    seed_values = list(range(seed, seed + options.replicates))
    common = dict(make_module=make_module, data=data, eval_particles=particles, dynamic_binarization=dynamic_binarization,
                  device=device, data_plate=data_plate, fit_options=shared)
    tasks = {f"{spec.replace(':', '=')},seed={s}": dict(common, objective=spec.split(":")[0], particles=int(spec.split(":")[1]), seed=s)
             for spec in specs for s in seed_values}
    results = run_sweep(fit_and_evaluate, tasks, out / "fits", executor=options.executor, workers=options.workers,
                        progress=progress)
    fits = list(results.values())
    summary = summarise(fits, specs)
    first_seed = {spec: out / "fits" / f"{spec.replace(':', '=')},seed={seed}" for spec in specs}

    test = data["test"].to(device)
    skipped = {}
    reference = _fitted(make_module, first_seed[specs[0]], device)
    snr_rows = _snr_rows(reference, test[:options.snr_points], specs, options.snr_particles, options.snr_draws, seed,
                         skipped)
    gap_rows = []
    for spec in specs:
        pair = _fitted(make_module, first_seed[spec], device)
        gaps = _attempt(f"gap split ({spec})", skipped, inference_gaps, pair.model, pair.guide, test[:options.gap_points],
                        particles=particles, steps=options.gap_steps, seed=seed, data_plate=data_plate)
        if gaps is not None:
            gap_rows.append({"objective": spec, **{k: v for k, v in gaps.items() if k != "per_datapoint"}})
    nuts = _attempt("NUTS reference", skipped, _nuts, reference, test[:options.nuts_points], particles, options.nuts_samples,
                    options.nuts_warmup, options.nuts_chains, seed, out, data_plate)
    write_csv(out / "fits.csv", fits)
    write_csv(out / "snr.csv", snr_rows)
    write_csv(out / "gaps.csv", gap_rows)
    if nuts is not None:
        write_csv(out / "nuts.csv", nuts["points"])
        write_csv(out / "nuts_marginals.csv", nuts["rows"])
    _plot(summary, snr_rows, gap_rows, out / "figures" / "compare.png", describe_pair(reference.model, pair_module(reference)),
          skipped)
    return {"summary": summary, "fits": fits, "snr": snr_rows, "gaps": gap_rows, "nuts": nuts, "skipped": skipped}


def _attempt(what, skipped, function, *args, **kwargs):
    """``function(*args, **kwargs)``, or None with ``skipped[what]`` the reason when the pair cannot serve it."""
    try:
        return function(*args, **kwargs)
    except ConfigError as error:
        skipped[what] = str(error)
        return None


def _parameter_groups(pair, skipped):
    module = pair_module(pair)
    if module is not None:
        groups = parameter_groups(module)
    else:
        groups = {"all": [value.unconstrained() for _, value in pyro.get_param_store().items()]}
    if "all" in groups:
        skipped["gradient SNR per network"] = "the pair has no encoder and decoder modules; one group 'all' of every parameter"
    return groups


def _snr_rows(pair, x, specs, snr_particles, draws, seed, skipped):
    estimators = {tuple(spec.split(":")) for spec in specs}
    weighted = [name for name in OBJECTIVES.names() if capabilities(OBJECTIVES.get(name)).importance_weighted]
    estimators |= {(name, str(k)) for name in weighted for k in snr_particles}
    groups = _parameter_groups(pair, skipped)
    rows = []
    for name, k in sorted(estimators, key=lambda e: (e[0], int(e[1]))):
        snr = _attempt(f"gradient SNR of {name}:{k}", skipped, gradient_snr, pair.model, pair.guide, x, groups,
                       objective=name, particles=int(k), draws=draws, seed=seed)
        if snr is not None:
            rows.append({"estimator": name, "particles": int(k), **{f"{group}_snr_{stat}": values[f"snr_{stat}"]
                         for group, values in snr.items() for stat in ("mean", "median")}})
    return rows


def _nuts(pair, x, particles, samples, warmup, chains, seed, out, data_plate):
    data_plate = find_data_plate(pair.model, pair.guide, x, data_plate)
    model, guide, _ = local_pair(pair.model, pair.guide, x, data_plate)  # given one draw of any global latent
    idata = nuts_posterior(model, x, num_samples=samples, warmup_steps=warmup, num_chains=chains, seed=seed,
                           module=pair_module(pair))
    atomic_write(out / "nuts_posterior.nc", lambda tmp: idata.to_netcdf(tmp))
    khat = psis(importance_log_weights(model, guide, x, particles, seed=seed, data_plate=data_plate))["khat"]
    comparison = compare_with_guide(idata, model, guide, x, khat=khat, seed=seed)
    plot_marginals(comparison, out / "figures" / "nuts_marginals.png", model=describe_pair(pair.model, pair_module(pair)))
    from pyro_vae._arviz import arviz

    summary = arviz().summary(idata, kind="diagnostics")
    return {"points": comparison["points"], "rows": comparison["rows"], "max_r_hat": float(summary["r_hat"].max()),
            "min_ess_bulk": float(summary["ess_bulk"].min()), "spearman_khat_distance": comparison["spearman_khat_distance"],
            "divergences": int(idata.sample_stats["diverging"].values.sum())}


def _make_module(preset, event_shape):
    """The pair factory of a preset: ``model`` (a factory spec) with ``model_kwargs``, else the catalogue VAE."""
    if preset["model"] is not None:
        return ModelFactory(preset["model"], preset["model_kwargs"]).fill_event_shape(event_shape)
    return functools.partial(VAE, event_shape, latent_dim=preset["latent_dim"], prior=preset["prior"], guide=preset["guide"],
                             likelihood=preset["likelihood"], network=preset["network"], hidden=preset["hidden"])


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    result = compare(_make_module(preset, data.event_shape), {"train": data.train, "val": data.val, "test": data.test}, out,
                     preset["objectives"], dynamic_binarization=data.binarize == "dynamic", progress=progress,
                     options=CompareOptions.build(**CompareOptions.from_mapping(preset)),
                     **FitOptions.from_mapping(preset, exclude=PER_FIT))
    print(format_table(result["summary"]))
    for what, why in result["skipped"].items():
        print(f"skipped: {what} ({why})")
    snr = {f"{r['estimator']}:{r['particles']}": {k: v for k, v in r.items() if k.endswith("median")} for r in result["snr"]}
    headline = {
        "table": {r["objective"]: {k: r[k] for k in ("rank", "log_likelihood", "log_likelihood_se", "log_likelihood_estimator",
                                                      "fraction_khat_above_threshold", "test_elbo", "gap",
                                                      "active_units", "seconds_per_epoch")} for r in result["summary"]},
        "gradient_snr_median": snr,
        "gap_split": {r["objective"]: {k: r[k] for k in ("approximation_gap", "amortisation_gap", "total_gap")} for r in result["gaps"]},
        "nuts": {k: v for k, v in (result["nuts"] or {}).items() if k not in ("points", "rows")},
        "skipped": result["skipped"],
    }
    return finish(out, result["summary"], headline, started)


def _skipped_panel(ax, what, skipped):
    """An empty panel that says why it is empty: the reasons ``skipped`` gives for ``what``."""
    import textwrap

    reasons = [f"{key}: {reason}" for key, reason in skipped.items() if key.startswith(what)] or [f"no {what} to show"]
    ax.text(0.5, 0.5, textwrap.fill(reasons[0], 48), ha="center", va="center", fontsize=8, transform=ax.transAxes)
    ax.set_title(f"{what}: skipped", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _plot(summary, snr_rows, gap_rows, path, model, skipped):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    names = [r["objective"] for r in summary]
    ax = axes[0]
    ax.errorbar(names, [r["log_likelihood"] for r in summary], yerr=[_finite(r["log_likelihood_se"]) for r in summary],
                fmt="o", capsize=3, label="IS log p(x)")
    ax.errorbar(names, [r["test_elbo"] for r in summary], yerr=[_finite(r["test_elbo_se"]) for r in summary],
                fmt="s", capsize=3, label="ELBO")
    ax.set_ylabel("nats per test point (mean +- se over seeds)")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", rotation=45)
    axes[1].bar(names, [r["seconds_per_epoch"] for r in summary])
    axes[1].set_ylabel("seconds per epoch")
    axes[1].tick_params(axis="x", rotation=45)
    if not _plot_snr(axes[2], snr_rows):
        _skipped_panel(axes[2], "gradient SNR", skipped)
    if gap_rows:
        # side by side with +-2 SE, not stacked: an amortisation gap below 0 (the per-point optimiser ended
        # below the encoder, within its noise when the gap is small) shows as such
        positions = np.arange(len(gap_rows))
        for offset, part in ((-0.2, "approximation"), (0.2, "amortisation")):
            axes[3].bar(positions + offset, [r[f"{part}_gap"] for r in gap_rows], width=0.4, label=part,
                        yerr=[2 * r[f"{part}_gap_mc_se"] for r in gap_rows], capsize=3)
        axes[3].axhline(0, color="black", linewidth=0.8)
        axes[3].set_xticks(positions, [r["objective"] for r in gap_rows])
        axes[3].set_ylabel("nats per test point (+- 2 SE)")
        axes[3].legend(fontsize=8)
        axes[3].tick_params(axis="x", rotation=45)
    else:
        _skipped_panel(axes[3], "gap split", skipped)
    fig.suptitle(f"{model}\nobjectives compared: bounds, cost, gradient SNR (Rainforth et al. 2018), gap split "
                 "(Cremer et al. 2018)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_snr(ax, snr_rows):
    """Median gradient SNR of encoder and decoder against K, a line per estimator measured at several K (the
    importance-weighted ones); False where there is none."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    lines = 0
    estimators = sorted({r["estimator"] for r in snr_rows})
    swept = [name for name in estimators if len({r["particles"] for r in snr_rows if r["estimator"] == name}) > 1]
    for name, marker in zip(swept, "os^vDP"):
        rows = [r for r in snr_rows if r["estimator"] == name]
        for group, style in (("encoder", "-"), ("decoder", ":"), ("all", "--")):  # "all": a pair without the two networks
            key = f"{group}_snr_median"
            if rows and key in rows[0]:
                ax.plot([r["particles"] for r in rows], [r[key] for r in rows], style, marker=marker, label=f"{name} {group}")
                lines += 1
    if not lines:
        return False
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["particles"] for r in snr_rows}))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("particles K")
    ax.set_ylabel("median gradient SNR")
    ax.legend(fontsize=8)
    return True
