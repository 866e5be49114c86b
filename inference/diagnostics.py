r"""Posterior diagnostics with ArviZ: Pareto-smoothed importance sampling and InferenceData export.

PSIS (Vehtari, Simpson, Gelman, Yao & Gabry 2024; as a VAE diagnostic: Yao, Vehtari, Simpson &
Gelman 2018, "Yes, but did it work?").  For each data point the K log importance ratios
:math:`\log p(x, z_k) - \log q(z_k \mid x)`, :math:`z_k \sim q(z \mid x)`, are smoothed by fitting a
generalised Pareto distribution to their largest values; its shape :math:`\hat k` says whether the
importance-sampled :math:`\log p(x)` can be trusted (:math:`\hat k < 0.5` good, :math:`0.5 - 0.7`
slow, :math:`> 0.7` unreliable: q's tails are too light for the posterior).  All PSIS arithmetic is
ArviZ's (``az.psislw``); nothing here re-implements it.

InferenceData: :func:`posterior_inference_data` (its docstring holds the layout), built from plain
arrays with ``az.from_dict``: the one module that would change for ArviZ 1.x.
"""

import math

import numpy as np
import pyro
import torch
from pyro.distributions.util import scale_and_mask

from pyro_vae import checks
from pyro_vae._arviz import arviz, khat_elpd
from pyro_vae.errors import ConfigError

from .iwae import _per_datapoint
from .plates import PARTICLE_PLATE, data_plate_of
from .weights import khat_threshold
from .traces import latent_site, trace_pair


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


def khat_data(idata):
    """Each data point's PSIS k-hat in ``idata`` (:func:`posterior_inference_data`, e.g. a run's ``posterior.nc``)
    as the ``az.ELPDData`` that ``az.plot_khat`` takes without a warning: ``pareto_k`` over ``datapoint`` and
    ``good_k``, the threshold for the stored number of draws (:func:`~.weights.khat_threshold`, the one ``evaluate``
    flags by).  It holds no elpd: leave-one-out over draws of q estimates nothing.

    >>> az.plot_khat(khat_data(az.from_netcdf("runs/latest/posterior.nc")), show_hlines=True)  # doctest: +SKIP
    """
    draws = idata.sample_stats.sizes["draw"]
    return khat_elpd(idata.sample_stats["khat"], khat_threshold(draws), draws)


#: Names of the trailing dims of data (and posterior-predictive draws) by their number.
DATA_DIMS = {1: ("feature",), 2: ("height", "width"), 3: ("channel", "height", "width")}

DRAWS_NOTE = ("independent draws of q(z|x), one chain: r-hat and ESS say nothing about convergence "
              "(bulk ESS ~ the number of draws); importance-weight them (sample_stats) to judge q")


