"""Objectives, fitting and evaluation (installed as ``pyro_vae.inference``)."""

from .evaluate import elbo_terms
from .fit import FitResult, fit, linear_warmup
from .handlers import DataSubsampleMessenger, LatentScaleMessenger
from .iwae import IWAE
from .objectives import OBJECTIVES, check_objective, make_objective
from .runs import Run, load_run

__all__ = [
    "IWAE", "OBJECTIVES", "DataSubsampleMessenger", "FitResult", "LatentScaleMessenger", "Run",
    "check_objective", "elbo_terms", "fit", "linear_warmup", "load_run", "make_objective",
]
