r"""Beta across a range, with two latents, on all digits and on a single digit (seed 003, Sec. 5.3, Fig. 5.17).

For each beta a VAE with d = 2 latents is fitted to the digits and to one digit class alone.  Reported
per fit: active units, test ELBO, the spread of the posterior means (total variance of
:math:`\mu(x)`), and the diversity of deterministic samples :math:`E[x \mid z]`, :math:`z \sim p(z)`
(mean distance between two samples, see :mod:`pyro_vae.analyses.sampling`).  The seed's claims: a large
beta collapses the posterior, so every sample is the "average digit" (diversity near 0); a small beta
spreads :math:`q(z)` widely and samples from the prior become noisy.  Figures: the latent means coloured
by class, and prior samples, per beta.  The largest beta of each preset is meant to reach full
collapse (no active latent), the regime the claim is about.  The fits run in parallel
(:mod:`pyro_vae.sweep`) and a stopped sweep resumes where it stopped.
"""

import pyro
import torch

from pyro_vae.data import load_data
from pyro_vae.inference import elbo_terms, fit, latent_statistics
from pyro_vae.inference.sample_quality import DESCRIPTION, classifier_frechet_distance, train_feature_classifier
from pyro_vae.models import VAE
from pyro_vae.files import load_tensors, save_tensors
from pyro_vae.sweep import run_sweep

from .common import choose_preset, finish, start
from .sampling import diversity

NAME = "beta-sweep"
SUMMARY = "latent spread, collapse and sample diversity across beta, on all digits and one digit (seed 003)"
PRESETS = {
    "quick": dict(data="digits", digit=3, betas=(0.1, 50.0), latent_dim=2, hidden=(128,), likelihood="cbernoulli",
                  epochs=40, batch_size=64, lr=3e-3, samples=200, seed=0, executor="local", workers=None),
    "full": dict(data="mnist", digit=3, betas=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), latent_dim=2, hidden=(400,),
                 likelihood="cbernoulli", epochs=60, batch_size=128, lr=1e-3, samples=1000, seed=0, executor="local",
                 workers=None),
}
EXPECTED_MINUTES = {"quick": 0.5, "full": 6}


def fit_setting(run_dir, data, label, setting, preset):
    """One fit (run in a worker) with ``setting`` = ``{"beta": ..., "sigma_x": ...}``; keeps the test codes,
    reconstructions and samples for the figures and the Frechet distance."""
    pyro.clear_param_store()
    pyro.set_rng_seed(preset["seed"])
    vae = VAE(data["train"].shape[1:], latent_dim=preset["latent_dim"], likelihood=preset["likelihood"],
              sigma_x=setting.get("sigma_x", 1.0), hidden=preset["hidden"])
    fit(vae.model, vae.guide, data["train"], objective="meanfield", beta=setting.get("beta", 1.0), epochs=preset["epochs"],
        batch_size=preset["batch_size"], lr=preset["lr"], seed=preset["seed"], progress=False)
    vae.eval()
    with torch.no_grad():
        codes = vae.posterior_location_scale(data["test"])[0]
        generated = vae.generate(preset["samples"], "mean")
        reconstructions = vae.reconstruct(data["test"][:10])
        squared_error = (vae.reconstruct(data["test"]) - data["test"]).flatten(1).pow(2).sum(1).mean().item()
    save_tensors(run_dir / "figure_data.pt", {"codes": codes, "samples": generated, "reconstructions": reconstructions})
    return {
        "data": label, **setting,
        "active_units": latent_statistics(vae.model, vae.guide, data["test"])["active_units"],
        "test_elbo": elbo_terms(vae.model, vae.guide, data["test"])["elbo"],
        "reconstruction_squared_error": squared_error,
        "latent_spread": codes.var(0, unbiased=False).sum().item(),
        "sample_diversity": diversity(generated),
        "data_diversity": diversity(data["test"]),
    }


def sweep_settings(out, preset, settings, data_dir, progress):
    """Fit every ``{name: setting}`` on all digits and on one digit, in parallel; write figures; return rows.

    Each row adds the classifier Frechet distance of the samples to the test images of its data set
    (:mod:`pyro_vae.inference.sample_quality`; one classifier, trained on all digits, scores both sets).
    """
    full = load_data(preset["data"], data_dir)
    sets = {"all digits": full, f"digit {preset['digit']} only": load_data(preset["data"], data_dir, digit=preset["digit"])}
    tasks, labels, tests, names = {}, {}, {}, {}
    for index, (label, data) in enumerate(sets.items()):
        for name, setting in settings.items():
            key = f"{'all' if index == 0 else 'digit'},{name.replace(' ', '_')}"
            tasks[key] = dict(data={"train": data.train, "test": data.test}, label=label, setting=setting, preset=preset)
            labels[key], tests[key], names[key] = data.test_labels, data.test, name
    results = run_sweep(fit_setting, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                        progress=progress)
    classifier = train_feature_classifier(full.train, full.train_labels, seed=preset["seed"])
    rows, spreads, panels = [], {}, {}
    for key, row in results.items():
        saved = load_tensors(out / "fits" / key / "figure_data.pt")
        row = {**row, "setting": names[key], "frechet_distance": classifier_frechet_distance(classifier, tests[key], saved["samples"])}
        rows.append(row)
        spreads[f"{row['data']}\n{names[key]}"] = (saved["codes"], labels[key])
        panels[f"{row['data']}, {names[key]}: samples"] = saved["samples"][:10]
        panels[f"{row['data']}, {names[key]}: reconstructions"] = saved["reconstructions"]
    _plot_spreads(spreads, out / "figures" / "latent_spread.png")
    from pyro_vae.plots import image_panels

    image_panels(panels, out / "figures" / "samples_reconstructions.png",
                 title="decoder means at prior draws, and reconstructions of the first test images")
    return rows


def headline_of(rows):
    headline = {f"{r['data']}, {r['setting']}": {k: r[k] for k in ("active_units", "latent_spread", "sample_diversity",
                                                                      "frechet_distance", "reconstruction_squared_error")}
                for r in rows}
    headline["frechet_distance"] = DESCRIPTION
    return headline


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset = choose_preset(PRESETS, quick, overrides)
    out, started = start(out, NAME, {"preset": "quick" if quick else "full", **preset, "data_dir": data_dir})
    rows = sweep_settings(out, preset, {f"beta={beta:g}": {"beta": beta} for beta in preset["betas"]}, data_dir, progress)
    return finish(out, rows, headline_of(rows), started)


def _plot_spreads(spreads, path):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    # shared axes: a collapsed posterior shows as a dot at the origin beside the spread ones
    fig, axes = plt.subplots(1, len(spreads), figsize=(3.2 * len(spreads), 3.4), squeeze=False, sharex=True, sharey=True)
    for ax, (title, (codes, labels)) in zip(axes[0], spreads.items()):
        ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("mu_1")
        ax.set_ylabel("mu_2")
    fig.suptitle("Posterior means of the test data (colour: class)")
    fig.tight_layout()
    return save_figure(fig, path)
