r"""Variance identifiability: where does the data's variance go, latent path or observation noise?

Seed 003 (Sections 5.3.4, 5.5) argues that beta, a fixed decoder scale :math:`\sigma_x` and
deterministic sampling all act on one thing: how the total variance of the data is split between
the latent part and the observation noise, a split the VAE objective does not pin down, whereas
probabilistic PCA does (latent: the d largest eigenvalues less :math:`\sigma^2`; noise:
:math:`D \sigma^2`).  For each fitted model, on the test split, by the law of total variance

.. math::

    \operatorname{tr} \operatorname{Cov}(x) \approx
    \underbrace{\operatorname{tr} \operatorname{Cov}_{z}\big(E[x \mid z]\big)}_{\text{latent part}}
    + \underbrace{E_{z} \operatorname{tr} \operatorname{Cov}(x \mid z)}_{\text{noise part}},

with :math:`z` drawn from the aggregate posterior :math:`q(z) = E_x q(z \mid x)` (one draw per test
point) or from the prior.  Settings: a grid of beta (with :math:`\sigma_x` learned), a grid of fixed
:math:`\sigma_x` (beta = 1), learned :math:`\sigma_x` at beta = 1, and pPCA; a Gaussian mixture
fitted to the data gives a further log-likelihood reference, and one fitted to draws of each VAE's
aggregate posterior gives a plug-in :math:`\mathrm{KL}(q(z) \| p(z))`.  Writes
``results.csv``, ``headline.json`` and ``figures/variance_split.png``.  The VAE fits run in parallel
(:mod:`pyro_vae.sweep`; ``executor``, ``workers``) and resume.
"""

import functools

import numpy as np
import torch

from pyro_vae.inference.weights import shown
from pyro_vae.inference import elbo_terms, importance_log_weights, latent_statistics, log_likelihood
from pyro_vae.models.gmm import GaussianMixturePair
from pyro_vae.models.ppca import PPCA
from pyro_vae.sweep import run_sweep

from . import Study
from .common import begin, finish, fit_catalogue_vae, fit_fresh, shared_description
from .options import study_presets

NAME = "identifiability"
STUDY = Study("split of the data's variance into latent and noise parts across beta and sigma_x, against pPCA",
              quick_minutes=0.5, full_minutes=3)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", latent_dim=4, hidden=(64,), epochs=15, batch_size=128, lr=3e-3,
               betas=(0.25, 4.0), sigmas=(1.0, 0.1), importance_samples=50, gmm_components=5, gmm_steps=50, seed=0,
               executor="local", workers=None),
    full=dict(data="digits", latent_dim=8, hidden=(256, 64), epochs=200, batch_size=64, lr=1e-3,
              betas=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0), sigmas=(1.0, 0.3, 0.1, 0.03, 0.01), importance_samples=1000,
              gmm_components=10, gmm_steps=300, seed=0, executor="local", workers=None),
)


@torch.no_grad()
def _log_likelihood(vae, x, particles):
    """The IS log-likelihood of ``x`` with its error, estimator and k-hat share (:func:`~pyro_vae.inference.weights.shown`)."""
    return shown(log_likelihood(importance_log_weights(vae.model, vae.guide, x, particles)))


def variance_split(vae, x):
    """Latent and noise parts of the model's variance on ``x`` (see the module doc), in squared data units."""
    vae.eval()
    q_draws = vae.encode(x).sample()
    prior_draws = vae.prior().sample((len(x),))
    parts = {"total_data": _trace_cov(x)}
    for label, z in (("aggregate_posterior", q_draws), ("prior", prior_draws)):
        observation = vae.decode(z)
        parts[f"latent_{label}"] = _trace_cov(observation.mean)
        parts[f"noise_{label}"] = observation.variance.flatten(1).sum(1).mean().item()
    parts["reconstruction_squared_error"] = (vae.reconstruct(x) - x).flatten(1).pow(2).sum(1).mean().item()
    return parts


