"""Five plate pairs of pyro-ppl's ``tests/infer/test_valid_models.py`` (``test_plate_ok``,
``test_plate_subsample_param_ok``, ``test_plate_subsample_primitive_ok``, ``test_plate_no_size_ok``, ``test_iplate_ok``)
with a Normal latent in place of Pyro's Bernoulli: our variant, full and subsampled, so that the objectives that need
reparameterised guide sites, ``stl`` and ``meanfield``, are served on Pyro's plate structures (Pyro's own Bernoulli
pairs, which they refuse in one line, are run in ``tests/test_pyro_valid_models.py``).  Run through Pyro's ``SVI``
with Pyro's ``assert_ok`` checks: ``loss``, ``differentiable_loss`` and ``loss_and_grads`` agree for one seed and every
gradient is finite.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

from pyro_vae.inference import STL
from pyro_vae.inference.mean_field import MeanFieldELBO

OBJECTIVES = {"stl": STL, "meanfield": MeanFieldELBO}
#: Pyro's estimator of the same loss value: STL changes only the gradient; meanfield is TraceMeanField_ELBO's estimate.
ORACLES = {"stl": Trace_ELBO, "meanfield": TraceMeanField_ELBO}


def _latent(p, shape=None):
    """The pair's latent: Normal(p, 1) in place of Pyro's Bernoulli(p)."""
    d = dist.Normal(p, 1.0)
    return d.expand_by(shape) if shape is not None else d


def plate_ok(subsample_size):
    def model():
        with pyro.plate("plate", 10, subsample_size) as ind:
            pyro.sample("x", _latent(torch.tensor(0.5), [len(ind)]))

    def guide():
        p = pyro.param("p", torch.tensor(0.5, requires_grad=True))
        with pyro.plate("plate", 10, subsample_size) as ind:
            pyro.sample("x", _latent(p, [len(ind)]))

    return model, guide


def plate_subsample_param_ok(subsample_size):
    def model():
        with pyro.plate("plate", 10, subsample_size):
            pyro.sample("x", _latent(torch.tensor(0.5)))

    def guide():
        with pyro.plate("plate", 10, subsample_size) as ind:
            p0 = pyro.param("p0", torch.tensor(0.0), event_dim=0)
            assert p0.shape == ()
            p = pyro.param("p", 0.5 * torch.ones(10), event_dim=0)
            assert len(p) == len(ind)
            pyro.sample("x", _latent(p))

    return model, guide


def plate_subsample_primitive_ok(subsample_size):
    def model():
        with pyro.plate("plate", 10, subsample_size):
            pyro.sample("x", _latent(torch.tensor(0.5)))

    def guide():
        with pyro.plate("plate", 10, subsample_size) as ind:
            p0 = pyro.subsample(torch.tensor(0.0), event_dim=0)
            assert p0.shape == ()
            p = pyro.subsample(0.5 * torch.ones(10), event_dim=0)
            assert len(p) == len(ind)
            pyro.sample("x", _latent(p))

    return model, guide


def plate_no_size_ok(subsample_size):
    def model():
        with pyro.plate("plate"):
            pyro.sample("x", _latent(torch.tensor(0.5), [10]))

    def guide():
        p = pyro.param("p", torch.tensor(0.5, requires_grad=True))
        with pyro.plate("plate"):
            pyro.sample("x", _latent(p, [10]))

    return model, guide


def iplate_ok(subsample_size):
    def model():
        for i in pyro.plate("plate", 4, subsample_size):
            pyro.sample(f"x_{i}", _latent(torch.tensor(0.5)))

    def guide():
        p = pyro.param("p", torch.tensor(0.5, requires_grad=True))
        for i in pyro.plate("plate", 4, subsample_size):
            pyro.sample(f"x_{i}", _latent(p))

    return model, guide


PAIRS = {"plate_ok": plate_ok, "plate_subsample_param_ok": plate_subsample_param_ok,
         "plate_subsample_primitive_ok": plate_subsample_primitive_ok, "plate_no_size_ok": plate_no_size_ok,
         "iplate_ok": iplate_ok}


def _assert_ok(model, guide, elbo, oracle):
    """Pyro's ``assert_ok``: one SVI step, then loss, differentiable_loss and loss_and_grads agree for one seed;
    and the loss is the ``oracle`` estimator's at that seed."""
    pyro.clear_param_store()
    SVI(model, guide, Adam({"lr": 1e-6}), elbo).step()
    pyro.set_rng_seed(0)
    loss = elbo.loss(model, guide)
    pyro.set_rng_seed(0)
    assert abs(elbo.differentiable_loss(model, guide).item() - loss) < 0.01
    pyro.set_rng_seed(0)
    assert abs(elbo.loss_and_grads(model, guide) - loss) < 0.01
    pyro.set_rng_seed(0)
    assert loss == pytest.approx(oracle.loss(model, guide), abs=1e-4)
    assert all(torch.isfinite(value.unconstrained().grad).all() for _, value in pyro.get_param_store().items()
               if value.unconstrained().grad is not None)


@pytest.mark.parametrize("subsample_size", [None, 2])
@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("objective", ["stl", "meanfield"])
def test_the_same_plates_with_a_normal_latent_are_served_with_pyros_loss(objective, pair, subsample_size):
    pyro.set_rng_seed(0)
    model, guide = PAIRS[pair](subsample_size)
    _assert_ok(model, guide, OBJECTIVES[objective](), ORACLES[objective]())
