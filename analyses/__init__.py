"""The studies of the seeds, one module each (installed as ``pyro_vae.analyses``).

Each module has ``NAME``, ``SUMMARY``, ``PRESETS`` (``quick`` for the tests, ``full`` for real
use), ``EXPECTED_MINUTES`` on 2 CPU cores, and ``run(out, quick=False, data_dir=None, **overrides)``,
which writes ``config.json``, ``versions.json``, ``results.csv``, ``headline.json`` and figures.
"""

from pyro_vae.registry import Registry

from . import beta_sweep, collapse, compare, identifiability, kl_law, latent_sweep, noise_injection, priors, sampling, sigma_sweep, two_stage

ANALYSES = Registry("analysis")
for _module in (beta_sweep, collapse, compare, identifiability, kl_law, latent_sweep, noise_injection, priors, sampling, sigma_sweep, two_stage):
    ANALYSES.register(_module.NAME)(_module)

__all__ = ["ANALYSES"]
