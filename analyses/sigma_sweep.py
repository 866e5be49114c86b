r"""A fixed decoder scale :math:`\sigma_x` across a range against a learned one (VAE implementation thesis ch. 5, Sec. 5.3.4 and 5.4).

With a Gaussian likelihood :math:`p(x \mid z) = \mathcal N(\mu_\theta(z), \sigma_x^2 I)` the ELBO's
reconstruction term is :math:`-\|x - \mu_\theta(z)\|^2 / 2\sigma_x^2` plus a constant; multiplying the
ELBO by :math:`\sigma_x^2` shows that a fixed :math:`\sigma_x` acts as :math:`\beta = \sigma_x^2` relative
to the :math:`\sigma_x = 1` model.  A
large :math:`\sigma_x` collapses the posterior (every sample the "average digit"); a small one spreads
:math:`q(z)` and leaves holes the prior's samples fall into.  A learned :math:`\sigma_x` (one shared
scalar, ``sigma_x="shared"``) picks its own point on that line.  For each setting, with d = 2 latents,
on all digits and on one digit: active units, latent spread, sample diversity, reconstruction error,
classifier Frechet distance (:mod:`~pyro_vae.analyses.setting_sweep`, shared with
:mod:`~pyro_vae.analyses.beta_sweep`).
"""

from . import Study
from .common import begin, finish
from .options import study_presets
from .setting_sweep import digit_sets, headline_of, sweep_settings

NAME = "sigma-sweep"
STUDY = Study("fixed decoder scale sigma_x (1 ... 1e-4) against a learned one: collapse, spread, samples (VAE "
              "implementation thesis, ch. 5)",
              quick_minutes=0.5, full_minutes=5)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", digit=3, sigmas=(1.0, 0.01), learned=True, latent_dim=2, hidden=(128,),
               likelihood="gaussian", epochs=40, batch_size=64, lr=3e-3, samples=200, seed=0, executor="local",
               workers=None),
    full=dict(data="mnist", digit=3, sigmas=(1.0, 0.1, 0.01, 1e-4), learned=True, latent_dim=2, hidden=(400,),
              likelihood="gaussian", epochs=60, batch_size=128, lr=1e-3, samples=1000, seed=0, executor="local",
              workers=None),
)


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, sets = begin(NAME, PRESETS, out, quick, data_dir, overrides, load=digit_sets)
    settings = {f"sigma_x={sigma:g}": {"sigma_x": sigma} for sigma in preset["sigmas"]}
    if preset["learned"]:
        settings["sigma_x learned"] = {"sigma_x": "shared"}
    rows = sweep_settings(out, preset, settings, sets, progress)
    return finish(out, rows, headline_of(rows), started)
