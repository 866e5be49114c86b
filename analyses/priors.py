r"""Sparse priors: Normal, Laplace and Cauchy (with a Cauchy guide), after Pyle, "A Sparse VAE".

For each data set the same VAE is fitted with each (prior, guide) pair and reports, on the test split:
reconstruction squared error, ELBO, the sparsity of the codes :math:`\mu(x)` (fraction of
:math:`|\mu_j| < 0.1\, \mathrm{sd}(\mu_j)` and the excess kurtosis of :math:`\mu_j`, averaged over active
latents; a Laplace code has excess kurtosis 3, a Gaussian 0), and for two latents with labels the
5-nearest-neighbour accuracy of the classes from :math:`\mu(x)` (separability).  Figures: the image each
latent decodes to, :math:`E[x \mid z = s e_j] - E[x \mid z = 0]` with s the prior's scale ("patterns").

Data sets: ``synthetic-patches`` (5x5, five basis images with Laplace coefficients, 10 latents),
``digits`` (2 latents, labelled), ``natural-patches`` (12x12 grey photographs, 25 latents; Pyle used
CIFAR), and MNIST with 10 and 2 latents in the full preset.
"""

from pathlib import Path

import torch

from pyro_vae.data import load_data
from pyro_vae.sweep import run_sweep

from . import Study
from .common import begin, figure_title, finish, fit_catalogue_vae, held_out_summary
from .options import study_presets

NAME = "priors"
STUDY = Study("Normal, Laplace and Cauchy priors: reconstruction, code sparsity, patterns, 2-D separability (Pyle, "
              "A Sparse VAE)",
              quick_minutes=0.5, full_minutes=9)
PAIRS = (("normal", "normal"), ("laplace", "normal"), ("cauchy", "cauchy"))
PRESETS = study_presets(
    NAME,
    quick=dict(datasets=(("synthetic-patches", 10),), hidden=(64,), epochs=20, batch_size=128, lr=3e-3, seed=0,
               executor="local", workers=None),
    full=dict(datasets=(("synthetic-patches", 10), ("natural-patches", 25), ("digits", 2), ("mnist", 10), ("mnist", 2)),
              hidden=(256, 64), epochs=100, batch_size=128, lr=1e-3, seed=0, executor="local", workers=None),
)


def excess_kurtosis(values):
    centred = values - values.mean(0)
    return (centred.pow(4).mean(0) / centred.pow(2).mean(0).pow(2) - 3.0)


def knn_accuracy(codes, labels, test_codes, test_labels, k=5):
    distances = torch.cdist(test_codes, codes)
    neighbours = labels[distances.topk(k, largest=False).indices]
    predicted = torch.mode(neighbours, dim=1).values
    return (predicted == test_labels).float().mean().item()


def check_datasets(preset, data_dir):
    """Load each data set of the preset once (:func:`~pyro_vae.analyses.common.begin`'s ``load``), so a
    missing one fails before any worker starts; the workers load their own."""
    for name in dict.fromkeys(name for name, _ in preset["datasets"]):
        load_data(name, data_dir)


def fit_prior(run_dir, name, data_dir, latent_dim, prior, guide, preset, figures):
    """One fit of the study (run in a worker): fit, measure the codes, draw the decoder patterns."""
    likelihood = "bernoulli" if name in ("digits", "mnist") else "gaussian"
    binarize = "dynamic" if likelihood == "bernoulli" else "none"
    data = load_data(name, data_dir, binarize=binarize)
    vae, _ = fit_catalogue_vae(data.train, preset, latent_dim=latent_dim, prior=prior, guide=guide, likelihood=likelihood,
                               sigma_x=1.0 if likelihood == "bernoulli" else "shared", objective="meanfield",
                               dynamic_binarization=binarize == "dynamic")
    with torch.no_grad():
        codes = vae.posterior_location_scale(data.test)[0]
        summary = held_out_summary(vae, data.test)
        active = torch.tensor(summary["active"], device=codes.device)
        near_zero = (codes.abs() < 0.1 * codes.std(0)).float().mean(0)
        row = {
            "data": name, "latent_dim": latent_dim, "prior": prior, "guide": guide,
            **{key: summary[key] for key in ("reconstruction_squared_error", "test_elbo", "active_units")},
            "fraction_near_zero": near_zero[active].mean().item() if active.any() else float("nan"),
            "excess_kurtosis": excess_kurtosis(codes)[active].mean().item() if active.any() else float("nan"),
        }
        if latent_dim == 2 and data.train_labels is not None:
            train_codes = vae.posterior_location_scale(data.train)[0]
            row["knn_accuracy_2d"] = knn_accuracy(train_codes, data.train_labels, codes, data.test_labels)
        if len(data.event_shape) == 3:
            _plot_patterns(vae, Path(figures) / f"patterns_{name}_{latent_dim}_{prior}.png",
                           figure_title(f"{vae.describe()}, on {name}"))
    return row


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, _ = begin(NAME, PRESETS, out, quick, data_dir, overrides, load=check_datasets)
    tasks = {f"{name},d={latent_dim},{prior}": dict(name=name, data_dir=data_dir, latent_dim=latent_dim, prior=prior,
                                                    guide=guide, preset=preset, figures=str(out / "figures"))
             for name, latent_dim in preset["datasets"] for prior, guide in PAIRS}
    rows = list(run_sweep(fit_prior, tasks, out / "fits", executor=preset["executor"], workers=preset["workers"],
                          progress=progress).values())
    headline = {f"{r['data']} d={r['latent_dim']} {r['prior']}": {k: r[k] for k in
                ("reconstruction_squared_error", "test_elbo", "active_units", "excess_kurtosis", "fraction_near_zero")}
                for r in rows}
    return finish(out, rows, headline, started)


@torch.no_grad()
def _plot_patterns(vae, path, title):
    """The image each latent decodes to, less the image of z = 0 (Pyle's patterns): what one unit of
    each latent, at the prior's scale, adds to the picture."""
    from pyro_vae.plots import image_panels

    device = next(vae.parameters()).device
    scale = vae.prior.scale if hasattr(vae.prior, "scale") else torch.ones(vae.latent_dim, device=device)
    z = torch.diag(scale)
    base = vae.generate(1, "mean", z=torch.zeros(1, vae.latent_dim, device=device))
    patterns = vae.generate(vae.latent_dim, "mean", z=z) - base
    label = "the pattern of each latent j: E[x | z = s e_j] - E[x | z = 0], s the prior's scale"
    return image_panels({label: patterns}, path, title=title, columns=min(vae.latent_dim, 13))
