"""STL and DReG against the plain estimators on a linear-Gaussian model, and the gradient SNR."""

import math

import pyro
import pytest
import torch

from linear_gaussian import LinearGaussian, LinearGaussianPair
from pyro_vae.errors import ConfigError
from pyro_vae.inference import LatentScaleMessenger, make_objective
from pyro_vae.inference.gradient_snr import gradient_snr
from pyro_vae.inference.path_gradients import detach_parameters

DRAWS = 400
#: |paired z| bound for 27 parameters: a family-wise false-alarm rate below 1e-4 (Bonferroni).
Z_BOUND = 4.5


@pytest.fixture
def problem():
    truth = LinearGaussian(data_dim=5, latent_dim=2, noise=0.5)
    return LinearGaussianPair(truth, offset=1.0), truth.sample(16)


def draws_of_gradients(name, particles, pair, x, beta=1.0):
    """(last loss, (DRAWS, parameters) gradients, one per seed; the same seeds for every estimator)."""
    objective = make_objective(name, particles)
    model, guide = LatentScaleMessenger(beta)(pair.model), LatentScaleMessenger(beta)(pair.guide)
    objective.differentiable_loss(model, guide, x)  # settles the plate nesting before seeding
    params = pair.decoder + pair.encoder
    rows, losses = [], []
    for seed in range(DRAWS):
        pyro.set_rng_seed(seed)
        loss = objective.differentiable_loss(model, guide, x)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
        losses.append(loss.item())
    return torch.tensor(losses), torch.stack(rows)


def decoder_size(pair):
    return sum(p.numel() for p in pair.decoder)


@pytest.mark.parametrize("plain, path, particles, beta", [
    ("elbo", "stl", 1, 1.0), ("elbo", "stl", 1, 0.5), ("iwae", "iwae-dreg", 5, 1.0), ("iwae", "iwae-dreg", 5, 0.5),
])
def test_same_loss_same_expected_gradient_lower_encoder_variance(problem, plain, path, particles, beta):
    pair, x = problem
    plain_loss, plain_grad = draws_of_gradients(plain, particles, pair, x, beta)
    path_loss, path_grad = draws_of_gradients(path, particles, pair, x, beta)
    # (a) the same draws give the same loss value
    torch.testing.assert_close(path_loss, plain_loss, rtol=1e-6, atol=1e-4)
    # (b) the expected gradients agree: paired differences (the dropped score terms) have mean zero
    difference = plain_grad - path_grad
    z = difference.mean(0) / (difference.std(0) / math.sqrt(DRAWS))
    assert z[difference.std(0) > 0].abs().max() < Z_BOUND
    # the decoder's gradient is the plain estimator's, draw by draw
    d = decoder_size(pair)
    torch.testing.assert_close(path_grad[:, :d], plain_grad[:, :d], rtol=1e-4, atol=1e-3)
    # (c) lower encoder-gradient variance: the total variance's estimate has relative error about
    # sqrt(2 / (M - 1)), so a true ratio of 1 would read below 1 - 5 sqrt(2 / (M - 1)) with probability < 1e-6
    ratio = path_grad[:, d:].var(0).sum() / plain_grad[:, d:].var(0).sum()
    assert ratio < 1 - 5 * math.sqrt(2 / (DRAWS - 1))


def test_dreg_with_one_particle_is_stl(problem):
    pair, x = problem
    _, stl = draws_of_gradients("stl", 1, pair, x)
    _, dreg = draws_of_gradients("iwae-dreg", 1, pair, x)
    torch.testing.assert_close(dreg, stl, rtol=1e-4, atol=1e-3)


def test_stl_has_zero_encoder_gradient_at_the_exact_posterior():
    # with a full-covariance guide equal to p(z|x), log p(x, z) - log q(z) = log p(x) for every z: the path
    # gradient of STL vanishes draw by draw, the plain one does not
    truth = LinearGaussian(data_dim=5, latent_dim=2, noise=0.5)
    x = truth.sample(8)
    mean = truth.posterior(x).loc.clone().requires_grad_()

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.MultivariateNormal(mean, truth.posterior_cov))

    for name, vanishes in (("stl", True), ("elbo", False)):
        pyro.set_rng_seed(0)
        grad, = torch.autograd.grad(make_objective(name).differentiable_loss(truth.model, guide, x), [mean])
        assert (grad.abs().max() < 1e-3) == vanishes


