"""pyro-vae: variational autoencoders as Pyro model/guide pairs.

The package face re-exports the public names lazily, so ``import pyro_vae`` stays cheap::

    import pyro_vae
    data = pyro_vae.load_data("digits")
    vae = pyro_vae.VAE(data.event_shape, latent_dim=8, prior="laplace", likelihood="cbernoulli")
    result = pyro_vae.fit(vae.model, vae.guide, data.train, val=data.val, epochs=20)
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "VAE": "pyro_vae.models",
    "IWAE": "pyro_vae.inference",
    "IWAEDReG": "pyro_vae.inference",
    "STL": "pyro_vae.inference",
    "run_sweep": "pyro_vae.sweep",
    "fit": "pyro_vae.inference",
    "elbo_terms": "pyro_vae.inference",
    "evaluate": "pyro_vae.inference",
    "compare_runs": "pyro_vae.inference",
    "load_run": "pyro_vae.inference",
    "linear_warmup": "pyro_vae.inference",
    "make_objective": "pyro_vae.inference",
    "FitOptions": "pyro_vae.inference.options",
    "EvaluateOptions": "pyro_vae.inference.options",
    "CompareRunsOptions": "pyro_vae.inference.options",
    "AISOptions": "pyro_vae.inference.ais",
    "compare": "pyro_vae.analyses.compare",
    "CompareOptions": "pyro_vae.analyses.options",
    "load_data": "pyro_vae.data",
    "make_prior": "pyro_vae.priors",
    "make_likelihood": "pyro_vae.likelihoods",
    "make_network": "pyro_vae.networks",
    "PyroVAEError": "pyro_vae.errors",
    "ConfigError": "pyro_vae.errors",
    "DataError": "pyro_vae.errors",
    "RunDirError": "pyro_vae.errors",
    "NonFiniteLossError": "pyro_vae.errors",
    "UnknownNameError": "pyro_vae.errors",
    "UnsafeFileError": "pyro_vae.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
