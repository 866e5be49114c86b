r"""What the beta and sigma_x sweeps share (VAE implementation thesis ch. 5, Sec. 5.3): fits with two latents, one per setting, on
all digits and on one digit, their numbers and their figures.

Per fit, on the test split of its data set: active units, test ELBO, the squared error of the
reconstructions, the spread of the posterior means (total variance of :math:`\mu(x)`), the diversity
of deterministic samples :math:`E[x \mid z]`, :math:`z \sim p(z)`, against the data's
(:mod:`pyro_vae.analyses.sample_metrics`), and the classifier Frechet distance of the samples to the
test images (:mod:`pyro_vae.inference.sample_quality`; one classifier, trained on all digits, scores
both data sets).  Figures: the latent means coloured by class, and prior samples and reconstructions,
per fit.  The fits run in parallel (:mod:`pyro_vae.sweep`) and a stopped sweep resumes where it stopped.
"""

import torch

from pyro_vae.files import load_tensors, save_tensors
from pyro_vae.inference.sample_quality import DESCRIPTION, classifier_frechet_distance, train_feature_classifier
from pyro_vae.sweep import run_sweep

from .common import figure_title, fit_catalogue_vae, held_out_summary, shared_description
from .sample_metrics import diversity

HEADLINE = ("active_units", "latent_spread", "sample_diversity", "frechet_distance", "reconstruction_squared_error")


def digit_sets(preset, data_dir):
    """The two data sets of a sweep (:func:`~pyro_vae.analyses.common.begin`'s ``load``): all digits, and
    the preset's ``digit`` alone."""
    from pyro_vae.data import load_data

    return {"all digits": load_data(preset["data"], data_dir),
            f"digit {preset['digit']} only": load_data(preset["data"], data_dir, digit=preset["digit"])}


def fit_setting(run_dir, data, label, setting, preset):
    """One fit (run in a worker) with ``setting`` (``{"beta": ...}`` or ``{"sigma_x": ...}``); keeps the test
    codes, reconstructions and samples for the figures and the Frechet distance."""
    vae, _ = fit_catalogue_vae(data["train"], preset, objective="meanfield", **setting)
    with torch.no_grad():
        codes = vae.posterior_location_scale(data["test"])[0]
        generated = vae.generate(preset["samples"], "mean")
        reconstructions = vae.reconstruct(data["test"][:10])
    save_tensors(run_dir / "figure_data.pt", {"codes": codes, "samples": generated, "reconstructions": reconstructions})
    summary = held_out_summary(vae, data["test"])
    return {
        "data": label, **setting, "model": vae.describe(),
        **{key: summary[key] for key in ("active_units", "test_elbo", "reconstruction_squared_error")},
        "latent_spread": codes.var(0, unbiased=False).sum().item(),
        "sample_diversity": diversity(generated)[0],
        "data_diversity": diversity(data["test"])[0],
    }


def sweep_settings(out, preset, settings, sets, progress):
    """Fit every ``{name: setting}`` on each of the data ``sets`` (:func:`digit_sets`), in parallel; write the
    figures; return the rows, each with the Frechet distance of its samples."""
    tasks, labels, tests, names = {}, {}, {}, {}
    for index, (label, data) in enumerate(sets.items()):
        for name, setting in settings.items():
            key = f"{'all' if index == 0 else 'digit'},{name.replace(' ', '_')}"
            tasks[key] = dict(data={"train": data.train, "test": data.test}, label=label, setting=setting, preset=preset)
            labels[key], tests[key], names[key] = data.test_labels, data.test, name
    results = run_sweep(fit_setting, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                        progress=progress)
    full = next(iter(sets.values()))
    classifier = train_feature_classifier(full.train, full.train_labels, seed=preset["seed"])
    rows, spreads, panels, models = [], {}, {}, []
    for key, row in results.items():
        saved = load_tensors(out / "fits" / key / "figure_data.pt")
        row = {**row, "setting": names[key], "frechet_distance": classifier_frechet_distance(classifier, tests[key], saved["samples"])}
        models.append(row.pop("model"))
        rows.append(row)
        spreads[f"{row['data']}\n{names[key]}"] = (saved["codes"], labels[key])
        panels[f"{row['data']}, {names[key]}: samples"] = saved["samples"][:10]
        panels[f"{row['data']}, {names[key]}: reconstructions"] = saved["reconstructions"]
    model = shared_description(models, "by panel")
    _plot_spreads(spreads, out / "figures" / "latent_spread.png", model)
    from pyro_vae.plots import image_panels

    image_panels(panels, out / "figures" / "samples_reconstructions.png",
                 title=figure_title("decoder means at prior draws, and reconstructions of the first test images", model))
    return rows


def headline_of(rows):
    """The headline numbers of each fit, by data set and setting, and what the Frechet distance is."""
    headline = {f"{r['data']}, {r['setting']}": {key: r[key] for key in HEADLINE} for r in rows}
    headline["frechet_distance"] = DESCRIPTION
    return headline


def _plot_spreads(spreads, path, model):
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    # shared axes: a collapsed posterior shows as a dot at the origin beside the spread ones
    fig, axes = plt.subplots(1, len(spreads), figsize=(3.2 * len(spreads), 3.6), squeeze=False, sharex=True, sharey=True)
    for ax, (title, (codes, labels)) in zip(axes[0], spreads.items()):
        ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("mu_1")
        ax.set_ylabel("mu_2")
    fig.suptitle(f"Posterior means of the test data (colour: class)\n{model}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