@torch.no_grad()
def posterior_inference_data(model, guide, x, draws=1000, site=None, attrs=None, indices=None, data_plate=None):
    r"""``draws`` independent draws of :math:`q(z \mid x_i)` for each row :math:`x_i` of ``x``, scored
    and pushed through the model, as ArviZ InferenceData.  This docstring is the layout's one description.

    ======================== ============= ==================================================================
    group                    variable      dims: meaning
    ======================== ============= ==================================================================
    ``posterior``            ``<site>``    (chain, draw, datapoint, latent): z ~ q(z | x) at the latent site
    ``sample_stats``         ``log_joint`` (chain, draw, datapoint): log p(x, z), summed over the model's sites
    ``sample_stats``         ``log_q``     (chain, draw, datapoint): log q(z | x), summed over the guide's sites
    ``sample_stats``         ``khat``      (datapoint,): PSIS k-hat of these draws' log importance weights
    ``posterior_predictive`` ``<obs>``     (chain, draw, datapoint, \*data dims): x ~ p(x | z), one per draw
    ``observed_data``        ``<obs>``     (datapoint, \*data dims): the data, in their own shape
    ======================== ============= ==================================================================

    A discrete likelihood's draws and data (a Bernoulli's 0/1) are stored as integers, so ``az.plot_ppc`` compares
    the frequency of each value in the data with that in each draw, like with like.

    ``chain`` has length 1: the draws are independent, so r-hat and ESS check no convergence (bulk ESS is
    about ``draws``; ``attrs["draws"]`` says so, on the object and on ``posterior``).  ``log_joint - log_q``
    are the log importance weights of the very draws in ``posterior`` (arviz-devs/arviz#498), whichever
    site ``posterior`` holds; ``khat`` is :func:`psis` of them (inf for one draw, as ``az.psislw`` gives
    for a tail too short to fit), so it can differ from an evaluation's k-hat of other draws.
    ``datapoint`` has ``indices`` as coordinates (default 0..P-1); a latent event of several dims gets
    ``latent_0, latent_1, ...``; a dim named as a variable (a latent site named ``latent``) is renamed
    ``<dim>_dim``, since ArviZ would drop that variable.  Data dims are ``feature`` (vectors), ``height, width`` or ``channel,
    height, width`` (images), ``axis_<i>`` otherwise, prefixed by the site's name (``x_feature``) when
    the model has several observed sites with such dims.  There are no fitted parameters (no
    ``constant_data``) and no ``log_likelihood`` group: leave-one-out over draws of q estimates nothing,
    and ``az.loo`` / ``az.waic`` refuse the object (TypeError).

    Every sample site must lie in the data plate (found, or named by ``data_plate``);
    :func:`~pyro_vae.inference.plates.local_pair` fixes global latents first.

    :param site: the guide's latent site to store (default: its only one).
    :param attrs: extra attributes (stored as strings), e.g. the prior's description.
    :param indices: the data points' indices, the ``datapoint`` coordinates.
    """
    az = arviz()
    draws = checks.positive_int("draws", draws)
    indices = np.arange(len(x)) if indices is None else np.asarray(indices)
    if indices.shape != (len(x),):
        raise ConfigError(f"indices has shape {indices.shape}; give one index per data point ({len(x)})")
    with pyro.plate(PARTICLE_PLATE, draws, dim=-2):
        model_trace, guide_trace = trace_pair(model, guide, x)
        predictive = _predictive_draws(model_trace, draws)
    node = latent_site(guide_trace, site)
    data_plate = data_plate_of(model_trace, len(x), data_plate)
    log_joint, log_q = (_log_density(trace, data_plate, (draws, len(x))) for trace in (model_trace, guide_trace))
    latent_shape = node["value"].shape[2:]
    latent_dims = ["latent"] if len(latent_shape) == 1 else [f"latent_{i}" for i in range(len(latent_shape))]
    dims = {node["name"]: ["datapoint", *latent_dims], "log_joint": ["datapoint"], "log_q": ["datapoint"],
            **_data_dims({name: value.shape[1:] for name, (_, value) in predictive.items()})}
    # ArviZ drops a variable named as a dim (Pyro's examples/vae/vae.py names its latent site "latent"):
    # such a dim is renamed "<dim>_dim"
    renamed = {dim: f"{dim}_dim" for names in dims.values() for dim in names if dim in {*dims, "khat"}}
    dims = {name: [renamed.get(dim, dim) for dim in names] for name, names in dims.items()}
    datapoint = renamed.get("datapoint", "datapoint")
    weights = {"log_importance_weight": "log_joint - log_q, per draw and datapoint",
               "khat": "PSIS k-hat (pyro_vae.inference.diagnostics.psis) of these draws' log importance weights"}
    idata = az.from_dict(
        posterior={node["name"]: _numpy(node["value"])[None]},
        sample_stats={"log_joint": _numpy(log_joint, np.float64)[None], "log_q": _numpy(log_q, np.float64)[None]},
        posterior_predictive={name: _numpy(sample)[None] for name, (sample, _) in predictive.items()},
        observed_data={name: _numpy(value) for name, (_, value) in predictive.items()},
        coords={datapoint: indices}, dims=dims,
        posterior_attrs={"draws": DRAWS_NOTE}, sample_stats_attrs=weights,
        attrs={**{key: str(value) for key, value in (attrs or {}).items()}, "draws": DRAWS_NOTE,
               "latent_site": node["name"], **{f"sample_stats.{key}": note for key, note in weights.items()}},
    )
    # psislw needs 2 draws or more; like it does for any tail too short to fit, one draw gets k-hat = inf
    khat = psis((log_joint - log_q).T)["khat"] if draws > 1 else np.full(len(x), np.inf)
    idata.sample_stats["khat"] = ((datapoint,), khat)
    return idata


def _numpy(tensor, dtype=None):
    return np.asarray(tensor.detach().cpu().numpy(), dtype=dtype)


def _log_density(trace, data_plate, shape):
    """Sum over a trace's sample sites of their (masked, unscaled) log-densities, per draw and data point."""
    total = torch.zeros(shape, dtype=torch.float64, device="cpu")  # host-side, for ArviZ
    for name, site in trace.nodes.items():
        if site["type"] != "sample":
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)
        if frame is None:
            raise ConfigError(f"site {name!r} is outside the data plate {data_plate!r}; InferenceData needs every site "
                              "local to a data point (fix global latents first: inference.plates.local_pair)")
        log_prob = scale_and_mask(site["fn"].log_prob(site["value"]), mask=site["mask"])
        total = total + _per_datapoint(log_prob, -2, frame.dim).double().cpu().expand(shape)
    return total


def _predictive_draws(model_trace, draws):
    """``{observed site: (a draw of x ~ p(x | z) per posterior draw, the observed value)}``, run inside the
    plate of draws, the draws shaped ``(draws, *value.shape)``."""
    predictive = {}
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and site["is_observed"]:
            value = site["value"]
            sample = site["fn"].sample()
            if tuple(sample.shape) != (draws, *value.shape):
                raise ConfigError(f"observed site {name!r}: p(x | z) draws have shape {tuple(sample.shape)}, not "
                                  f"(draws, *data shape) = {(draws, *value.shape)}")
            if getattr(site["fn"].support, "is_discrete", False) and bool((value == value.round()).all()):
                # a discrete likelihood's draws and data as integers: az.plot_ppc then compares how often each value
                # occurs in the data and in each draw (like with like), where float 0/1 would get a density estimate
                sample, value = sample.to(torch.int32), value.to(torch.int32)  # as many bytes as float32
            predictive[name] = (sample, value)
    return predictive


def _data_dims(shapes):
    """InferenceData dims of each observed site from its per-datapoint shape (see posterior_inference_data)."""
    prefix = sum(len(shape) > 0 for shape in shapes.values()) > 1
    dims = {}
    for name, shape in shapes.items():
        names = DATA_DIMS.get(len(shape), tuple(f"axis_{i}" for i in range(len(shape))))
        dims[name] = ["datapoint", *(f"{name}_{dim}" if prefix else dim for dim in names)]
    return dims
