"""The options of :func:`~pyro_vae.inference.fit` and :func:`~pyro_vae.inference.evaluate`, declared once
(:mod:`pyro_vae.options`).

``fit(..., epochs=20)`` and ``fit(..., options=FitOptions(epochs=20))`` are the same call; ``pyro-vae fit`` builds its
inference flags from these fields, ``pyro-vae compare`` and :func:`~pyro_vae.analyses.compare.compare` pass every
field they do not set per fit through to each fit, and a run's ``config.json`` records them.
"""

import math
from dataclasses import dataclass
from typing import Any

from pyro_vae import checks
from pyro_vae.errors import ConfigError
from pyro_vae.options import Options, option

from .calibration import SIMULATIONS
from .estimators import DEFAULT_MAX_MEMORY
from .objectives import OBJECTIVES, parse_objective
from .optimizers import OPTIMIZERS, describe_optimizer

#: What ``on_nonfinite`` may say: raise, or restore the epoch's start with half the learning rate and retry.
NONFINITE_POLICIES = ("raise", "rollback")


def _objective(name, value):
    if isinstance(value, str):
        parse_objective(value)  # an unknown name or a bad K is refused here, listing the valid names
    return value


def _beta(name, value):
    return value if callable(value) else checks.nonnegative_float(name, value)


def _optimizer(name, value):
    describe_optimizer(value)
    return value


@dataclass(frozen=True)
class FitOptions(Options):
    """How :func:`~pyro_vae.inference.fit` fits a pair; every field is checked when made (module doc)."""

    command = "fit"

    objective: Any = option("elbo", lambda: f"NAME or NAME:K (e.g. iwae:50), NAME one of {', '.join(OBJECTIVES.names())}; "
                            "in Python also a pyro.infer.ELBO instance", _objective)
    particles: int = option(None, "particles per data point K (default: the objective's; 5 for iwae and iwae-dreg, else 1)",
                            checks.positive_int, int)
    beta: Any = option(1.0, "KL weight beta >= 0, or (in Python) a schedule step -> beta such as linear_warmup", _beta, float)
    kl_warmup: float = option(0.0, "epochs of linear KL warm-up from 0 to beta (Bowman et al. 2016; 0: none)",
                              checks.nonnegative_float, float)
    epochs: int = option(30, "passes over the training data", checks.positive_int, int)
    batch_size: int = option(128, "data points per minibatch (the whole data set where it is smaller)", checks.positive_int, int)
    lr: float = option(1e-3, "learning rate", checks.positive_float, float)
    optimizer: Any = option("adam", f"{' or '.join(OPTIMIZERS)}; in Python also a pyro.optim optimiser, a torch.optim "
                            "class or a factory params -> Optimizer", _optimizer)
    clip_norm: float = option(None, "clip the global gradient norm (nats per data point) to this value",
                              checks.positive_float, float)
    seed: int = option(0, "seeds torch, NumPy and Python before the first step: the same seed gives the same numbers "
                       "on CPU, interrupted or not", checks.seed, int)
    device: Any = option("cpu", "where data, parameters and every step live: cpu, cuda, cuda:1, ...", checks.device_spec)
    dynamic_binarization: bool = option(False, "draw x ~ Bernoulli(x) afresh for every training minibatch (the CLI "
                                        "sets it from --binarize)", cli=False)
    eval_batch_size: int = option(1000, "data points per batch of the validation and final ELBO", checks.positive_int, int)
    validate: bool = option(False, "Pyro's and torch's distribution argument checks during training (slow)")
    on_nonfinite: str = option("raise", "on a non-finite loss: raise (naming the step and site; the last checkpoint stays "
                               "intact), or rollback (restore the epoch's start, halve the lr and retry)",
                               choices=NONFINITE_POLICIES, aliases=("--on-nan",))

    def __post_init__(self):
        super().__post_init__()
        if self.kl_warmup > 0 and callable(self.beta):
            raise ConfigError("kl_warmup builds a schedule of beta; with a schedule as beta, leave kl_warmup at 0")
        if self.kl_warmup > self.epochs:
            raise ConfigError(f"kl_warmup {self.kl_warmup:g} epochs is longer than the fit's {self.epochs}: beta would end at "
                              f"{self.beta * self.epochs / self.kl_warmup:.3g} instead of {self.beta:g}; ask for at most "
                              "epochs")

    def schedule(self, steps_per_epoch):
        """The KL weight as a schedule ``step -> beta`` (constant, linear warm-up, or the user's own)."""
        from .fit import linear_warmup

        if callable(self.beta):
            return self.beta
        return linear_warmup(self.beta, math.floor(self.kl_warmup * steps_per_epoch))


