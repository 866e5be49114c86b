"""Objectives, fitting and evaluation (installed as ``pyro_vae.inference``)."""

if __name__ != "pyro_vae.inference":  # imported from the repository root as a package of its own
    raise ImportError(f"this folder is the package pyro_vae.inference; import it as pyro_vae.inference (as {__name__!r} it "
                      "would be a second copy, with registries of its own)")

import logging


class _DropPlateNestingGuess(logging.Filter):
    """Pyro logs "Guessed max_plate_nesting = N" at INFO through its own stream handler whenever an ELBO
    meets its first model (twice per ``evaluate``, once per fit of a sweep); the guess is right for every
    pair fit accepts, so the line is noise in a terminal.  Only that message is dropped."""

    def filter(self, record):
        return not record.getMessage().startswith("Guessed max_plate_nesting")


logging.getLogger("pyro.infer.elbo").addFilter(_DropPlateNestingGuess())

from .ais import ais_log_likelihood, ais_log_weights
from .bdmc import bdmc
from .calibration import calibration
from .estimators import elbo_terms, importance_log_weights
from .weights import log_likelihood
from .evaluate import evaluate
from .latents import latent_statistics, reconstruction_gain
from .fit import FitResult, fit, linear_warmup
from .handlers import DataSubsampleMessenger, LatentScaleMessenger
from .iwae import IWAE
from .mean_field import MeanFieldELBO
from .model_comparison import compare_runs
from .objectives import OBJECTIVES, check_objective, make_objective
from .path_gradients import STL, IWAEDReG
from .refine import refine
from .runs import Run, catalogue_factories, load_run

__all__ = [
    "IWAE", "IWAEDReG", "MeanFieldELBO", "OBJECTIVES", "STL", "DataSubsampleMessenger", "FitResult", "LatentScaleMessenger", "Run",
    "ais_log_likelihood", "ais_log_weights", "bdmc", "calibration", "catalogue_factories", "check_objective", "compare_runs", "elbo_terms", "evaluate", "fit", "importance_log_weights", "latent_statistics",
    "log_likelihood", "reconstruction_gain", "linear_warmup", "load_run", "make_objective", "refine",
]
