r"""The two-stage VAE (Dai & Wipf 2019, "Diagnosing and enhancing VAE models"; Asperti 2019, Section 6.2).

Stage 1 is a VAE on the data with a learned decoder scale (Gaussian likelihood, one shared
:math:`\sigma_x`, as Dai & Wipf's learned :math:`\gamma`).  Its aggregate posterior
:math:`q(z) = E_x q(z \mid x)` need not match the prior :math:`\mathcal N(0, I)`, so prior draws fall
where no data point was encoded.  Stage 2 is a second VAE fitted to draws :math:`z \sim q(z \mid x)` of
the training data (latents of the same size, a learned scale per coordinate); it learns to map
:math:`u \sim \mathcal N(0, I)` onto :math:`q(z)`.  Generation:

* one stage: :math:`z \sim \mathcal N(0, I)`, :math:`x = E[x \mid z]`;
* two stages: :math:`u \sim \mathcal N(0, I)`, :math:`z \sim p_{\text{stage 2}}(z \mid u)`, :math:`x = E[x \mid z]`.

Stage 2 draws z ancestrally rather than taking its decoder mean: Dai & Wipf take the mean because
their stage-2 scale :math:`\gamma \to 0`, but here the stage-1 codes of inactive latents are pure
:math:`\mathcal N(0, 1)` noise, which stage 2 models with a scale near 1 and collapsed latents, so the
mean would decode every u to the same image.  The per-coordinate scale keeps the noise coordinates
from inflating the scale of the informative ones (one shared scale did, in our runs).

Numbers: the classifier Frechet distance of each set of samples to the test images
(:mod:`pyro_vae.inference.sample_quality`; not an Inception FID), and how far each stage's aggregate
posterior is from its prior: the KL from the Gaussian fit of the codes to :math:`\mathcal N(0, I)`,
:math:`\tfrac12(\operatorname{tr}\Sigma + \|m\|^2 - d - \log\det\Sigma)`.  Dai & Wipf's claim: the
second stage closes the gap between :math:`q(z)` and the prior, and its samples are better.
"""

import torch

from pyro_vae.inference import elbo_terms, latent_statistics
from pyro_vae.inference.sample_quality import DESCRIPTION, classifier_frechet_distance, train_feature_classifier

from . import Study
from .common import begin, figure_title, finish, fit_catalogue_vae
from .options import study_presets

NAME = "two-stage"
STUDY = Study("a second VAE on the first one's aggregate posterior: samples from one stage vs two (Dai & Wipf 2019)",
              quick_minutes=0.7, full_minutes=20)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", latent_dim=8, hidden=(256, 64), epochs=60, second_hidden=(256, 256), second_epochs=60,
               draws_per_point=5, batch_size=64, lr=1e-3, samples=500, seed=0),
    full=dict(data="mnist", latent_dim=16, hidden=(400,), epochs=100, second_hidden=(512, 512), second_epochs=200,
              draws_per_point=5, batch_size=128, lr=1e-3, samples=2000, seed=0),
)


def gaussian_fit_kl_to_standard_normal(codes):
    """KL( N(mean, cov) of ``codes (n, d)`` || N(0, I) ), nats."""
    mean, cov = codes.mean(0), torch.cov(codes.T).reshape(codes.shape[1], codes.shape[1])
    return 0.5 * (torch.trace(cov) + mean.pow(2).sum() - codes.shape[1] - torch.logdet(cov)).item()


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, data = begin(NAME, PRESETS, out, quick, data_dir, overrides)
    first, _ = fit_catalogue_vae(data.train, preset, val=data.val, objective="meanfield", likelihood="gaussian",
                                 sigma_x="shared", progress=progress)
    with torch.no_grad():
        codes = first.encode(data.train).sample((preset["draws_per_point"],)).flatten(0, 1)
        val_codes = first.encode(data.val).sample()
    # other initial weights than stage 1's, the same training draws
    second, _ = fit_catalogue_vae(codes, preset, init_seed=preset["seed"] + 1, val=val_codes, objective="meanfield",
                                  likelihood="gaussian", sigma_x="per-feature", hidden=preset["second_hidden"],
                                  epochs=preset["second_epochs"], progress=progress)

    classifier = train_feature_classifier(data.train, data.train_labels, seed=preset["seed"])
    with torch.no_grad():
        z_one = first.prior().sample((preset["samples"],))
        z_two = second.generate(preset["samples"], "ancestral")
        samples = {"one stage": first.generate(len(z_one), "mean", z=z_one),
                   "two stages": first.generate(len(z_two), "mean", z=z_two)}
        second_codes = second.encode(val_codes).sample()
    n = min(preset["samples"], len(data.val))  # the estimate's bias depends on n: score equal-sized sets
    rows = [{"generation": name, "frechet_distance": classifier_frechet_distance(classifier, data.test, images[:n])}
            for name, images in samples.items()]
    rows.append({"generation": "validation images (reference)",
                 "frechet_distance": classifier_frechet_distance(classifier, data.test, data.val[:n])})
    stage_rows = [
        {"stage": 1, "held_out_elbo": elbo_terms(first.model, first.guide, data.test)["elbo"],
         "active_units": latent_statistics(first.model, first.guide, data.test)["active_units"],
         "aggregate_posterior_kl_to_prior": gaussian_fit_kl_to_standard_normal(val_codes)},
        {"stage": 2, "held_out_elbo": elbo_terms(second.model, second.guide, val_codes)["elbo"],
         "active_units": latent_statistics(second.model, second.guide, val_codes)["active_units"],
         "aggregate_posterior_kl_to_prior": gaussian_fit_kl_to_standard_normal(second_codes)},
    ]
    from pyro_vae.plots import image_panels
    from pyro_vae.files import write_csv

    write_csv(out / "stages.csv", stage_rows)
    image_panels({f"{name}: decoder means": images[:20] for name, images in samples.items()},
                 out / "figures" / "samples.png",
                 title=figure_title("one stage (z ~ N(0, I)) against two stages (z from stage 2)",
                                    f"stage 1: {first.describe()}", f"stage 2: {second.describe()}"))
    headline = {**{r["generation"]: r["frechet_distance"] for r in rows}, "frechet_distance": DESCRIPTION,
                "stages": stage_rows}
    return finish(out, rows, headline, started)