def _ais(name, value):
    from .ais import AISOptions

    if not isinstance(value, AISOptions):
        raise ConfigError(f"{name} must be an AISOptions (pyro_vae.inference.ais) or None, got {type(value).__name__}")
    return value


#: The splits of a run's data that compare-runs may score.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CompareRunsOptions(Options):
    """How :func:`~pyro_vae.inference.compare_runs` scores the runs; every field is checked when made.
    ``pyro-vae compare-runs`` builds its flags from these fields (the AIS ones from
    :class:`~pyro_vae.inference.ais.AISOptions`)."""

    command = "compare-runs"

    importance_samples: int = option(1000, "importance samples K per data point", checks.positive_int, int,
                                     aliases=("--particles",))
    seed: int = option(0, "run j in the list (from 0) draws its importance samples with seed SEED + j", checks.seed, int)
    split: str = option("test", "the split of the runs' data to score (when no points are given)", choices=SPLITS)
    max_memory: int = option(DEFAULT_MAX_MEMORY, "bytes per chunk of importance samples (the CLI reads 128MB, 2GB, ...)",
                             checks.positive_int, int, cli=False)
    device: Any = option("cpu", "where the scoring runs: cpu, cuda, cuda:1, ...", checks.device_spec)
    data_dir: str = option(None, "the directory of the runs' data, in place of the one their config.json records")


@dataclass(frozen=True)
class EvaluateOptions(Options):
    """How :func:`~pyro_vae.inference.evaluate` scores a fitted pair; every field is checked when made.

    ``evaluate(..., importance_samples=5000)`` and ``evaluate(..., options=EvaluateOptions(importance_samples=5000))``
    are the same call;
    ``pyro-vae evaluate`` builds its flags from these fields (the AIS ones from
    :class:`~pyro_vae.inference.ais.AISOptions`)."""

    command = "evaluate"

    importance_samples: int = option(1000, "importance samples K per data point of the IS log-likelihood (fit's "
                                     "particles are the training objective's)", checks.positive_int, int,
                                     aliases=("--particles",))
    elbo_draws: int = option(None, "draws per point of the ELBO terms (default: as many as a standard error of about "
                             "0.01 needs)", checks.positive_int, int)
    max_memory: int = option(DEFAULT_MAX_MEMORY, "bytes per chunk of importance samples (the CLI reads 128MB, 2GB, ...)",
                             checks.positive_int, int, cli=False)
    inference_points: int = option(20, "data points whose q(z|x) draws go to posterior.nc", checks.positive_int, int,
                                   aliases=("--points",))
    draws: int = option(1000, "draws of q(z|x) per point in posterior.nc", checks.positive_int, int)
    alpha: float = option(1.0, "alpha of the mean + alpha * sd generation mode", checks.finite_float, float)
    seed: int = option(0, "seeds every draw of the evaluation", checks.seed, int)
    refine_steps: int = option(None, "also refine each point's guide by this many gradient steps (semi-amortised; "
                               "default: off)", checks.positive_int, int)
    calibration: int = option(SIMULATIONS, "simulations from the model for the calibration check of q(z|x) (0: none)",
                              checks.nonnegative_int, int)
    ais: Any = option(None, "annealed importance sampling as well (an AISOptions), or None", _ais, cli=False)
