"""Likelihood distributions against torch's own."""

import pytest
import torch

from pyro_vae.likelihoods import IndependentLogitBernoulli, LogitBernoulli, make_likelihood


def test_logit_bernoulli_matches_torch_in_value_and_gradient():
    torch.manual_seed(0)
    logits = torch.cat([torch.randn(5, 3, 40) * 4, torch.full((5, 3, 2), 60.0), torch.full((5, 3, 2), -60.0)], -1)
    logits.requires_grad_(True)
    value = torch.bernoulli(torch.full((3, 44), 0.4))  # broadcast over the leading (particle) axis
    ours = LogitBernoulli(logits=logits).log_prob(value)
    reference = torch.distributions.Bernoulli(logits=logits).log_prob(value)
    assert ours.shape == reference.shape == (5, 3, 44)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-6)  # float32 rounding of a softplus
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    (grad_reference,) = torch.autograd.grad(reference.sum(), logits)
    assert torch.allclose(grad_ours, grad_reference, atol=1e-6)  # x - sigmoid(logits)


def test_logit_bernoulli_expands_and_validates_like_a_bernoulli():
    d = LogitBernoulli(logits=torch.zeros(3)).expand((2, 3))
    assert isinstance(d, LogitBernoulli) and d.batch_shape == (2, 3)
    with pytest.raises(ValueError, match="support"):
        LogitBernoulli(logits=torch.zeros(3), validate_args=True).log_prob(torch.tensor([0.0, 0.5, 1.0]))


def test_event_level_bernoulli_matches_torch_in_value_gradient_and_broadcasting():
    torch.manual_seed(1)
    logits = (torch.randn(4, 3, 1, 6, 5) * 5).requires_grad_(True)  # (K, B, *event_shape)
    value = torch.bernoulli(torch.full((3, 1, 6, 5), 0.3))  # broadcast over K
    ours = make_likelihood("bernoulli", (1, 6, 5))(logits)
    reference = torch.distributions.Independent(torch.distributions.Bernoulli(logits=logits), 3)
    assert isinstance(ours, IndependentLogitBernoulli) and ours.event_shape == (1, 6, 5) and ours.batch_shape == (4, 3)
    assert torch.allclose(ours.log_prob(value), reference.log_prob(value), atol=1e-4, rtol=1e-6)
    (grad_ours,) = torch.autograd.grad(ours.log_prob(value).sum(), logits)
    (grad_reference,) = torch.autograd.grad(reference.log_prob(value).sum(), logits)
    assert torch.allclose(grad_ours, grad_reference, atol=1e-6)
    expanded = ours.expand((2, 4, 3))  # as a plate broadcasts it
    assert isinstance(expanded, IndependentLogitBernoulli) and expanded.log_prob(value).shape == (2, 4, 3)
    assert torch.allclose(ours.mean, torch.sigmoid(logits))
    with pytest.raises(ValueError, match="support"):
        IndependentLogitBernoulli(LogitBernoulli(logits=torch.zeros(2, 3)), 1, validate_args=True).log_prob(
            torch.tensor([[0.0, 0.5, 1.0]]))


def test_event_level_bernoulli_rounding_is_unbiased_and_within_the_float32_bound():
    torch.manual_seed(2)
    logits = torch.randn(20000, 784) * 10
    value = torch.bernoulli(torch.sigmoid(logits))  # a decoder that fits its data: the two sums cancel
    ours = IndependentLogitBernoulli(LogitBernoulli(logits=logits), 1).log_prob(value).double()
    exact = (value.double() * logits.double() - torch.nn.functional.softplus(logits.double())).sum(-1)
    error = ours - exact
    # Higham's bound for float32 sums of n terms: gamma_n * sum |terms|, gamma_n = n u / (1 - n u)
    u = 2.0**-24
    gamma = 784 * u / (1 - 784 * u)
    terms = (value.double() * logits.double()).abs().sum(-1) + torch.nn.functional.softplus(logits.double()).sum(-1)
    assert (error.abs() <= gamma * terms).all()
    assert abs(error.mean()) < 4 * error.std() / len(error) ** 0.5  # no bias: rounding to nearest
    assert IndependentLogitBernoulli(LogitBernoulli(logits=logits[:2]), 1).log_prob(value[:2].bool()).dtype == torch.float32


def test_per_sample_scale_floor_is_an_option_and_refused_where_it_does_not_apply():
    from pyro_vae.errors import ConfigError

    likelihood = make_likelihood("gaussian", (3,), sigma_x="per-sample", min_scale=0.05)
    decoder_output = torch.stack([torch.zeros(4, 3), torch.full((4, 3), -80.0)], dim=-2)  # softplus(-80) ~ 0
    assert torch.allclose(likelihood(decoder_output).base_dist.scale, torch.tensor(0.05))
    assert make_likelihood("gaussian", (3,), sigma_x="per-sample").min_scale == 1e-3
    with pytest.raises(ConfigError, match="per-sample"):
        make_likelihood("gaussian", (3,), sigma_x=0.1, min_scale=0.05)
    with pytest.raises(ConfigError, match="not 'bernoulli'"):
        make_likelihood("bernoulli", (3,), min_scale=0.05)
    for bad in (-1.0, float("nan"), True, "0.01"):
        with pytest.raises(ConfigError, match="min_scale must be a positive number"):
            make_likelihood("laplace", (3,), sigma_x="per-sample", min_scale=bad)
