"""Annealed importance sampling and the bidirectional bracket against exact log-likelihoods and posteriors.

Oracles: the linear-Gaussian model (``linear_gaussian.py``: log p(x) and p(z|x) in closed form) and the
Gamma-Poisson model (a positive latent, so the path runs through ``biject_to``; log p(x) is the negative
binomial's).  Every check is a coverage or ordering check with a tolerance from the estimator's own error.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_vae.inference.ais import ais_log_likelihood, ais_log_weights, sigmoid_schedule
from pyro_vae.inference.annealing import AnnealingPath, hmc_transition
from pyro_vae.inference.bdmc import bdmc, bracket, simulate

from linear_gaussian import LinearGaussian, mis_amortised_problem


def covered(estimate, exact, se, sigmas=2.0):
    """Share of points whose estimate lies within ``sigmas`` standard errors of the exact value."""
    return ((estimate - exact).abs() <= sigmas * se).double().mean().item()


def test_the_schedule_runs_from_zero_to_one_increasing_and_symmetric():
    betas = sigmoid_schedule(50)
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 51
    assert bool((betas.diff() > 0).all())
    assert torch.allclose(betas + betas.flip(0), torch.ones_like(betas), atol=1e-12)
    # more of the path's steps are spent near the ends than in the middle
    assert betas[1] - betas[0] < betas[26] - betas[25]


def test_an_hmc_move_leaves_the_exact_posterior_where_it_was():
    """Chains started at exact posterior draws stay exact draws after moves at beta = 1: mean and variance
    of 4000 chains within 4 standard errors of the closed form (a wrong acceptance rule drifts)."""
    truth = LinearGaussian(data_dim=5, latent_dim=2, noise=0.5)
    x = truth.sample(2)
    chains = 4000
    pyro.set_rng_seed(0)
    path = AnnealingPath(truth.model, truth.guide, x, chains, "data", base="prior")
    posterior = truth.posterior(x)
    u = path.flatten({"z": posterior.sample((chains,))})
    parts = path.log_densities(u)
    step = 0.5 * posterior.stddev.min(-1).values  # half the narrowest direction's sd, per point
    accepted = 0.0
    for _ in range(5):
        u, parts, moved = hmc_transition(path, u, parts, 1.0, step, 5)
        accepted += moved.double().mean().item() / 5
    assert 0.2 < accepted < 0.99  # the moves did move
    sd = posterior.stddev
    assert bool(((u.mean(0) - posterior.mean).abs() <= 4 * sd / math.sqrt(chains)).all())
    # the variance of a sample variance of normal draws is 2 sd^4 / (n - 1)
    assert bool(((u.var(0) - sd**2).abs() <= 4 * sd**2 * math.sqrt(2 / (chains - 1))).all())


@pytest.mark.parametrize("base", ["guide", "prior"])
def test_ais_covers_the_exact_log_likelihood(base):
    """Forward AIS from a poor guide (its mean map shifted by 0.3 and its log-sd by 0.3: IS at K = 32 is
    off by about 2 nats) and from the prior: at least 85% of 40 points within 2 of their own standard
    errors of the exact value (95% expected; below 85% has probability under 1% for a correct estimator
    whose errors are right), and the mean over points within 3 of its error."""
    truth, pair, x = mis_amortised_problem(0.3, 0.3, points=40)
    exact = truth.exact_log_likelihood(x).double()
    result = ais_log_likelihood(pair.model, pair.guide, x, steps=100, chains=32, seed=1, base=base)
    assert covered(result["per_datapoint"], exact, result["per_datapoint_mc_se"]) >= 0.85
    total_se = result["per_datapoint_mc_se"].pow(2).sum().sqrt().item() / len(x)
    assert abs(result["log_likelihood"] - exact.mean().item()) <= 3 * total_se
    assert result["estimator"] == "ais" and result["chains"] == 32 and result["steps"] == 100
    assert 0.4 < result["acceptance"] < 0.9  # adapted toward 0.65


def test_ais_with_the_exact_posterior_as_guide_is_exact_for_any_number_of_steps():
    """Every increment is (beta_t - beta_(t-1)) log p(x): each chain's weight is p(x) exactly."""
    truth = LinearGaussian()
    x = truth.sample(6)
    log_w, _ = ais_log_weights(truth.model, truth.guide, x, steps=7, chains=4, seed=0)
    assert torch.allclose(log_w, truth.exact_log_likelihood(x).double()[:, None].expand(6, 4), atol=1e-4)


