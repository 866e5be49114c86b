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


class _Chain:
    """z2 ~ N(0, 1), z1 | z2 ~ N(z2, 0.1^2), x | z1 ~ N(z1, 1); the guide draws z1 | x ~ N(x/2, 1) first and
    z2 | z1 ~ N(z1, 0.1^2) after it, so the model's p(z1 | z2) is read at a z2 drawn after z1 (the order
    of Burda et al.'s two-layer VAE).  KL(q(z1) || p(z1 | z2)) at that z2 is about 100 nats too large: it
    treats z1's spread of 1 as independent of a z2 that follows z1 within 0.1."""

    def model(self, x):
        with pyro.plate("data", len(x)):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(len(x)), 1.0))
            z1 = pyro.sample("z1", dist.Normal(z2, 0.1))
            pyro.sample("x", dist.Normal(z1, 1.0), obs=x)

    def guide(self, x):
        with pyro.plate("data", len(x)):
            z1 = pyro.sample("z1", dist.Normal(x / 2, 1.0))
            pyro.sample("z2", dist.Normal(z1, 0.1))


def test_no_closed_form_kl_where_the_guide_order_breaks_mean_field():
    from pyro_vae.inference import elbo_terms

    chain, x = _Chain(), torch.linspace(-2, 2, 50)
    pyro.set_rng_seed(0)
    exact = -sum(pyro.infer.Trace_ELBO(num_particles=400, vectorize_particles=True).loss(chain.model, chain.guide, x)
                 for _ in range(5)) / 5 / len(x)
    terms = elbo_terms(chain.model, chain.guide, x, particles=2000)
    assert abs(terms["elbo"] - exact) < 5 * terms["elbo_mc_se"] + 0.05  # Monte Carlo error of both estimates
    pyro.set_rng_seed(1)
    meanfield = -torch.stack([make_objective("meanfield", 1).differentiable_loss(chain.model, chain.guide, x).detach()
                              for _ in range(400)]) / len(x)
    assert abs(meanfield.mean().item() - exact) < 5 * meanfield.std().item() / 20 + 0.05
    assert exact > -10 and meanfield.mean().item() > -10  # the closed form at the later draw gives -102 (measured)


def test_a_guide_out_of_the_models_order_is_not_warned_about():
    """Pyro's class warns on such a guide; this one handles it (Monte Carlo KLs), so it stays silent."""
    import warnings

    chain, x = _Chain(), torch.linspace(-2, 2, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pyro.infer.util.is_validation_enabled()  # Pyro's own trace path, which warns, runs
        loss = make_objective("meanfield", 1).differentiable_loss(chain.model, chain.guide, x)
    assert torch.isfinite(loss)


def test_meanfield_refuses_a_guide_that_is_not_reparameterised_before_training():
    """Issue 35, item 4: with validation off (fit's default) meanfield returned the KL term's gradient alone
    for a Bernoulli guide site (loc gradient [0.30, -0.20] against the ELBO's [1.10, -2.40])."""
    import pyro.distributions as dist

    from pyro_vae.errors import ConfigError
    from pyro_vae.inference import fit

    def model(x):
        with pyro.plate("data", len(x)):
            b = pyro.sample("b", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(b, 1.0), obs=x)

    def guide(x):
        p = pyro.param("p", torch.tensor(0.3), constraint=dist.constraints.unit_interval)
        with pyro.plate("data", len(x)):
            pyro.sample("b", dist.Bernoulli(p))

    with pytest.raises(ConfigError, match="meanfield: guide site 'b' \\(Bernoulli\\) is not reparameterised.*use elbo"):
        fit(model, guide, torch.randn(20), objective="meanfield", epochs=1, progress=False)
    assert len(fit(model, guide, torch.randn(20), objective="elbo", epochs=1, progress=False).history) == 1
    # the class itself, in Pyro's SVI with validation off, refuses too (Pyro's TraceMeanField_ELBO steps silently)
    with pyro.validation_enabled(False), pytest.raises(ConfigError, match="meanfield: guide site 'b'.*use elbo"):
        pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), MeanFieldELBO()).step(torch.randn(20))
    with pyro.validation_enabled(False):
        pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.TraceMeanField_ELBO()).step(torch.randn(20))
