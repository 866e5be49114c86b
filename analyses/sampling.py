r"""Ancestral against deterministic generation (seed 003, Algorithms 6 and 7, Fig. 5.15).

A VAE whose decoder predicts both :math:`\mu_x(z)` and :math:`\sigma_x(z)` (seed 003's "simple VAE",
likelihood ``gaussian`` with ``sigma_x="per-sample"``) generates from the same prior draws
:math:`z \sim p(z)` in three modes: ancestral :math:`x \sim \mathcal N(\mu_x(z), \sigma_x(z))`
(Algorithm 6), deterministic :math:`x = \mu_x(z)` (Algorithm 7) and :math:`\mu_x(z) + \alpha
\sigma_x(z)`.  Numbers per mode (all on images scaled like the data):

* ``roughness``: mean squared difference of horizontally and vertically adjacent pixels (high-frequency
  energy; noise raises it);
* ``diversity``: mean Euclidean distance between two generated images;
* ``distance_to_data``: mean Euclidean distance from a generated image to its nearest test image
  (how far samples fall from real digits);
* ``frechet_distance``: to the test images, in the features of a classifier trained on the training
  split (:mod:`pyro_vae.inference.sample_quality`; not an Inception FID), on as many samples as there
  are validation images, which the reference row scores the same way.

The seed's claim: Algorithm 7's samples look better than Algorithm 6's, whose pixel noise
:math:`\sigma_x(z)` dominates.
"""

import pyro
import torch

from pyro_vae.inference import fit, latent_statistics
from pyro_vae.inference.sample_quality import DESCRIPTION, classifier_frechet_distance, train_feature_classifier
from pyro_vae.models import VAE

from .common import begin, finish

NAME = "sampling"
SUMMARY = "ancestral vs deterministic vs mean + alpha * sd generation, with roughness, diversity, distance to data (seed 003)"
PRESETS = {
    "quick": dict(data="digits", latent_dim=8, hidden=(256, 64), epochs=60, batch_size=64, lr=1e-3, alpha=1.0,
                  samples=500, min_scale=1e-3, seed=0),
    "full": dict(data="mnist", latent_dim=20, hidden=(400,), epochs=100, batch_size=128, lr=1e-3, alpha=1.0,
                 samples=2000, min_scale=1e-3, seed=0),
}
EXPECTED_MINUTES = {"quick": 0.4, "full": 3}


def roughness(images):
    """Mean squared difference of adjacent pixels, per image, averaged."""
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return (dx.pow(2).mean() + dy.pow(2).mean()).item() / 2


def diversity(images):
    flat = images.flatten(1)
    distances = torch.cdist(flat, flat)
    n = len(flat)
    return (distances.sum() / (n * (n - 1))).item()


def distance_to_data(images, data):
    return torch.cdist(images.flatten(1), data.flatten(1)).min(dim=1).values.mean().item()


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data, _ = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    pyro.set_rng_seed(preset["seed"])
    vae = VAE(data.event_shape, latent_dim=preset["latent_dim"], likelihood="gaussian", sigma_x="per-sample",
              min_scale=preset["min_scale"], hidden=preset["hidden"])
    fit(vae.model, vae.guide, data.train, val=data.val, epochs=preset["epochs"], batch_size=preset["batch_size"],
        lr=preset["lr"], seed=preset["seed"], progress=progress)
    vae.eval()
    classifier = train_feature_classifier(data.train, data.train_labels, seed=preset["seed"])
    rows = []
    with torch.no_grad():
        z = vae.prior().sample((preset["samples"],))
        modes = {
            "ancestral (Algorithm 6)": vae.generate(len(z), "ancestral", z=z),
            "deterministic (Algorithm 7)": vae.generate(len(z), "mean", z=z),
            f"mean + {preset['alpha']:g} sd": vae.generate(len(z), "mean+scale", alpha=preset["alpha"], z=z),
        }
        n = min(len(z), len(data.val))  # the Frechet estimate's bias depends on n: score equal-sized sets
        for mode, images in modes.items():
            rows.append({"mode": mode, "roughness": roughness(images), "diversity": diversity(images),
                         "distance_to_data": distance_to_data(images, data.test),
                         "frechet_distance": classifier_frechet_distance(classifier, data.test, images[:n])})
        rows.append({"mode": "validation data (reference)", "roughness": roughness(data.val), "diversity": diversity(data.val),
                     "distance_to_data": distance_to_data(data.val, data.test),
                     "frechet_distance": classifier_frechet_distance(classifier, data.test, data.val[:n])})
        from pyro_vae.plots import plot_generation_modes

        active = latent_statistics(vae.model, vae.guide, data.test)["active"]
        plot_generation_modes(vae, out / "figures" / "generation_modes.png", active, alpha=preset["alpha"])
    headline = {row["mode"]: {k: v for k, v in row.items() if k != "mode"} for row in rows}
    headline["frechet_distance"] = DESCRIPTION
    return finish(out, rows, headline, started)