def _trace_cov(values):
    flat = values.flatten(1)
    return flat.var(0, unbiased=False).sum().item()


def _key(setting):
    sigma_x = "learned" if setting["sigma_x"] == "shared" else f"{setting['sigma_x']:g}"
    return f"beta={setting['beta']:g},sigma_x={sigma_x}"


def _settings(preset):
    settings = [dict(label=f"beta={b:g}, sigma_x learned", beta=b, sigma_x="shared") for b in preset["betas"]]
    settings += [dict(label=f"sigma_x={s:g}", beta=1.0, sigma_x=s) for s in preset["sigmas"]]
    if 1.0 not in preset["betas"]:
        settings.append(dict(label="sigma_x learned", beta=1.0, sigma_x="shared"))
    return settings


def fit_setting(run_dir, data, setting, preset):
    """One fit of the sweep (run in a worker): fit at ``setting``'s beta and sigma_x; its variance split."""
    x_test = data["test"]
    vae, _ = fit_catalogue_vae(data["train"], preset, val=data["val"], objective="meanfield", beta=setting["beta"],
                               likelihood="gaussian", sigma_x=setting["sigma_x"])
    # not held_out_summary: the variance split draws from the random stream between the statistics and the ELBO
    stats = latent_statistics(vae.model, vae.guide, x_test)
    row = {"setting": setting["label"], "beta": setting["beta"], "sigma_x": setting["sigma_x"], "model": vae.describe()}
    row.update(variance_split(vae, x_test))
    row.update({
        "elbo": elbo_terms(vae.model, vae.guide, x_test)["elbo"],
        **_log_likelihood(vae, x_test, preset["importance_samples"]),
        "active_units": stats["active_units"],
        "latent_variances": " ".join(f"{v:.3f}" for v in stats["moment_sum"]),
        "learned_sigma_x": vae.likelihood.scale().mean().item(),
        "aggregate_posterior_kl_to_prior": aggregate_posterior_kl(vae, data["train"], x_test, preset),
    })
    return row


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    tasks = {_key(setting): dict(data=splits, setting=setting, preset=preset) for setting in _settings(preset)}
    rows = list(run_sweep(fit_setting, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                          progress=progress).values())
    models = [row.pop("model") for row in rows]
    rows.append(_ppca_row(data, preset["latent_dim"]))
    rows.append(_gmm_row(data, preset))
    _plot(rows, out / "figures" / "variance_split.png", preset, shared_description(models, "by row"))
    ppca = rows[-2]
    headline = {
        "total_data_variance": ppca["total_data"],
        "ppca_latent_fraction": ppca["latent_aggregate_posterior"] / ppca["total_data"],
        "latent_fraction_by_setting": {
            r["setting"]: r["latent_aggregate_posterior"] / r["total_data"] for r in rows[:-2]
        },
        "test_log_likelihood_by_setting": {r["setting"]: r["log_likelihood"] for r in rows},
        "test_log_likelihood_se_by_setting": {r["setting"]: r.get("log_likelihood_se", 0.0) for r in rows},
        "test_log_likelihood_estimator_by_setting": {r["setting"]: r.get("log_likelihood_estimator", "exact") for r in rows},
    }
    return finish(out, rows, headline, started)


def _fit_gmm(train, preset):
    """A Gaussian mixture of ``gmm_components`` fitted to ``train`` by full-batch SVI (exact, enumerated)."""
    build = functools.partial(GaussianMixturePair, train.shape[1:], preset["gmm_components"], init_data=train)
    gmm, _ = fit_fresh(build, train, preset["seed"], objective="enum", epochs=preset["gmm_steps"], batch_size=len(train),
                       lr=0.05, progress=False)
    return gmm


