"""Simulation-based calibration of q(z|x) on the linear-Gaussian model, whose exact posterior is known:
the exact guide's ranks are uniform, a guide twice too wide or half too narrow is caught, in the right direction."""

import pytest

from pyro_vae.inference.calibration import calibration

from linear_gaussian import LinearGaussian

SIMULATIONS = 400


def check(scale_factor, seed=0):
    truth = LinearGaussian(data_dim=5, latent_dim=2, noise=0.5)
    truth.guide_scale_factor = scale_factor
    return calibration(truth.model, truth.guide, truth.sample(10), simulations=SIMULATIONS, seed=seed)


def test_the_exact_posterior_as_guide_is_calibrated():
    """KS p-values are uniform under calibration: each above 0.001 fails with probability 0.001; coverage
    within 4 binomial standard errors of nominal fails with probability 6e-5 per coordinate."""
    result = check(1.0)
    assert result["coordinates"] == ["z[0]", "z[1]"]
    assert all(p > 0.001 for p in result["ks_pvalue"]) and all(result["uniform"])
    for nominal in (50, 90):
        se = result[f"coverage_se_{nominal}"]
        assert all(abs(c - nominal / 100) < 4 * se for c in result[f"coverage_{nominal}"])


@pytest.mark.parametrize("scale_factor, sign", [(2.0, 1), (0.5, -1)])
def test_an_over_or_under_dispersed_guide_is_detected_in_its_direction(scale_factor, sign):
    """Twice too wide: the 50% interval covers P(|N(0, 1)| < 0.674 x 2) = 0.82; half too narrow: 0.27.
    Both are more than 8 standard errors (0.025) from 0.5."""
    result = check(scale_factor)
    assert not any(result["uniform"])
    se = result["coverage_se_50"]
    for coverage in result["coverage_50"]:
        assert sign * (coverage - 0.5) > 6 * se


def test_calibration_leaves_the_random_stream_as_it_was():
    import torch

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check(1.0)
    assert torch.equal(torch.rand(3), expected)


def test_evaluate_checks_calibration_and_says_why_when_it_cannot():
    import pyro
    import pyro.distributions as dist
    import torch

    from pyro_vae.inference import evaluate

    truth = LinearGaussian(data_dim=5, latent_dim=2, noise=0.5)
    result = evaluate(truth.model, truth.guide, truth.sample(20), importance_samples=30, calibration=100)
    assert result["calibration"]["simulations"] == 100 and all(result["calibration"]["uniform"])

    def model(x):  # observes a function of x, not x: simulated data have no form the guide reads
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x.sum(1))

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.sum(1) / 4, 0.5))

    result = evaluate(model, guide, torch.randn(20, 3), importance_samples=30, calibration=50)
    assert "calibration" not in result
    assert "must observe x itself" in result["diagnostics"]["skipped"]["calibration of q(z|x)"]
