r"""Ancestral against deterministic generation (VAE implementation thesis ch. 5, Algorithms 6 and 7, Fig. 5.15).

A VAE whose decoder predicts both :math:`\mu_x(z)` and :math:`\sigma_x(z)` (the implementation thesis's "simple VAE",
likelihood ``gaussian`` with ``sigma_x="per-sample"``) generates from the same prior draws
:math:`z \sim p(z)` in three modes: ancestral :math:`x \sim \mathcal N(\mu_x(z), \sigma_x(z))`
(Algorithm 6), deterministic :math:`x = \mu_x(z)` (Algorithm 7) and :math:`\mu_x(z) + \alpha
\sigma_x(z)`.  Numbers per mode (all on images scaled like the data):

* ``roughness``, ``diversity`` and ``distance_to_data`` (to the nearest test image), each with its
  standard error ``*_se`` over the generated images (:mod:`~pyro_vae.analyses.sample_metrics`);
* ``frechet_distance``: to the test images, in the features of a classifier trained on the training
  split (:mod:`pyro_vae.inference.sample_quality`; not an Inception FID), on as many samples as there
  are validation images, which the reference row scores the same way.

Figures: ``generation_modes.png`` (test images, then each mode on the same prior draws, on the data's
colour scale) and ``sample_metrics.png`` (each metric per mode, mean +- 2 standard errors).

The seed's claim: Algorithm 7's samples look better than Algorithm 6's, whose pixel noise
:math:`\sigma_x(z)` dominates.
"""

import torch

from pyro_vae.inference import latent_statistics
from pyro_vae.inference.sample_quality import DESCRIPTION, classifier_frechet_distance, train_feature_classifier

from . import Study
from .common import begin, figure_title, finish, fit_catalogue_vae
from .options import study_presets
from .sample_metrics import distance_to_data, diversity, roughness

NAME = "sampling"
STUDY = Study("ancestral vs deterministic vs mean + alpha * sd generation, with roughness, diversity, distance to "
              "data (VAE implementation thesis, ch. 5)",
              quick_minutes=0.4, full_minutes=3)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", latent_dim=8, hidden=(256, 64), epochs=60, batch_size=64, lr=1e-3, alpha=1.0,
               samples=500, min_scale=1e-3, seed=0),
    full=dict(data="mnist", latent_dim=20, hidden=(400,), epochs=100, batch_size=128, lr=1e-3, alpha=1.0,
              samples=2000, min_scale=1e-3, seed=0),
)
METRICS = {"roughness": "roughness (squared difference of adjacent pixels)",
           "diversity": "diversity (mean distance between two images)",
           "distance_to_data": "distance to the nearest test image"}


def measure(images, test):
    """The :data:`METRICS` of ``images`` and their standard errors (``*_se``), against the ``test`` images."""
    numbers = {"roughness": roughness(images), "diversity": diversity(images),
               "distance_to_data": distance_to_data(images, test)}
    return {key: value for metric, (mean, se) in numbers.items() for key, value in ((metric, mean), (f"{metric}_se", se))}


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    vae, _ = fit_catalogue_vae(data.train, preset, val=data.val, likelihood="gaussian", sigma_x="per-sample",
                               progress=progress)
    classifier = train_feature_classifier(data.train, data.train_labels, seed=preset["seed"])
    with torch.no_grad():
        z = vae.prior().sample((preset["samples"],))
        modes = {
            "ancestral (Algorithm 6)": vae.generate(len(z), "ancestral", z=z),
            "deterministic (Algorithm 7)": vae.generate(len(z), "mean", z=z),
            f"mean + {preset['alpha']:g} sd": vae.generate(len(z), "mean+scale", alpha=preset["alpha"], z=z),
            "validation data (reference)": data.val,
        }
        n = min(len(z), len(data.val))  # the Frechet estimate's bias depends on n: score equal-sized sets
        rows = [{"mode": mode, **measure(images, data.test),
                 "frechet_distance": classifier_frechet_distance(classifier, data.test, images[:n])}
                for mode, images in modes.items()]
        from pyro_vae.plots import plot_generation_modes

        active = latent_statistics(vae.model, vae.guide, data.test)["active"]
        plot_generation_modes(vae, data.test, out / "figures" / "generation_modes.png", active, alpha=preset["alpha"],
                              title=figure_title(vae.describe()))
    _plot_metrics(rows, out / "figures" / "sample_metrics.png", vae.describe(), len(z))
    headline = {row["mode"]: {k: v for k, v in row.items() if k != "mode"} for row in rows}
    headline["frechet_distance"] = DESCRIPTION
    return finish(out, rows, headline, started)


def _plot_metrics(rows, path, model, samples):
    """One panel per metric of :data:`METRICS`: its value per generation mode, with error bars of 2 standard
    errors over the images; the validation images (the reference) in grey, with a dashed line across."""
    from pyro_vae.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 0.5 * len(rows) + 2.2), sharey=True)
    y = list(range(len(rows)))
    for ax, (metric, label) in zip(axes, METRICS.items()):
        for i, row in enumerate(rows):
            reference = row["mode"].endswith("(reference)")
            ax.errorbar(row[metric], i, xerr=2 * row[f"{metric}_se"], fmt="o", capsize=4,
                        color="#777777" if reference else "#1f77b4")
            if reference:
                ax.axvline(row[metric], color="#777777", linestyle="--", linewidth=0.8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [row["mode"] for row in rows])
    axes[0].invert_yaxis()
    fig.suptitle(f"{model}\nsample metrics per generation mode: mean +- 2 standard errors over the images "
                 f"({samples} generated)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