@torch.no_grad()
def aggregate_posterior_kl(vae, train, test, preset):
    r"""Plug-in estimate of :math:`\mathrm{KL}(q(z) \| p(z))`: a Gaussian mixture fitted to draws of the
    aggregate posterior on the training data (Asperti 2019 reads :math:`q(z)` as a mixture), scored on
    draws for the test data, :math:`\overline{\log \hat q(z)} - \overline{\log p(z)}`."""
    vae.eval()
    with torch.enable_grad():
        gmm = _fit_gmm(vae.encode(train).sample(), preset)
    z = vae.encode(test).sample()
    return (gmm.exact_log_likelihood(z).mean() - vae.prior().log_prob(z).mean()).item()


def _gmm_row(data, preset):
    gmm = _fit_gmm(data.train.flatten(1), preset)
    with torch.no_grad():
        log_lik = gmm.exact_log_likelihood(data.test.flatten(1)).mean().item()
    return {"setting": f"Gaussian mixture on the data ({preset['gmm_components']} components)", "beta": None,
            "sigma_x": None, "total_data": _trace_cov(data.test), "elbo": log_lik, "log_likelihood": log_lik}


def _ppca_row(data, latent_dim):
    model = PPCA(latent_dim).fit(data.train)
    x = data.test.flatten(1).double().numpy()
    split = model.variance_split()
    centred = x - model.mean_
    m = model.loadings_.T @ model.loadings_ + model.noise_variance_ * np.eye(latent_dim)
    posterior_mean = centred @ np.linalg.solve(m, model.loadings_.T).T
    return {
        "setting": "pPCA (closed form)", "beta": 1.0, "sigma_x": float(np.sqrt(model.noise_variance_)),
        "total_data": float(x.var(0).sum()),
        "latent_aggregate_posterior": float((posterior_mean @ model.loadings_.T).var(0).sum()
                                            + np.trace(model.loadings_ @ (model.noise_variance_ * np.linalg.inv(m)) @ model.loadings_.T)),
        "noise_aggregate_posterior": split["noise"],
        "latent_prior": split["latent"], "noise_prior": split["noise"],
        "reconstruction_squared_error": float(((posterior_mean @ model.loadings_.T + model.mean_ - x) ** 2).sum(1).mean()),
        "elbo": model.score(x), "log_likelihood": model.score(x),
        "active_units": int((model.eigenvalues_[:latent_dim] > model.noise_variance_).sum()),
        "latent_variances": " ".join("1.000" for _ in range(latent_dim)),
        "learned_sigma_x": float(np.sqrt(model.noise_variance_)),
    }


def _plot(rows, path, preset, model):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    reference = next(r for r in rows if r["setting"].startswith("pPCA"))
    rows = [r for r in rows if "latent_aggregate_posterior" in r]
    labels = [r["setting"] for r in rows]
    latent = np.array([r["latent_aggregate_posterior"] for r in rows])
    noise = np.array([r["noise_aggregate_posterior"] for r in rows])
    total = reference["total_data"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.8))
    y = np.arange(len(rows))
    ax.barh(y, latent, color="#1f77b4", label="latent part  tr Cov_z E[x|z],  z ~ q(z)")
    ax.barh(y, noise, left=latent, color="#ff7f0e", alpha=0.7, label="noise part  E_z tr Cov(x|z)")
    ax.axvline(reference["latent_aggregate_posterior"], color="#1f77b4", linestyle="--", linewidth=1, label="pPCA latent part")
    ax.axvline(total, color="black", linestyle=":", linewidth=1.2, label="total variance of the test data")
    limit = 2.0 * total
    for i, (a, b) in enumerate(zip(latent, noise)):
        if a + b > limit:  # the bar runs off the axis: say how far
            ax.text(limit * 0.99, i, f"total {a + b:.3g} ->", va="center", ha="right", fontsize=8, color="white")
    ax.set_xlim(0, limit)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("variance (sum over features, test split)")
    ax.set_title(f"Where the variance goes: {preset['data']}, d = {preset['latent_dim']}\n{model}; against pPCA",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
