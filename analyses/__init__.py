"""The studies of the seeds, one module each (installed as ``pyro_vae.analyses``).

Each module has ``NAME``, ``PRESETS`` (``quick`` for the tests, ``full`` for real use) and
``run(out, quick=False, data_dir=None, **overrides)``, which writes ``config.json``, ``versions.json``,
``results.csv``, ``headline.json`` and figures.  What each study is, and how long it takes on 2 CPU
cores, is written once, in :data:`ANALYSES` here, so the CLI lists the studies without importing them;
a study's module is imported when it is run (:meth:`Study.load`).
"""

if __name__ != "pyro_vae.analyses":  # imported from the repository root as a package of its own
    raise ImportError(f"this folder is the package pyro_vae.analyses; import it as pyro_vae.analyses (as {__name__!r} it "
                      "would be a second copy, with registries of its own)")

import importlib
from dataclasses import dataclass

from pyro_vae.registry import Registry


@dataclass(frozen=True)
class Study:
    """One study: its module (imported by :meth:`load`), what it shows, and its minutes on 2 CPU cores
    (``full_minutes_estimated``: the full preset's are an estimate, not a measured run)."""

    module: str
    summary: str
    quick_minutes: float
    full_minutes: float
    full_minutes_estimated: bool = False

    def load(self):
        """The study's module, with its ``PRESETS`` and ``run``."""
        return importlib.import_module(f"{__name__}.{self.module}")


ANALYSES = Registry("analysis")
for _name, _study in {
    "beta-sweep": Study("beta_sweep", "latent spread, collapse and sample diversity across beta, on all digits and one digit (VAE implementation thesis, ch. 5)",
                  quick_minutes=0.5, full_minutes=6),
    "collapse": Study("collapse", "inactive latents of a dense and a convolutional VAE (Table 1, Figs. 2-3 of Asperti 2019)",
                  quick_minutes=0.7, full_minutes=12),
    "compare": Study("compare", "objectives side by side: ELBO, IS log-likelihood, gaps, gradient SNR and a NUTS reference",
                  quick_minutes=1.0, full_minutes=60),
    "guides": Study("guides", "diagonal, low-rank and flow guides and a VampPrior on one- and two-layer models: log p(x), k-hat, gaps (Burda et al. 2016)",
                  quick_minutes=0.5, full_minutes=100),
    "identifiability": Study("identifiability", "split of the data's variance into latent and noise parts across beta and sigma_x, against pPCA",
                  quick_minutes=0.5, full_minutes=3),
    "kl-law": Study("kl_law", "Var(mu) + E[sigma^2] ~ 1 and mean(mu) ~ 0 across beta; the smallest beta that keeps them (Asperti 2019, Sec. 4)",
                  quick_minutes=0.3, full_minutes=4),
    "latent-sweep": Study("latent_sweep", "active units, ELBO and IS log-likelihood against the latent size (Asperti 2019, Sec. 7)",
                  quick_minutes=0.3, full_minutes=4),
    "noise-injection": Study("noise_injection", "noise on one active latent until its gain falls below its KL, collapse, then revival (Asperti 2019, Sec. 5)",
                  quick_minutes=0.8, full_minutes=4),
    "priors": Study("priors", "Normal, Laplace and Cauchy priors: reconstruction, code sparsity, patterns, 2-D separability (Pyle, A Sparse VAE)",
                  quick_minutes=0.5, full_minutes=9),
    "sampling": Study("sampling", "ancestral vs deterministic vs mean + alpha * sd generation, with roughness, diversity, distance to data (VAE implementation thesis, ch. 5)",
                  quick_minutes=0.4, full_minutes=3),
    "sigma-sweep": Study("sigma_sweep", "fixed decoder scale sigma_x (1 ... 1e-4) against a learned one: collapse, spread, samples (VAE implementation thesis, ch. 5)",
                  quick_minutes=0.5, full_minutes=5),
    "two-stage": Study("two_stage", "a second VAE on the first one's aggregate posterior: samples from one stage vs two (Dai & Wipf 2019)",
                  quick_minutes=0.7, full_minutes=20),
}.items():
    ANALYSES.register(_name)(_study)

__all__ = ["ANALYSES", "Study"]
