r"""Latent-variable collapse (overpruning), after Asperti (2019, Section 3).

A dense VAE (784-256-64-32-16 in the seed) and the convolutional VAE of the seed's Fig. 4, each with
16 latents, are fitted; for each: the per-latent table of Table 1 (:math:`\mathrm{Var}_x \mu_j`,
:math:`E_x \sigma_j^2`, their sum, KL, reconstruction gain), the evolution of
:math:`\mathrm{Var}_x \mu_j` along training (Fig. 2, x-axis minibatches), and generation with the
collapsed latents set to 0 beside generation with them kept (Fig. 3), with the mean absolute
difference.  A latent is inactive when :math:`\mathrm{Var}_x \mu_j \le 0.01` (Burda et al. 2016).
Headline: inactive latents, dense against conv (the seed: 8 of 16 dense, 3 of 16 conv).

The seed's likelihood is a Gaussian of unstated variance (a squared error); the presets use the
Bernoulli cross-entropy of the Keras VAEs the seed builds on, and ``likelihood=`` changes it.  The two
fits run in parallel (:mod:`pyro_vae.sweep`); each one's evaluation (figures, ``posterior.nc``,
``latent_table.txt``) lands in ``fits/<network>/``.
"""

from pathlib import Path

import numpy as np
import torch

from pyro_vae.inference.weights import shown
from pyro_vae.inference import evaluate
from pyro_vae.summaries import format_latent_table
from pyro_vae.sweep import run_sweep

from . import Study
from .common import begin, finish, fit_catalogue_vae
from .options import study_presets

NAME = "collapse"
STUDY = Study("inactive latents of a dense and a convolutional VAE (Table 1, Figs. 2-3 of Asperti 2019)",
              quick_minutes=0.7, full_minutes=12)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", latent_dim=8, hidden=(64, 32), networks=("mlp", "conv"), likelihood="bernoulli",
               epochs=25, batch_size=64, lr=3e-3, importance_samples=50, track_every=20, track_points=300, seed=0,
               executor="local", workers=None),
    full=dict(data="mnist", latent_dim=16, hidden=(256, 64, 32), networks=("mlp", "conv"), likelihood="bernoulli",
              epochs=100, batch_size=128, lr=1e-3, importance_samples=1000, track_every=20, track_points=1000, seed=0,
              executor="local", workers=None),
)


def fit_network(run_dir, data, network, preset, dynamic_binarization):
    """One fit of the study (run in a worker): fit ``network``, tracking Var_x(mu_j) every
    ``track_every`` minibatches (Fig. 2); evaluate on the test split into ``run_dir`` (Table 1, Fig. 3)."""
    tracked = data["train"][: preset["track_points"]]
    evolution = []

    def watch(vae):
        @torch.no_grad()
        def track(step):
            if step % preset["track_every"] == 0:
                vae.eval()
                evolution.append((step, vae.encode(torch.bernoulli(tracked) if dynamic_binarization else tracked)
                                  .base_dist.loc.var(0, unbiased=False).tolist()))
                vae.train()
        return track

    vae, _ = fit_catalogue_vae(data["train"], preset, watch=watch, val=data["val"], network=network,
                               dynamic_binarization=dynamic_binarization)
    result = evaluate(vae.model, vae.guide, data["test"], importance_samples=preset["importance_samples"], out=run_dir, seed=preset["seed"])
    (Path(run_dir) / "latent_table.txt").write_text(format_latent_table(result) + "\n")
    keys = ("var_mu", "mean_sigma2", "moment_sum", "mean_mu", "kl", "reconstruction_gain", "active")
    return {"latents": {key: result["latents"][key] for key in keys}, "evolution": evolution, "model": vae.describe(),
            **{key: result[key] for key in ("active_units", "elbo", "collapsed_generation_mean_abs_difference")},
            **shown(result, "test_log_likelihood")}


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    tasks = {network: dict(data=splits, network=network, preset=preset, dynamic_binarization=data.binarize == "dynamic")
             for network in preset["networks"]}
    results = run_sweep(fit_network, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                        progress=progress)
    rows, headline = [], {}
    for network, result in results.items():
        latents = result["latents"]
        rows += [{"network": network, "latent": j, **{key: values[j] for key, values in latents.items()}}
                 for j in range(preset["latent_dim"])]
        headline[network] = {
            "latents": preset["latent_dim"],
            "inactive_latents": preset["latent_dim"] - result["active_units"],
            "test_elbo": result["elbo"],
            **{key: result[key] for key in ("test_log_likelihood", "test_log_likelihood_se", "test_log_likelihood_estimator",
                                            "fraction_khat_above_threshold")},
            "collapsed_generation_mean_abs_difference": result["collapsed_generation_mean_abs_difference"],
        }
        _plot_evolution(result["evolution"], latents["active"], out / "figures" / f"variance_evolution_{network}.png",
                        result["model"])
    collapsed = [network for network, result in results.items() if result["active_units"] == 0]
    if collapsed:  # said where it is shown: the terminal, headline.json and the report
        headline["all_collapsed"] = (f"every latent of the {' and the '.join(collapsed)} VAE collapsed: its decoder ignores z, "
                                     "so its samples do not depend on the prior draw and its per-latent numbers describe "
                                     "nothing learned (try more epochs, a KL warm-up or a smaller beta)")
    return finish(out, rows, headline, started)


def _plot_evolution(evolution, active, path, model):
    """Var_x(mu_j) of each latent along training, one line each, named in the legend (solid: active at the
    end, dashed: collapsed), with Burda's threshold 0.01.  Log scale: the variances span orders of
    magnitude (collapsed latents ~1e-4, active ones ~1), which a linear axis shows as a flat line at 0;
    the range is set by the values' percentiles (:func:`~pyro_vae.plots.robust_range` of their logarithms)
    so one spike does not flatten the rest; values off it are drawn at its edge and counted in the title."""
    from pyro_vae.plots import pyplot, robust_range, save_figure

    plt = pyplot()
    steps = [step for step, _ in evolution]
    values = np.array([variances for _, variances in evolution], dtype=float)
    with np.errstate(divide="ignore"):
        low, high = robust_range(np.log10(values))
    low, high = 10 ** min(low, -2.3), 10 ** max(high, -1.7)  # the threshold stays in view
    clipped = int(((values < low) | (values > high)).sum())
    palette = plt.get_cmap("tab20").colors
    colours = palette[::2] + palette[1::2]  # the ten strong colours first, then their light partners
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for j, is_active in enumerate(active):
        ax.plot(steps, np.clip(values[:, j], low, high), color=colours[j % len(colours)],
                linestyle="-" if is_active else "--", linewidth=1.8 if is_active else 0.9,
                label=f"z_{j} ({'active' if is_active else 'collapsed'})")
    ax.axhline(0.01, color="black", linestyle=":", linewidth=1, label="0.01: active above")
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlabel("minibatches")
    ax.set_ylabel("Var_x(mu_j) over tracked training points")
    note = f"; {clipped} {'value' if clipped == 1 else 'values'} off the scale, drawn at its edge" if clipped else ""
    ax.set_title(f"{model}\nper-latent variance of the posterior means along training (Asperti 2019, Fig. 2){note}",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), ncol=1 + len(active) // 13, frameon=False)
    fig.tight_layout()
    return save_figure(fig, path)
