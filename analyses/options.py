"""The options of :func:`~pyro_vae.analyses.compare.compare` and of every study's presets, declared once
(:mod:`pyro_vae.options`).

``compare(..., replicates=2)`` and ``compare(..., options=CompareOptions(replicates=2))`` are the same call;
``pyro-vae compare`` builds its flags from these fields, its presets and ``run`` pass them by name, and the study's
``config.json`` records them.  How each fit trains is :class:`~pyro_vae.inference.options.FitOptions`' (beside).

A study's presets are instances of its own options class (:func:`study_presets`), whose fields are the presets'
keys, each declared once: by FitOptions, by CompareOptions, or in :data:`STUDY_FIELDS`.
"""

import argparse
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from pyro_vae import checks
from pyro_vae.errors import ConfigError
from pyro_vae.inference.options import FitOptions
from pyro_vae.networks import NETWORKS
from pyro_vae.options import Options, option
from pyro_vae.sweep import EXECUTORS


def _tuple_of(check):
    def checked(name, value):
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"{name} must be a sequence, got {value!r}")
        return tuple(check(name, item) for item in value)
    return checked


def _name(name, value):
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be a name, got {value!r}")
    return value


def _mapping(name, value):
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping, got {value!r}")
    return value


def _dataset(name, value):
    """A (data set, latent dimension) pair."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name} must hold (data set, latent dimension) pairs, got {value!r}")
    return _name(name, value[0]), checks.positive_int(name, value[1])


# ---- how the command line reads the values that are not numbers or names (argparse types: a refusal is one line)

def _json(text):
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a JSON value like '{{\"latent_dim\": 8}}', got {text!r}") from None


def _name_and_size(text):
    name, _, size = text.rpartition(":")
    if not name or not size.isdigit():
        raise argparse.ArgumentTypeError(f"expected DATA:LATENT_DIM like mnist:10, got {text!r}")
    return name, int(size)


def _yes_no(text):
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


_COUNT, _COUNTS = checks.positive_int, _tuple_of(checks.positive_int)


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
                                  "measured", _COUNTS, int, nargs="+")
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
    device: Any = option("cpu", "where the fits and diagnostics run: cpu, cuda, cuda:1, ...", checks.device_spec)
    data_plate: str = option(None, "the name of the pair's data plate (default: found)", cli=False)


# ---- the studies' presets ------------------------------------------------------------------------------------------

#: Every option a study's preset holds beside those of FitOptions and CompareOptions (whose own declarations serve),
#: declared once: its help and its check.  The model's (latent_dim, hidden, likelihood, ...) are checked again where
#: the catalogue VAE is built, the names of parts by their registries.
#:
#: :meta hide-value:
STUDY_FIELDS = {
    "data": option(None, "data set (digits, mnist, ...)", _name),
    "digit": option(None, "keep only this digit of the data set", checks.nonnegative_int, int),
    "datasets": option(None, "data sets with their latent dimensions (mnist:10), one study each", _tuple_of(_dataset),
                       _name_and_size, nargs="+"),
    "latent_dim": option(None, "latent dimension d", _COUNT, int),
    "latent_dims": option(None, "latent dimensions, one fit each", _COUNTS, int, nargs="+"),
    "hidden": option(None, "mlp hidden widths", _COUNTS, int, nargs="+"),
    "second_hidden": option(None, "hidden widths of the second stage's VAE", _COUNTS, int, nargs="+"),
    "likelihood": option(None, "likelihood", _name),
    "prior": option(None, "prior", _name),
    "guide": option(None, "guide family", _name),
    "network": option(None, lambda: f"encoder network ({', '.join(NETWORKS.names())}); the decoder mirrors it", _name,
                      aliases=("--encoder",)),
    "networks": option(None, "networks, one fit each", _tuple_of(_name), nargs="+"),
    "guides": option(None, "guide families (NAME or NAME:option), one fit each", _tuple_of(_name), nargs="+"),
    "models": option(None, "models (one-layer, two-layer), one fit each", _tuple_of(_name), nargs="+"),
    "objectives": option(None, "objective specs NAME or NAME:K", _tuple_of(_name), nargs="+"),
    "model": option(None, "the factory of a pair outside the catalogue (path/to/file.py:factory)", _name),
    "model_kwargs": option(None, "keyword arguments of that factory, a JSON object", _mapping, _json),
    "one_layer": option(None, "the one-layer VAE: latent_dim and hidden, a JSON object", _mapping, _json),
    "two_layer": option(None, "the two-layer VAE: latent_dims and hidden per layer, a JSON object", _mapping, _json),
    "vamp_components": option(None, "pseudo-inputs of the VampPrior", _COUNT, int),
    "betas": option(None, "KL weights beta, one fit each", _tuple_of(checks.positive_float), float, nargs="+"),
    "sigmas": option(None, "observation noise scales sigma_x, one fit each", _tuple_of(checks.positive_float), float,
                     nargs="+"),
    "learned": option(None, "also fit sigma_x as a parameter (true or false)", checks.switch, _yes_no),
    "tolerance": option(None, "largest deviation from the moment law that still holds it (default: 3 standard errors)",
                        checks.positive_float, float),
    "samples": option(None, "samples drawn from each fitted model", _COUNT, int),
    "draws_per_point": option(None, "draws of q(z|x) per training point for the second stage", _COUNT, int),
    "second_epochs": option(None, "epochs of the second stage", _COUNT, int),
    "alpha": option(None, "alpha of the mean + alpha * sd generation mode", checks.finite_float, float),
    "min_scale": option(None, "smallest guide scale of the sampling study", checks.positive_float, float),
    "track_every": option(None, "steps between two records of the latents during training", _COUNT, int),
    "track_points": option(None, "points whose latents are recorded", _COUNT, int),
    "elbo_draws": option(None, "draws per point of the ELBO terms", _COUNT, int),
    "ais_steps": option(None, "annealing distributions T of AIS", _COUNT, int),
    "ais_chains": option(None, "AIS chains M per point", _COUNT, int),
    "bracket_points": option(None, "simulated points of the bidirectional bracket", _COUNT, int),
    "gmm_components": option(None, "components of the Gaussian-mixture baseline", _COUNT, int),
    "gmm_steps": option(None, "fitting steps of the Gaussian-mixture baseline", _COUNT, int),
    "first_noise": option(None, "the first level of injected noise", checks.positive_float, float),
    "noise_factor": option(None, "factor between two noise levels", checks.positive_float, float),
    "max_levels": option(None, "most noise levels", _COUNT, int),
    "epochs_per_level": option(None, "epochs at each noise level", _COUNT, int),
    "hold_epochs": option(None, "epochs the noise is held, one run each", _COUNTS, int, nargs="+"),
    "revival_epochs": option(None, "epochs after the noise is removed", _COUNT, int),
}


def _declaration(key, own):
    """The one declaration of a study option: the first of FitOptions', CompareOptions' and :data:`STUDY_FIELDS`' (a
    field both of FitOptions and of CompareOptions, ``seed``, is FitOptions'), else the study's ``own``
    (:func:`study_presets`)."""
    found = [spec for options in (FitOptions, CompareOptions) for spec in dataclasses.fields(options) if spec.name == key]
    found += [STUDY_FIELDS[key]] if key in STUDY_FIELDS else []
    if found and key in own or not found and key not in own:  # a mistake of ours, at import
        raise TypeError(f"study option {key!r} is declared {'twice' if found else 'nowhere'}: declare it once, in "
                        "STUDY_FIELDS or in its study's own=")
    return found[0] if found else own[key]


def study_presets(name, own=None, **presets):
    """``{"quick": ..., "full": ...}``: the presets of the study ``name`` as instances of one frozen
    :class:`~pyro_vae.options.Options` class, a field per key of the presets, each checked by its one declaration
    (:func:`_declaration`, whose default it keeps) when a preset is made and when an override replaces it
    (:func:`~.common.choose_preset`).  ``own``: ``{key: option(...)}``, the options no other study has, declared in the
    study's module."""
    keys = list(dict.fromkeys(key for values in presets.values() for key in values))
    declarations = {key: _declaration(key, own or {}) for key in keys}
    fields = [(key, Any, dataclasses.field(default=spec.default, metadata=spec.metadata)) for key, spec in declarations.items()]
    title = "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
    cls = dataclasses.make_dataclass(f"{title}StudyOptions", fields, bases=(Options,), frozen=True,
                                     namespace={"command": name, "__doc__": f"The options of the {name} study."})
    cls.__module__ = __name__
    return {which: cls(**values) for which, values in presets.items()}
