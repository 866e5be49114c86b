"""Pyro's own structural test pairs under our objectives (issue 35), ported from pyro-ppl ``tests/infer/test_valid_models.py``
(``test_plate_ok``, ``test_plate_subsample_param_ok``, ``test_plate_subsample_primitive_ok``, ``test_plate_no_size_ok``,
``test_iplate_ok``), run through Pyro's own ``SVI`` as that file does.

Pyro's pairs have Bernoulli latents and take no data.  Each of our objectives either serves a pair, with the
consistency ``assert_ok`` checks there (``loss``, ``differentiable_loss`` and ``loss_and_grads`` agree for one seed), or
refuses it in one clear error naming why:

* ``stl`` and ``meanfield`` need reparameterised guide sites: a Bernoulli is refused;
* ``iwae`` and ``iwae-dreg`` need data to take a log-mean per data point over: a pair that takes none is refused.

The same plates with a Normal latent in place of the Bernoulli (our variant) are served by ``stl`` and ``meanfield``.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyro_vae.errors import ConfigError
from pyro_vae.inference import IWAE, STL, IWAEDReG
from pyro_vae.inference.mean_field import MeanFieldELBO

OBJECTIVES = {"stl": STL, "meanfield": MeanFieldELBO, "iwae": lambda: IWAE(num_particles=3),
              "iwae-dreg": lambda: IWAEDReG(num_particles=3)}
#: Why each objective refuses Pyro's Bernoulli pairs: (error class, message).
REFUSALS = {"stl": (ConfigError, "guide site 'x' \\(Bernoulli\\) is not reparameterisable"),
            "meanfield": (NotImplementedError, "must be fully reparameterized"),
            "iwae": (ConfigError, "take no data as their first argument"),
            "iwae-dreg": (ConfigError, "take no data as their first argument")}


def _latent(family, p, shape=None):
    """The pair's latent: Pyro's Bernoulli(p), or our variant's Normal(p, 1)."""
    d = dist.Bernoulli(p) if family == "bernoulli" else dist.Normal(p, 1.0)
    return d.expand_by(shape) if shape is not None else d


def plate_ok(family, subsample_size):
    def model():
        with pyro.plate("plate", 10, subsample_size) as ind:
            pyro.sample("x", _latent(family, torch.tensor(0.5), [len(ind)]))

    def guide():
        p = pyro.param("p", torch.tensor(0.5, requires_grad=True))
        with pyro.plate("plate", 10, subsample_size) as ind:
            pyro.sample("x", _latent(family, p, [len(ind)]))

    return model, guide


def plate_subsample_param_ok(family, subsample_size):
    def model():
        with pyro.plate("plate", 10, subsample_size):
            pyro.sample("x", _latent(family, torch.tensor(0.5)))

    def guide():
        with pyro.plate("plate", 10, subsample_size) as ind:
            p0 = pyro.param("p0", torch.tensor(0.0), event_dim=0)
            assert p0.shape == ()
            p = pyro.param("p", 0.5 * torch.ones(10), event_dim=0)
            assert len(p) == len(ind)
            pyro.sample("x", _latent(family, p))

    return model, guide


def plate_subsample_primitive_ok(family, subsample_size):
    def model():
        with pyro.plate("plate", 10, subsample_size):
            pyro.sample("x", _latent(family, torch.tensor(0.5)))

    def guide():
        with pyro.plate("plate", 10, subsample_size) as ind:
            p0 = pyro.subsample(torch.tensor(0.0), event_dim=0)
            assert p0.shape == ()
            p = pyro.subsample(0.5 * torch.ones(10), event_dim=0)
            assert len(p) == len(ind)
            pyro.sample("x", _latent(family, p))

    return model, guide


def plate_no_size_ok(family, subsample_size):
    def model():
        with pyro.plate("plate"):
            pyro.sample("x", _latent(family, torch.tensor(0.5), [10]))

    def guide():
        p = pyro.param("p", torch.tensor(0.5, requires_grad=True))
        with pyro.plate("plate"):
            pyro.sample("x", _latent(family, p, [10]))

    return model, guide


def iplate_ok(family, subsample_size):
    def model():
        for i in pyro.plate("plate", 4, subsample_size):
            pyro.sample(f"x_{i}", _latent(family, torch.tensor(0.5)))

    def guide():
        p = pyro.param("p", torch.tensor(0.5, requires_grad=True))
        for i in pyro.plate("plate", 4, subsample_size):
            pyro.sample(f"x_{i}", _latent(family, p))

    return model, guide


PAIRS = {"plate_ok": plate_ok, "plate_subsample_param_ok": plate_subsample_param_ok,
         "plate_subsample_primitive_ok": plate_subsample_primitive_ok, "plate_no_size_ok": plate_no_size_ok,
         "iplate_ok": iplate_ok}


def _assert_ok(model, guide, elbo):
    """Pyro's ``assert_ok``: one SVI step, then loss, differentiable_loss and loss_and_grads agree for one seed."""
    pyro.clear_param_store()
    SVI(model, guide, Adam({"lr": 1e-6}), elbo).step()
    pyro.set_rng_seed(0)
    loss = elbo.loss(model, guide)
    pyro.set_rng_seed(0)
    assert abs(elbo.differentiable_loss(model, guide).item() - loss) < 0.01
    pyro.set_rng_seed(0)
    assert abs(elbo.loss_and_grads(model, guide) - loss) < 0.01
    assert all(torch.isfinite(value.unconstrained().grad).all() for _, value in pyro.get_param_store().items()
               if value.unconstrained().grad is not None)


@pytest.mark.parametrize("subsample_size", [None, 2])
@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_pyros_bernoulli_pairs_are_refused_in_one_clear_error_naming_why(objective, pair, subsample_size):
    model, guide = PAIRS[pair]("bernoulli", subsample_size)
    error, message = REFUSALS[objective]
    if objective == "stl" and pair == "iplate_ok":
        message = message.replace("'x'", "'x_[0-9]'")
    pyro.clear_param_store()
    with pytest.raises(error, match=message):
        SVI(model, guide, Adam({"lr": 1e-6}), OBJECTIVES[objective]()).step()


@pytest.mark.parametrize("subsample_size", [None, 2])
@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("objective", ["stl", "meanfield"])
def test_the_same_plates_with_a_normal_latent_are_served_and_their_losses_agree(objective, pair, subsample_size):
    pyro.set_rng_seed(0)
    model, guide = PAIRS[pair]("normal", subsample_size)
    _assert_ok(model, guide, OBJECTIVES[objective]())