class GammaPoisson:
    """z ~ Gamma(a, b), x_j | z ~ Poisson(z), j = 1..D; the guide a LogNormal whose moments are off."""

    def __init__(self, a=3.0, b=2.0):
        self.a, self.b = a, b

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Gamma(self.a, self.b))
            pyro.sample("x", dist.Poisson(z[..., None].expand(*z.shape, x.shape[1])).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            mean = (self.a + x.sum(1)) / (self.b + x.shape[1])
            pyro.sample("z", dist.LogNormal(mean.log() + 0.3, 0.6))

    def exact_log_likelihood(self, x):
        a, b, total, d = self.a, self.b, x.sum(1).double(), x.shape[1]
        return (torch.lgamma(a + total) - math.lgamma(a) - torch.lgamma(x.double() + 1).sum(1)
                + a * math.log(b) - (a + total) * math.log(b + d))


def test_ais_on_a_positive_latent_covers_the_negative_binomial_likelihood():
    pair = GammaPoisson()
    x = torch.poisson(torch.full((30, 4), 1.5), generator=torch.Generator().manual_seed(0))
    exact = pair.exact_log_likelihood(x)
    result = ais_log_likelihood(pair.model, pair.guide, x, steps=60, chains=32, seed=2)
    assert covered(result["per_datapoint"], exact, result["per_datapoint_mc_se"]) >= 0.85


def test_the_bracket_contains_the_exact_value_and_narrows_as_t_grows():
    truth, pair, x = mis_amortised_problem(0.3, 0.3, points=20)
    pyro.set_rng_seed(0)
    latents, simulated = simulate(pair.model, x, AnnealingPath(pair.model, pair.guide, x, 32, "data"))
    exact = truth.exact_log_likelihood(simulated).double().mean().item()
    widths = []
    for steps in (5, 50):
        result = bracket(pair.model, pair.guide, simulated, latents, steps=steps, chains=32)
        assert result["lower"] <= exact + 2 * result["lower_se"]
        assert result["upper"] >= exact - 2 * result["upper_se"]
        widths.append(result["width"])
    assert widths[1] < widths[0] / 4


def test_bdmc_refuses_a_model_that_does_not_observe_x_itself():
    from pyro_vae.errors import ConfigError

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[:, 0])

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ConfigError, match="must observe x itself"):
        bdmc(model, guide, torch.zeros(4, 3), steps=2, chains=2)


def test_a_guide_traced_once_and_a_guide_traced_at_every_move_give_the_same_densities():
    truth, pair, x = mis_amortised_problem(0.3, 0.3, points=5)
    path = AnnealingPath(pair.model, pair.guide, x, 3, "data")
    assert path._fixed_guide
    u = path.initial()
    fixed = path.log_densities(u)
    path._fixed_guide = False
    traced = path.log_densities(u)
    for a, b in zip(fixed, traced):
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b))


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import pyro_vae.inference.ais as ais

    truth, pair, x = mis_amortised_problem(0.3, 0.3, points=6)
    options = dict(steps=4, chains=3, seed=5, max_memory=64 * 10 * 3 * 2)  # two points a batch: three batches
    whole, _ = ais_log_weights(pair.model, pair.guide, x, **options)
    original, calls = ais.anneal, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(ais, "anneal", interrupted)
    checkpoint = tmp_path / "ais.partial.pt"
    with pytest.raises(KeyboardInterrupt):
        ais_log_weights(pair.model, pair.guide, x, checkpoint=checkpoint, **options)
    monkeypatch.setattr(ais, "anneal", original)
    resumed, _ = ais_log_weights(pair.model, pair.guide, x, checkpoint=checkpoint, **options)
    assert torch.equal(resumed, whole)


def test_the_forward_and_reverse_chains_run_on_the_two_layer_vae():
    from pyro_vae.models import TwoLayerVAE

    pyro.set_rng_seed(0)
    vae = TwoLayerVAE((8,), latent_dims=(3, 2), hidden=((6,), (5,)))
    x = torch.bernoulli(torch.full((4, 8), 0.4))
    result = ais_log_likelihood(vae.model, vae.guide, x, steps=5, chains=4, seed=0)
    assert torch.isfinite(result["per_datapoint"]).all()
    bracketed = bdmc(vae.model, vae.guide, x, steps=5, chains=4)
    assert math.isfinite(bracketed["width"])


def test_evaluate_runs_ais_and_the_bracket_beside_is():
    from pyro_vae.inference import evaluate
    from pyro_vae.inference.ais import AISOptions

    truth, pair, x = mis_amortised_problem(0.3, 0.3, points=30)
    exact = truth.exact_log_likelihood(x).double().mean().item()
    result = evaluate(pair.model, pair.guide, x, importance_samples=50, ais=AISOptions(steps=60, chains=32, bracket_points=5))
    ais = result["ais"]
    assert ais["points"] == 30 and ais["steps"] == 60 and ais["chains"] == 32 and ais["where"] == "all"
    assert abs(ais["log_likelihood"] - exact) <= 3 * ais["log_likelihood_se"]
    assert ais["bracket"]["points"] == 5 and ais["bracket"]["upper"] >= ais["bracket"]["lower"] - 4 * ais["bracket"]["width_se"]
    assert any(step.startswith("AIS (T = 60, M = 32) on 30 points") for step in result["diagnostics"]["ran"])


