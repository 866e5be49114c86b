"""MeanFieldELBO is Pyro's TraceMeanField_ELBO, value and gradient, while scoring fewer sites."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.inference import DataSubsampleMessenger, LatentScaleMessenger, MeanFieldELBO, make_objective
from pyro_vae.models import VAE


def loss_and_gradients(objective, model, guide, x, params, seed):
    pyro.set_rng_seed(seed)
    loss = objective.differentiable_loss(model, guide, x)
    return loss, torch.autograd.grad(loss, params)


@pytest.mark.parametrize("prior", ["normal", "mixture"])  # analytic KL; Monte Carlo (no KL for a mixture)
@pytest.mark.parametrize("particles", [1, 3])
@pytest.mark.parametrize("validate", [False, True])
def test_equals_trace_mean_field_elbo_in_value_and_gradient(prior, particles, validate):
    torch.manual_seed(0)
    vae = VAE((6,), latent_dim=3, prior=prior, likelihood="bernoulli", hidden=(5,))
    x = torch.bernoulli(torch.full((8, 6), 0.4))
    scale = lambda fn: DataSubsampleMessenger("data", 100)(LatentScaleMessenger(0.5)(fn))  # noqa: E731
    model, guide = scale(vae.model), scale(vae.guide)
    params = list(vae.parameters())
    ours = make_objective("meanfield", particles)
    assert isinstance(ours, MeanFieldELBO)
    pyros = pyro.infer.TraceMeanField_ELBO(num_particles=particles, vectorize_particles=particles > 1)
    with pyro.validation_enabled(validate):
        for objective in (ours, pyros):
            objective.differentiable_loss(model, guide, x)  # settles the plate nesting before seeding
        for seed in range(3):
            loss, grads = loss_and_gradients(ours, model, guide, x, params, seed)
            reference, reference_grads = loss_and_gradients(pyros, model, guide, x, params, seed)
            assert torch.allclose(loss, reference, rtol=1e-6)
            for g, r in zip(grads, reference_grads):
                assert torch.allclose(g, r, rtol=1e-5, atol=1e-6)
            values = []
            for objective in (ours, pyros):
                pyro.set_rng_seed(seed)
                values.append(objective.loss(model, guide, x))
            assert values[0] == pytest.approx(values[1], rel=1e-6)


def test_scores_only_the_sites_it_reads():
    vae = VAE((6,), latent_dim=3, hidden=(5,))
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    with pyro.validation_enabled(False):
        model_trace, guide_trace = MeanFieldELBO()._get_trace(vae.model, vae.guide, (x,), {})
        MeanFieldELBO()._differentiable_loss_particle(model_trace, guide_trace)
    assert "log_prob" in model_trace.nodes["x"]
    assert "log_prob" not in model_trace.nodes["z"] and "score_parts" not in guide_trace.nodes["z"]


def test_an_auxiliary_guide_site_contributes_its_negative_log_density():
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("u", dist.Normal(0.0, 2.0), infer={"is_auxiliary": True})
        pyro.sample("z", dist.Normal(0.0, 1.0))

    with pyro.validation_enabled(False):
        model_trace, guide_trace = MeanFieldELBO()._get_trace(model, guide, (), {})
        loss, _ = MeanFieldELBO()._differentiable_loss_particle(model_trace, guide_trace)
    # KL(N(0,1) || N(0,1)) = 0, so the loss is log q(u) at the draw
    expected = dist.Normal(0.0, 2.0).log_prob(guide_trace.nodes["u"]["value"]).item()
    assert loss == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("validate", [False, True])
def test_refuses_what_pyros_refuses_with_the_site_named(validate):
    def model():
        with pyro.plate("data", 5):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide_outside_the_plate():  # the KL would broadcast to 5 copies of one guide draw's density
        pyro.sample("z", dist.Normal(0.0, 1.5))

    def guide_with_an_unmarked_extra_site():
        pyro.sample("u", dist.Normal(0.0, 2.0))
        with pyro.plate("data", 5):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pyro.validation_enabled(validate):
        # with validation on, Pyro's trace check names the site first
        for guide, message in ((guide_outside_the_plate, r"site 'z' has shape|shapes disagree at site 'z'"),
                               (guide_with_an_unmarked_extra_site, "guide site 'u' is not in the model")):
            with pytest.raises(ValueError, match=message):
                MeanFieldELBO(max_plate_nesting=1).differentiable_loss(model, guide)
            with pytest.raises((AssertionError, ValueError)):  # Pyro refuses both too
                pyro.infer.TraceMeanField_ELBO(max_plate_nesting=1).differentiable_loss(model, guide)