def test_detach_parameters_keeps_the_density_and_cuts_the_graph():
    loc = torch.randn(3, 2, requires_grad=True)
    for q in (pyro.distributions.Normal(loc, 1.5).to_event(1), pyro.distributions.StudentT(4.0, loc, 2.0).to_event(1),
              pyro.distributions.Cauchy(loc, 0.5).expand([4, 3, 2]).to_event(1)):
        value = q.sample()
        torch.testing.assert_close(detach_parameters(q).log_prob(value), q.log_prob(value))
        assert not detach_parameters(q).log_prob(value).requires_grad
    shifted = pyro.distributions.TransformedDistribution(
        pyro.distributions.Normal(loc, 1.0), [torch.distributions.transforms.AffineTransform(loc, 2.0)])
    value = shifted.sample()
    torch.testing.assert_close(detach_parameters(shifted).log_prob(value), shifted.log_prob(value))
    assert not detach_parameters(shifted).log_prob(value).requires_grad
    flow = pyro.distributions.TransformedDistribution(pyro.distributions.Normal(loc, 1.0),
                                                      [pyro.distributions.transforms.Planar(2)])
    with pytest.raises(ConfigError, match="cannot detach the parameters of a Planar"):
        detach_parameters(flow)


def test_gradient_snr_matches_a_direct_computation(problem):
    pair, x = problem
    groups = {"encoder": pair.encoder, "decoder": pair.decoder}
    result = gradient_snr(pair.model, pair.guide, x, groups, objective="iwae", particles=5, draws=50, seed=3)
    objective = make_objective("iwae", 5)
    objective.differentiable_loss(pair.model, pair.guide, x)  # as gradient_snr: settle plate nesting, then seed
    pyro.set_rng_seed(3)
    grads = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(
        objective.differentiable_loss(pair.model, pair.guide, x), pair.encoder + pair.decoder)]) for _ in range(50)])
    snr = grads.mean(0).abs() / grads.std(0)
    torch.testing.assert_close(result["encoder"]["snr"], snr[:14], rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(result["decoder"]["snr"], snr[14:], rtol=1e-3, atol=1e-5)
    assert result["encoder"]["parameters"] == 14 and result["decoder"]["zero_gradient"] == 0


def test_iwae_encoder_snr_falls_with_k_and_dreg_does_not(problem):
    # Rainforth et al. (2018): IWAE's inference-network SNR is O(1/sqrt(K)); DReG removes the decay
    pair, x = problem
    groups = {"encoder": pair.encoder, "decoder": pair.decoder}
    snr = {(name, k): gradient_snr(pair.model, pair.guide, x, groups, objective=name, particles=k, draws=200)["encoder"]["snr_median"]
           for name in ("iwae", "iwae-dreg") for k in (1, 50)}
    assert snr["iwae", 50] < snr["iwae", 1]
    assert snr["iwae-dreg", 50] > snr["iwae", 50]


def test_dreg_refuses_a_guide_whose_site_takes_another_draw_and_serves_an_independent_one():
    """Issue 35, item 1: iwae-dreg was biased (z = 6.5) on the two-layer VAE's q(z2 | z1, x), and accepted."""
    from pyro_vae.errors import ConfigError
    from pyro_vae.inference import fit
    from pyro_vae.inference.traces import guide_dependences
    from pyro_vae.models import TwoLayerVAE, VAE

    x = torch.bernoulli(torch.full((32, 1, 4, 4), 0.4), generator=torch.Generator().manual_seed(0))
    two = TwoLayerVAE((1, 4, 4), latent_dims=(3, 2), hidden=((8, 8), (8, 8)))
    assert guide_dependences(two.guide, x) == {"z2": ["z1"]}
    with pytest.raises(ConfigError, match="iwae-dreg:5: guide site 'z2' takes the draw of 'z1' as input.*use iwae:5"):
        fit(two.model, two.guide, x, objective="iwae-dreg:5", epochs=1, progress=False)
    for objective in ("iwae:5", "stl"):
        assert len(fit(two.model, two.guide, x, objective=objective, epochs=1, progress=False).history) == 1
    one = VAE((1, 4, 4), latent_dim=2, hidden=(8,))
    assert guide_dependences(one.guide, x) == {}
    assert len(fit(one.model, one.guide, x, objective="iwae-dreg:5", epochs=1, progress=False).history) == 1
