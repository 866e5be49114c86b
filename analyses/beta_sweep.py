r"""Beta across a range, with two latents, on all digits and on a single digit (VAE implementation thesis ch. 5, Sec. 5.3, Fig. 5.17).

For each beta a VAE with d = 2 latents is fitted to the digits and to one digit class alone, and
reports active units, test ELBO, latent spread, sample diversity, reconstruction error and classifier
Frechet distance, with the figures of :mod:`~pyro_vae.analyses.setting_sweep`, the machinery it shares
with :mod:`~pyro_vae.analyses.sigma_sweep`.  The seed's claims: a large beta collapses the posterior,
so every sample is the "average digit" (diversity near 0); a small beta spreads :math:`q(z)` widely
and samples from the prior become noisy.  The largest beta of each preset is meant to reach full
collapse (no active latent), the regime the claim is about.
"""

from . import Study
from .common import begin, finish
from .options import study_presets
from .setting_sweep import digit_sets, headline_of, sweep_settings

NAME = "beta-sweep"
STUDY = Study("latent spread, collapse and sample diversity across beta, on all digits and one digit (VAE "
              "implementation thesis, ch. 5)",
              quick_minutes=0.5, full_minutes=6)
PRESETS = study_presets(
    NAME,
    quick=dict(data="digits", digit=3, betas=(0.1, 50.0), latent_dim=2, hidden=(128,), likelihood="cbernoulli",
               epochs=40, batch_size=64, lr=3e-3, samples=200, seed=0, executor="local", workers=None),
    full=dict(data="mnist", digit=3, betas=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0), latent_dim=2, hidden=(400,),
              likelihood="cbernoulli", epochs=60, batch_size=128, lr=1e-3, samples=1000, seed=0, executor="local",
              workers=None),
)


def run(out, quick=False, data_dir=None, progress=None, **overrides):
    preset, out, started, sets = begin(NAME, PRESETS, out, quick, data_dir, overrides, load=digit_sets)
    rows = sweep_settings(out, preset, {f"beta={beta:g}": {"beta": beta} for beta in preset["betas"]}, sets, progress)
    return finish(out, rows, headline_of(rows), started)
