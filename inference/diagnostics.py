r"""Posterior diagnostics with ArviZ: Pareto-smoothed importance sampling and InferenceData export.

PSIS (Vehtari, Simpson, Gelman, Yao & Gabry 2024; as a VAE diagnostic: Yao, Vehtari, Simpson &
Gelman 2018, "Yes, but did it work?").  For each data point the K log importance ratios
:math:`\log p(x, z_k) - \log q(z_k \mid x)`, :math:`z_k \sim q(z \mid x)`, are smoothed by fitting a
generalised Pareto distribution to their largest values; its shape :math:`\hat k` says whether the
importance-sampled :math:`\log p(x)` can be trusted (:math:`\hat k < 0.5` good, :math:`0.5 - 0.7`
slow, :math:`> 0.7` unreliable: q's tails are too light for the posterior).  All PSIS arithmetic is
ArviZ's (``az.psislw``); nothing here re-implements it.

InferenceData.  Draws of :math:`q(z \mid x)` for chosen data points go into an
``arviz.InferenceData`` (groups ``posterior`` with ``chain``/``draw`` dims, ``log_likelihood``
:math:`\log p(x \mid z)` per draw, ``observed_data``, ``constant_data`` with the fitted parameters
as point estimates) built from plain dictionaries with ``az.from_dict``: the one module that would
change for ArviZ 1.x.
"""

import math

import numpy as np
import pyro
import torch

from pyro_vae._arviz import arviz

from .traces import latent_site, observed_log_prob, trace_pair


def psis(log_weights):
    """PSIS of per-datapoint log importance weights ``(N, K)`` (a tensor or array).

    :returns: dict with ``khat`` (N,), ``psis_log_likelihood`` (N,) = log-mean of the smoothed,
        unnormalised weights, and the fractions of :math:`\\hat k` above 0.5 and 0.7.
    """
    az = arviz()
    log_weights = np.asarray(log_weights.detach().cpu() if torch.is_tensor(log_weights) else log_weights, dtype=np.float64)
    smoothed, khat = az.psislw(log_weights, normalize=False)
    khat = np.asarray(khat)
    num_draws = log_weights.shape[-1]
    psis_ll = np.logaddexp.reduce(np.asarray(smoothed), axis=-1) - math.log(num_draws)
    return {
        "khat": khat,
        "psis_log_likelihood": psis_ll,
        "fraction_khat_above_0.5": float((khat > 0.5).mean()),
        "fraction_khat_above_0.7": float((khat > 0.7).mean()),
    }


@torch.no_grad()
def posterior_inference_data(model, guide, x, draws=1000, chains=4, site=None, params=None, attrs=None):
    """Draws of :math:`q(z \\mid x)` for each row of ``x`` as ArviZ InferenceData.

    :param x: the chosen data points ``(P, ...)``.
    :param draws: draws per chain; ``chains`` independent chains of iid draws (so ESS ~ chains x draws).
    :param params: ``{name: tensor}`` point estimates to store in ``constant_data`` (e.g. the
        decoder's parameters); default: the Pyro param store.
    :param attrs: extra attributes (strings or numbers), e.g. the prior's description.
    """
    az = arviz()
    total = draws * chains
    with pyro.plate("inference_data_draws", total, dim=-2):
        _, guide_trace = trace_pair(model, guide, x)
    node = latent_site(guide_trace, site)
    z = node["value"]  # (draws, P, d)
    with pyro.plate("inference_data_draws", total, dim=-2):
        log_lik = observed_log_prob(model, x, {node["name"]: z}, batch_shape=(total, len(x)))
    if params is None:
        params = {name: value.detach() for name, value in pyro.get_param_store().items()}
    latent_shape = z.shape[2:]
    posterior = {node["name"]: z.reshape(chains, draws, len(x), *latent_shape).cpu().numpy()}
    dims = {node["name"]: ["datapoint"] + [f"{node['name']}_dim_{i}" for i in range(len(latent_shape))],
            "x": ["datapoint"]}
    return az.from_dict(
        posterior=posterior,
        log_likelihood={"x": log_lik.reshape(chains, draws, len(x)).cpu().numpy()},
        observed_data={"x": x.reshape(len(x), -1).cpu().numpy()},
        constant_data={name.replace("$$$", "."): value.cpu().numpy() for name, value in params.items()},
        dims=dims,
        attrs={key: str(value) for key, value in (attrs or {}).items()},
    )