def test_ais_where_unreliable_replaces_exactly_the_flagged_points():
    from pyro_vae.inference import evaluate
    from pyro_vae.inference.ais import AISOptions

    truth, pair, x = mis_amortised_problem(0.3, 0.3, points=30)
    options = AISOptions(steps=10, chains=8, where="unreliable", bracket_points=0)
    result = evaluate(pair.model, pair.guide, x, importance_samples=50, seed=3, ais=options)
    khat = torch.as_tensor(result["khat"])
    flagged = torch.nonzero(khat > result["khat_threshold"]).flatten()
    ais = result["ais"]
    assert 0 < len(flagged) < 30 and ais["indices"] == flagged.tolist() and "bracket" not in ais
    per_point = torch.tensor(result["log_likelihood_per_datapoint"], dtype=torch.float64)
    per_point[flagged] = torch.tensor(ais["per_datapoint"], dtype=torch.float64)
    assert ais["combined_log_likelihood"] == pytest.approx(per_point.mean().item(), abs=1e-9)


def test_one_point_without_an_error_is_counted_and_the_rest_still_give_a_number():
    from pyro_vae.inference import log_likelihood
    from pyro_vae.summaries import format_summary

    generator = torch.Generator().manual_seed(0)
    log_w = 0.1 * torch.randn(20, 1000, generator=generator, dtype=torch.float64)
    # point 0: Pareto weights of tail index 1/2 (k = 2), whose mean does not exist
    log_w[0] = -2.0 * torch.rand(1000, generator=generator, dtype=torch.float64).log()
    estimate = log_likelihood(log_w)
    assert estimate["log_likelihood_se"] == math.inf and estimate["points_without_error"] == 1
    assert estimate["log_likelihood_finite_points"] == pytest.approx(estimate["per_datapoint"][1:].mean().item())
    assert math.isfinite(estimate["log_likelihood_finite_points_se"])
    result = {"elbo": -1.0, "draws": 1, "num_datapoints": 20, "importance_samples": 1000, "diagnostics": {}}
    result.update({key: value for key, value in estimate.items() if not torch.is_tensor(value) and key != "psis"})
    text = format_summary(result)
    assert "points with an error" in text and "19 of 20 points" in text and "--estimator ais" in text


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "nuts"], "unknown estimator nuts; expected one of: is, ais, ais-where-unreliable"),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--base", "flow"], "unknown base flow; expected one of: guide, prior"),
    (["--bracket-points", "-1"], "bracket_points must be an integer >= 0"),
])
def test_bad_ais_options_are_one_line_naming_the_valid_ones(argv, message, capsys, tmp_path):
    from pyro_vae.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["evaluate", str(tmp_path), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err.replace("'", "")
    assert len(err.strip().splitlines()) == 1


def test_ais_options_refuse_unknown_choices_in_python_with_the_valid_ones():
    from pyro_vae.errors import ConfigError
    from pyro_vae.inference.ais import AISOptions

    with pytest.raises(ConfigError, match="unknown where 'some'; expected one of: all, unreliable"):
        AISOptions(where="some")
    with pytest.raises(ConfigError, match="chains must be a positive integer"):
        AISOptions(chains=0)


def test_gaps_against_the_exact_log_likelihood_are_the_exact_split():
    from pyro_vae.inference.gaps import gaps_against, inference_gaps

    truth, pair, x = mis_amortised_problem(0.3, 0.3, points=10)
    gaps = inference_gaps(pair.model, pair.guide, x, particles=200, steps=50)
    exact = truth.exact_log_likelihood(x).double()
    against = gaps_against(gaps, exact, torch.zeros_like(exact), "exact")
    elbo = gaps["per_datapoint"]
    assert against["approximation_gap_exact"] == pytest.approx((exact - elbo["elbo_optimised"]).mean().item())
    assert against["total_gap_exact"] == pytest.approx((exact - elbo["elbo_amortised"]).mean().item())
    assert against["approximation_gap_exact_mc_se"] == pytest.approx(gaps["elbo_optimised_mc_se"])
    # IS's approximation gap is measured against a lower bound of log p(x): below the exact one, within errors
    assert gaps["approximation_gap"] <= against["approximation_gap_exact"] + 3 * gaps["approximation_gap_mc_se"]
