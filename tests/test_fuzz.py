"""Property-based checks of configuration and data validation (hypothesis).

* Any valid configuration fits with a finite loss, or is refused with a ConfigError because the
  objective is infinite for its (guide, prior) pair, or because STL/DReG have no path gradient for
  a learned flow guide (``iaf``).
* Spoiling exactly one field of a valid configuration is always refused with a PyroVAEError (never
  another exception, never a silent fit).
"""

import math

import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pyro_vae.errors import ConfigError, PyroVAEError
from pyro_vae.guides import GUIDES
from pyro_vae.inference import OBJECTIVES, fit
from pyro_vae.likelihoods import LIKELIHOODS
from pyro_vae.models import VAE
from pyro_vae.networks import NETWORKS
from pyro_vae.priors import PRIORS

VALID = {
    "prior": PRIORS.names(),
    "guide": GUIDES.names(),
    "likelihood": LIKELIHOODS.names(),
    "sigma_x": [1.0, 0.1, "shared", "per-feature", "per-sample"],
    "network": NETWORKS.names(),
    "latent_dim": [1, 2, 4],
    "objective": OBJECTIVES.names(),
    "particles": [1, 2, 3],
    "beta": [0.0, 0.5, 1.0, 4.0],
    "lr": [1e-3, 0.05],
    "batch_size": [5, 16, 40],
    "epochs": [1, 2],
    "data": ["grey", "binary"],
}
BAD = {
    "prior": ["", "Normal", "gauss"],
    "guide": ["laplace", None],
    "likelihood": ["poisson", ""],
    "sigma_x": [0.0, -1.0, float("nan"), "learned"],
    "network": ["resnet"],
    "latent_dim": [0, -3],
    "objective": ["vimco", "ELBO"],
    "particles": [0, -1],
    "beta": [-1.0, float("nan")],
    "lr": [0.0, -1e-3, float("inf"), float("nan")],
    "batch_size": [0, -1],
    "epochs": [0, -2],
    "data": ["nan", "inf", "negative", "wrong-shape", "empty"],
}


def tiny_data(kind, binary):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=generator)
    if binary or kind == "binary":
        x = torch.bernoulli(x, generator=generator)
    if kind == "nan":
        x[3, 0, 2, 2] = float("nan")
    elif kind == "inf":
        x[0, 0, 0, 0] = float("inf")
    elif kind == "negative":
        x = x - 2.0
    elif kind == "wrong-shape":
        x = x[:, :, :6, :6]
    elif kind == "empty":
        x = x[:0]
    return x


def run(config):
    x = tiny_data(config["data"], binary=config["likelihood"] == "bernoulli")
    vae = VAE((1, 8, 8), latent_dim=config["latent_dim"], prior=config["prior"], guide=config["guide"],
              likelihood=config["likelihood"], sigma_x=config["sigma_x"], network=config["network"], hidden=(8,))
    return fit(vae.model, vae.guide, x, objective=config["objective"], particles=config["particles"],
               beta=config["beta"], lr=config["lr"], batch_size=config["batch_size"], epochs=config["epochs"],
               progress=False, on_nonfinite="rollback")  # lr 0.05 with beta 0 may diverge: fit's own remedy


valid_configs = st.fixed_dictionaries({key: st.sampled_from(values) for key, values in VALID.items()})


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(valid_configs)
def test_a_valid_configuration_fits_with_a_finite_loss_or_is_refused_as_infinite(config):
    try:
        result = run(config)
    except ConfigError as error:
        if "cannot detach the parameters" in str(error):  # path derivatives of a learned flow's own weights
            assert config["guide"] == "iaf" and config["objective"] in ("stl", "iwae-dreg"), error
            event("refused: path gradient of a flow guide")
            return
        assert "-inf" in str(error), error
        event("refused: infinite objective")
        return
    event("fitted")
    assert all(math.isfinite(row["train_objective"]) for row in result.history)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(valid_configs, st.data())
def test_one_bad_field_is_always_refused_with_a_pyro_vae_error(config, data):
    field = data.draw(st.sampled_from(sorted(BAD)))
    config = {**config, field: data.draw(st.sampled_from(BAD[field]))}
    if config["data"] == "negative":  # outside the support only of the Bernoulli likelihoods
        config["likelihood"] = data.draw(st.sampled_from(["bernoulli", "cbernoulli"]))
    event(f"bad {field}")
    try:
        run(config)
    except PyroVAEError:
        return
    raise AssertionError(f"bad {field}={config[field]!r} was accepted: {config}")
