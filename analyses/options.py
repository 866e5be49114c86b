"""The options of :func:`~pyro_vae.analyses.compare.compare`, declared once (:mod:`pyro_vae.options`).

``compare(..., replicates=2)`` and ``compare(..., options=CompareOptions(replicates=2))`` are the same call;
``pyro-vae compare`` builds its flags from these fields, its presets and ``run`` pass them by name, and the study's
``config.json`` records them.  How each fit trains is :class:`~pyro_vae.inference.options.FitOptions`' (beside).
"""

from dataclasses import dataclass
from typing import Any

from pyro_vae import checks
from pyro_vae.options import Options, option
from pyro_vae.sweep import EXECUTORS


def _device(name, value):
    checks.device(value)
    return value


def _counts(name, value):
    return tuple(checks.positive_int(name, k) for k in value)


@dataclass(frozen=True)
class CompareOptions(Options):
    """What :func:`~pyro_vae.analyses.compare.compare` measures beside the fits; every field is checked when made."""

    command = "compare"

    replicates: int = option(3, "fits per objective, with seeds seed, seed + 1, ...", checks.positive_int, int,
                             aliases=("--seeds",))
    seed: int = option(0, "the seed of each objective's first fit, and of every diagnostic", checks.seed, int)
    importance_samples: int = option(1000, "importance samples K of each fit's test log-likelihood and of the gap split "
                                     "(the objectives' K is in their specs, iwae:50)", checks.positive_int, int,
                                     aliases=("--particles",))
    snr_particles: tuple = option((1, 5, 50), "the K at which every importance-weighted estimator's gradient SNR is "
                                  "measured", _counts, cli=False)
    snr_draws: int = option(100, "gradient draws per SNR estimate", checks.positive_int, int)
    snr_points: int = option(100, "test points of the SNR's minibatch", checks.positive_int, int)
    gap_points: int = option(200, "test points of the inference-gap split", checks.positive_int, int)
    gap_steps: int = option(500, "per-point optimisation steps of the gap split's optimal guide", checks.positive_int, int)
    nuts_points: int = option(10, "test points of the NUTS reference", checks.positive_int, int)
    nuts_samples: int = option(500, "NUTS draws per chain", checks.positive_int, int)
    nuts_warmup: int = option(500, "NUTS warm-up steps per chain", checks.positive_int, int)
    nuts_chains: int = option(4, "NUTS chains per point", checks.positive_int, int)
    executor: str = option("local", "how the fits run: serial, local (worker processes) or ray", choices=EXECUTORS)
    workers: int = option(None, "local worker processes (default: the CPU count)", checks.positive_int, int)
    device: Any = option("cpu", "where the fits and diagnostics run: cpu, cuda, cuda:1, ...", _device)
    data_plate: str = option(None, "the name of the pair's data plate (default: found)", cli=False)
